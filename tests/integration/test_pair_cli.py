"""`underpass pair`, the host side of one-time pairing, against a fake relay.

The fake relay (python websockets, 127.0.0.1 port 0) implements the relay side of the protocol
the command speaks: it accepts the upgrade on BASE/pair/TOKEN?side=host (or refuses it with an
HTTP status), sends nothing until the test says a browser joined, checks that the host sent
nothing meanwhile, sends one text message "paired", and from then on the test holds the
connection as the browser would through the real relay: binary messages carry the bytes. The
target is a TCP server from harness.py. Every wait is bounded; processes and servers are stopped
at the end of each test, also when it fails."""
import hashlib
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve as ws_serve

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import BIN  # noqa: E402
from harness import Proc, Server, echo_handler, free_port, wait_until  # noqa: E402

TOKEN = "Zm9vYmFyLXBhaXJpbmctdG9rZW4tMTIz_-x"  # base64url, like the relay's tokens
CHUNK_MAX = 65535  # the command's largest binary message


class FakeRelay:
    """The relay side of pairing for one host connection.

    status: refuse the upgrade with this HTTP status and body instead. Otherwise a request for
    any path but `expect` gets 404, like an unknown token. at_once: send "paired" right after
    the upgrade (the browser joined first)."""

    def __init__(self, token=TOKEN, base="", status=None, body="", tls=None, at_once=False):
        self.expect = f"{base}/pair/{urllib.parse.quote(token, safe='')}?side=host"
        self.paths = []
        self.headers = []
        self.conns = queue.Queue()
        self.release = threading.Event()

        def process_request(conn, request):
            self.paths.append(request.path)
            self.headers.append(request.headers)
            if status:
                return conn.respond(status, body)
            if request.path != self.expect:
                return conn.respond(404, "unknown or expired token\n")
            return None

        def handler(ws):
            if at_once:
                ws.send("paired")  # the browser was there first
            self.conns.put(ws)
            # Returning would close the connection: the test holds it until it is done.
            self.release.wait(60)

        ctx = None
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self.scheme = "wss" if tls else "ws"
        self.srv = ws_serve(handler, "127.0.0.1", 0, process_request=process_request,
                            compression=None, ssl=ctx)
        self.port = self.srv.socket.getsockname()[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def url(self, base=""):
        return f"{self.scheme}://127.0.0.1:{self.port}{base}"

    def accept(self, timeout=10):
        try:
            return self.conns.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the host did not connect within {timeout}s "
                                 f"(requests: {self.paths})")

    @staticmethod
    def assert_quiet(ws, quiet=0.3):
        """Nothing arrived from the host (pings and pongs are not messages)."""
        try:
            m = ws.recv(timeout=quiet)
        except TimeoutError:
            return
        raise AssertionError(f"the host sent {m!r} before it was paired")

    def pair(self, ws):
        self.assert_quiet(ws)
        ws.send("paired")

    def close(self):
        self.release.set()
        self.srv.shutdown()
        self.t.join(5)


class TwoWay:
    """Target: sends `out` while it reads until EOF, recording the sha256 of what arrived."""

    def __init__(self, out):
        self.out = out
        self.h = hashlib.sha256()
        self.n = 0
        self.connected = threading.Event()
        self.eof = threading.Event()

    def __call__(self, sock):
        self.connected.set()
        w = threading.Thread(target=lambda: sock.sendall(self.out), daemon=True)
        w.start()
        try:
            while True:
                b = sock.recv(1 << 18)
                if not b:
                    break
                self.h.update(b)
                self.n += len(b)
        finally:
            self.eof.set()
            w.join(10)


@pytest.fixture
def relays():
    made = []

    def make(**kw):
        r = FakeRelay(**kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()
    for r in made:
        assert not r.t.is_alive(), "fake relay thread did not stop"


@pytest.fixture
def targets():
    made = []

    def make(handler):
        s = Server(handler)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def start_pair(procs, env, tmp, relay_url, target_port, *extra, token=TOKEN, name="pair"):
    args = [BIN, "pair", "--relay", relay_url, "--target", f"tcp://127.0.0.1:{target_port}"]
    if token is not None:
        args += ["--token", token]
    p = Proc(args + list(extra), env, tmp / f"{name}.log")
    procs.append(p)
    return p


def wait_exit(p, timeout=5):
    try:
        return p.p.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"pair still running after {timeout}s:\n{p.text()}")


def recv_bytes(ws, n, timeout=30):
    """Receive binary messages until n bytes arrived; every message is bytes, <= 64 KiB."""
    deadline = time.monotonic() + timeout
    got, sizes = [], []
    total = 0
    while total < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {total} of {n} bytes arrived within {timeout}s")
        m = ws.recv(timeout=left)
        assert isinstance(m, bytes), f"text message from the host: {m!r}"
        got.append(m)
        sizes.append(len(m))
        total += len(m)
    assert max(sizes) <= CHUNK_MAX, f"a message of {max(sizes)} bytes"
    return b"".join(got)


def closed_by_host(ws, timeout=5):
    """Read until the host's Close; return (code, reason, bytes that came before it)."""
    deadline = time.monotonic() + timeout
    data = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no Close from the host within {timeout}s")
        try:
            m = ws.recv(timeout=left)
        except ConnectionClosed as e:
            assert e.rcvd is not None, f"connection ended without the host's Close: {e}"
            return e.rcvd.code, e.rcvd.reason, b"".join(data)
        assert isinstance(m, bytes), f"text message from the host: {m!r}"
        data.append(m)


def settled(value, quiet=0.5, timeout=20):
    """value() once it has not changed for `quiet` seconds (bounded)."""
    deadline = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        v = value()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return v
    raise AssertionError(f"still changing after {timeout}s: {last}")


def test_help_and_usage_errors(env):
    out = subprocess.run([BIN, "pair", "--help"], env=env, capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0
    for s in ("--relay", "--token", "--target", "--pair-timeout", "UNDERPASS_TOKEN_FILE",
              "paired", "Examples:", "underpass pair --relay wss://"):
        assert s in out.stdout, s
    out = subprocess.run([BIN, "pair", "--relay", "ws://127.0.0.1:1", "--target",
                          "tcp://127.0.0.1:22"], env=env, capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 2 and "--token is required" in out.stderr
    out = subprocess.run([BIN, "pair", "--relay", "ws://127.0.0.1:1", "--token", "t",
                          "--target", "127.0.0.1:22"], env=env, capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 2 and "--target" in out.stderr


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_bytes_both_ways_after_paired(procs, env, tmp, relays, targets, tls_files, scheme):
    """1 MiB each way, byte-exact; the target is connected, and a byte sent, only after
    "paired"; text after pairing is ignored; the browser leaving ends the command with 0."""
    a, b = os.urandom(1 << 20), os.urandom(1 << 20)
    two = TwoWay(b)
    target = targets(two)
    tls = tls_files if scheme == "wss" else None
    relay = relays(tls=tls)
    extra = ["--ca", str(tls[0])] if tls else []
    p = start_pair(procs, env, tmp, relay.url(), target.port, *extra)
    ws = relay.accept()
    assert relay.paths == [relay.expect]
    assert "Authorization" not in relay.headers[0], "the token goes in the path only"
    p.wait_log("waiting for the browser", 5)
    assert ws.ping().wait(5), "no pong while waiting"
    relay.assert_quiet(ws)
    assert not two.connected.is_set(), "target connected before the browser joined"
    relay.pair(ws)
    wait_until(two.connected.is_set, 5, "target connected after paired")

    def send():
        ws.send("text is not for the target")
        i, size = 0, 1
        while i < len(a):
            size = size * 7 % 150001 + 1  # 1 byte .. ~146 KiB messages
            ws.send(a[i:i + size])
            i += size
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    got = recv_bytes(ws, len(b))
    sender.join(30)
    assert not sender.is_alive()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(b).hexdigest()
    wait_until(lambda: two.n >= len(a), 30, "1 MiB at the target")
    assert two.n == len(a)
    assert two.h.hexdigest() == hashlib.sha256(a).hexdigest()

    ws.close(1000, "browser left")
    assert wait_exit(p) == 0, p.text()
    assert "pairing ended: peer closed (1000 browser left)" in p.text()
    assert two.eof.wait(5), "target not closed after the browser left"


def test_target_eof_sends_close_1000(procs, env, tmp, relays, targets):
    """The target says something and closes: its bytes arrive, then Close 1000 "target
    closed", and the command exits 0. Token from --token-file, relay URL with a base path."""
    def say_and_close(sock):
        sock.recv(5)
        sock.sendall(b"hello from the target")

    target = targets(say_and_close)
    relay = relays(base="/under/pass")
    tok = tmp / "pair.token"
    tok.write_text(TOKEN + "\n")
    p = start_pair(procs, env, tmp, relay.url("/under/pass/"), target.port, "--token-file",
                   str(tok), token=None)
    ws = relay.accept()
    relay.pair(ws)
    ws.send(b"hello")
    code, reason, data = closed_by_host(ws)
    assert (code, reason) == (1000, "target closed")
    assert data == b"hello from the target"
    assert wait_exit(p) == 0, p.text()
    assert "pairing ended: target closed" in p.text()


def test_browser_joined_first(procs, env, tmp, relays, targets):
    """"paired" right behind the 101 (possibly in the same read as the response head)."""
    target = targets(echo_handler)
    relay = relays(at_once=True)
    p = start_pair(procs, env, tmp, relay.url(), target.port)
    ws = relay.accept()
    ws.send(b"x" * 100000)
    assert recv_bytes(ws, 100000, timeout=10) == b"x" * 100000
    ws.close(1001, "tab closed")
    assert wait_exit(p) == 0, p.text()
    assert "pairing ended: peer closed (1001 tab closed)" in p.text()


def test_target_refused_sends_close_1011(procs, env, tmp, relays):
    """Nothing listens on the target port: Close 1011 "target refused: ...", exit 1 with a
    message. Token from the environment."""
    relay = relays()
    e = dict(env, UNDERPASS_TOKEN=TOKEN)
    p = start_pair(procs, e, tmp, relay.url(), free_port(), token=None)
    ws = relay.accept()
    relay.pair(ws)
    code, reason, data = closed_by_host(ws)
    assert code == 1011 and reason.startswith("target refused: "), (code, reason)
    assert "Connection refused" in reason
    assert data == b""
    assert wait_exit(p) == 1, p.text()
    assert "underpass pair: cannot reach the target" in p.text()
    assert "Connection refused" in p.text()


@pytest.mark.parametrize("status,body", [(404, "unknown or expired token"),
                                         (409, "pairing already used"),
                                         (410, "pairing expired")])
def test_relay_refuses_upgrade(procs, env, tmp, relays, status, body):
    relay = relays(status=status, body=body + "\n")
    p = start_pair(procs, env, tmp, relay.url(), free_port())
    assert wait_exit(p, 10) == 1, p.text()
    out = p.text()
    assert f"underpass pair: relay refused the upgrade: {status}" in out, out
    assert body in out
    assert "ask the platform for a new" in out


def test_token_is_percent_encoded_and_early_close(procs, env, tmp, relays):
    """A token outside base64url is percent-encoded in the path. The relay closing before a
    browser joined (1008 "pairing expired") ends the command with 1."""
    relay = relays(token="a/b c%")
    p = start_pair(procs, env, tmp, relay.url(), free_port(), token="a/b c%")
    ws = relay.accept()
    assert relay.paths == ["/pair/a%2Fb%20c%25?side=host"]
    ws.close(1008, "pairing expired")
    assert wait_exit(p) == 1, p.text()
    assert "before a browser joined (1008 pairing expired)" in p.text()


def test_data_before_paired_is_refused(procs, env, tmp, relays, targets):
    """A relay that sends bytes before "paired" broke the protocol: Close 1002, exit 1, and the
    target is never connected."""
    target = targets(echo_handler)
    relay = relays()
    p = start_pair(procs, env, tmp, relay.url(), target.port)
    ws = relay.accept()
    ws.send(b"too early")
    code, reason, _ = closed_by_host(ws)
    assert code == 1002, (code, reason)
    assert wait_exit(p) == 1, p.text()
    assert "before \"paired\"" in p.text()
    assert target.handled == 0


def test_pair_timeout(procs, env, tmp, relays):
    relay = relays()
    p = start_pair(procs, env, tmp, relay.url(), free_port(), "--pair-timeout", "300ms")
    ws = relay.accept()
    code, reason, _ = closed_by_host(ws)
    assert (code, reason) == (1001, "pair timeout")
    assert wait_exit(p) == 1, p.text()
    assert "no browser joined within 0.3s" in p.text()


@pytest.mark.parametrize("paired", [False, True])
def test_sigterm_closes_gracefully(procs, env, tmp, relays, targets, tls_files, paired):
    """SIGTERM while waiting or while copying (over wss): Close 1001, the target closed,
    exit 0."""
    target = targets(echo_handler)
    relay = relays(tls=tls_files)
    p = start_pair(procs, env, tmp, relay.url(), target.port, "--ca", str(tls_files[0]))
    ws = relay.accept()
    if paired:
        relay.pair(ws)
        ws.send(b"ping?")
        assert recv_bytes(ws, 5, timeout=5) == b"ping?"
    else:
        p.wait_log("waiting for the browser", 5)
    os.kill(p.pid, signal.SIGTERM)
    code, reason, _ = closed_by_host(ws)
    assert (code, reason) == (1001, "host going away")
    assert wait_exit(p) == 0, p.text()
    if paired:
        wait_until(lambda: target.handled == 1, 5, "target connection closed")


def test_relay_unreachable(procs, env, tmp):
    p = start_pair(procs, env, tmp, f"ws://127.0.0.1:{free_port()}", free_port())
    assert wait_exit(p, 10) == 1, p.text()
    assert "underpass pair: cannot connect to 127.0.0.1:" in p.text()


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_backpressure_slow_target(procs, env, tmp, relays, targets, tls_files, scheme):
    """A target that does not read: the host stops reading the relay instead of buffering
    everything (bounded memory), and all bytes still arrive once the target reads (over wss
    too, where decrypted records wait inside TLS when reading resumes)."""
    gate = threading.Event()
    got = hashlib.sha256()
    n = [0]

    def slow(sock):
        gate.wait(30)
        while True:
            b = sock.recv(1 << 18)
            if not b:
                return
            got.update(b)
            n[0] += len(b)

    target = targets(slow)
    tls = tls_files if scheme == "wss" else None
    relay = relays(tls=tls)
    extra = ["--ca", str(tls[0])] if tls else []
    p = start_pair(procs, env, tmp, relay.url(), target.port, *extra)
    ws = relay.accept()
    relay.pair(ws)
    data = os.urandom(24 << 20)
    sent = [0]

    def send():
        for i in range(0, len(data), 1 << 16):
            ws.send(data[i:i + (1 << 16)])
            sent[0] = i + (1 << 16)
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    # The sender stalls well short of 24 MiB: kernel buffers plus the host's bound, not all.
    stalled_at = settled(lambda: sent[0])
    assert stalled_at < len(data), "the host took 24 MiB without the target reading"
    rss_kib = int(next(line.split()[1] for line in open(f"/proc/{p.pid}/status")
                       if line.startswith("VmRSS:")))
    assert rss_kib < 64 * 1024, f"host RSS {rss_kib} KiB while the target does not read"
    gate.set()
    sender.join(60)
    assert not sender.is_alive()
    wait_until(lambda: n[0] >= len(data), 60, "all bytes at the target")
    assert got.hexdigest() == hashlib.sha256(data).hexdigest()
    ws.close(1000, "done")
    assert wait_exit(p) == 0, p.text()


def test_backpressure_slow_browser(procs, env, tmp, relays, targets):
    """The browser side does not read: the host stops reading the target (bounded memory), and
    every byte arrives, in order, once the browser reads again."""
    data = os.urandom(24 << 20)
    sent = [0]
    done = threading.Event()

    def fast(sock):
        for i in range(0, len(data), 1 << 16):
            sock.sendall(data[i:i + (1 << 16)])
            sent[0] = i + (1 << 16)
        done.set()
        sock.recv(1)  # hold the connection until the host closes it

    target = targets(fast)
    relay = relays()
    p = start_pair(procs, env, tmp, relay.url(), target.port)
    ws = relay.accept()
    relay.pair(ws)
    wait_until(lambda: sent[0] > 0, 5, "target sending")
    stalled_at = settled(lambda: sent[0])
    assert stalled_at < len(data), "the host read 24 MiB from the target nobody receives"
    rss_kib = int(next(line.split()[1] for line in open(f"/proc/{p.pid}/status")
                       if line.startswith("VmRSS:")))
    assert rss_kib < 64 * 1024, f"host RSS {rss_kib} KiB while the browser does not read"
    got = recv_bytes(ws, len(data), timeout=60)
    assert done.wait(5)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    ws.close(1000, "done")
    assert wait_exit(p) == 0, p.text()
