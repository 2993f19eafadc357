"""The relay behind a real TLS-terminating reverse proxy (nginx, haproxy) on loopback.

    connect/agent --wss--> nginx|haproxy :TLS --ws, X-Forwarded-For, source 127.0.0.9--> relay
    relay --> agent --PROXY v1|v2 header, then the stream--> backend (records what it saw)

Clients dial from 127.0.0.1 and the proxy reaches the relay from 127.0.0.9 (proxy_bind /
source), so the relay can tell them apart. The relay believes X-Forwarded-For only from
--trusted-proxy peers; a client's own X-Forwarded-For, sent straight to the relay or through
the proxy, never changes who the relay thinks is calling."""
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import urllib.error

import pytest

from conftest import BIN, mint
from harness import Proc, Server, echo_handler, exchange, wait_until
from proxies import Haproxy, Nginx, make_cert, read_head, require

KiB = 1 << 10
MiB = 1 << 20
PROXY = "127.0.0.9"  # the reverse proxy's source address towards the relay
REVERSE = {"nginx": Nginx, "haproxy": Haproxy}
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"  # haproxy's proxy-protocol.txt §2.2


# ---- a backend that expects a PROXY protocol header

def recv_exactly(sock, n):
    buf = b""
    while len(buf) < n:
        b = sock.recv(n - len(buf))
        if not b:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += b
    return buf


def read_proxy_header(sock, version):
    """Read exactly one PROXY protocol header (nothing after it) and return what it says:
    {"cmd": "proxy", "src", "sport", "dst", "dport"} or {"cmd": "unknown"|"local"}."""
    if version == 1:
        line = b""
        while not line.endswith(b"\r\n"):
            b = sock.recv(1)
            if not b:
                raise EOFError(f"EOF inside the v1 header: {line!r}")
            line += b
            if len(line) > 107:  # the spec's limit
                raise ValueError(f"v1 header too long: {line!r}")
        parts = line[:-2].decode("ascii").split(" ")
        if parts[:2] == ["PROXY", "UNKNOWN"]:
            return {"cmd": "unknown", "raw": line}
        if len(parts) != 6 or parts[0] != "PROXY" or parts[1] not in ("TCP4", "TCP6"):
            raise ValueError(f"bad v1 header {line!r}")
        return {"cmd": "proxy", "src": parts[2], "dst": parts[3], "sport": int(parts[4]),
                "dport": int(parts[5]), "raw": line}
    head = recv_exactly(sock, 16)
    if head[:12] != V2_SIG:
        raise ValueError(f"bad v2 signature {head!r}")
    ver_cmd, fam = head[12], head[13]
    body = recv_exactly(sock, int.from_bytes(head[14:16], "big"))
    if ver_cmd == 0x20:
        return {"cmd": "local", "raw": head + body}
    if ver_cmd != 0x21 or fam not in (0x11, 0x21):
        raise ValueError(f"bad v2 command/family {ver_cmd:#x}/{fam:#x}")
    alen = 4 if fam == 0x11 else 16
    ip = ipaddress.IPv4Address if fam == 0x11 else ipaddress.IPv6Address
    p = 2 * alen
    return {"cmd": "proxy", "src": str(ip(body[:alen])), "dst": str(ip(body[alen:p])),
            "sport": int.from_bytes(body[p:p + 2], "big"),
            "dport": int.from_bytes(body[p + 2:p + 4], "big"), "raw": head + body}


class ProxyBackend:
    """A TCP server that reads one PROXY header per connection, records it in seen (or the
    error in errors), then echoes everything after it byte for byte."""

    def __init__(self, version):
        self.version = version
        self.seen, self.errors = [], []

        def handler(sock):
            try:
                h = read_proxy_header(sock, version)
            except (ValueError, EOFError, UnicodeDecodeError) as e:
                self.errors.append(repr(e))
                return
            h["peer"] = sock.getpeername()[0]
            self.seen.append(h)
            echo_handler(sock)

        self.srv = Server(handler)
        self.port = self.srv.port

    def close(self):
        self.srv.close()


# ---- fixtures and helpers

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("cert"), ips=("127.0.0.1",))


@pytest.fixture
def backends():
    made = []

    def make(version):
        b = ProxyBackend(version)
        made.append(b)
        return b
    yield make
    for b in made:
        b.close()


@pytest.fixture
def fronts():
    started = []

    def make(kind, *args, **kw):
        require(kind)
        rp = REVERSE[kind](*args, **kw)
        started.append(rp)
        return rp
    yield make
    for rp in reversed(started):
        rp.stop()


def behind(stack, rp, cert):
    """Point the stack's agents, connects and stats() at the proxy (wss, our CA); return the
    relay's own port."""
    direct = stack.relay_port
    stack.scheme, stack.relay_port, stack.ca = "wss", rp.port, cert[0]
    return direct


def start_front(stack, fronts, tmp, cert, kind, *relay_args):
    """A plain relay on loopback with the proxy in front of it, from 127.0.0.9."""
    require(kind)
    stack.start_relay(*relay_args)
    rp = fronts(kind, tmp, stack.relay_port, cert[0], cert[1], source=PROXY)
    return rp, behind(stack, rp, cert)


def one_stream(stack, be, n=64 * KiB):
    """A connect to service pp; send n random bytes through it, require them back, and return
    the PROXY header the backend saw for that connection."""
    c = stack.start_connect("pp")
    before = len(be.seen)
    data = os.urandom(n)
    got = exchange(c.port, data, timeout=30)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), \
        f"{len(got)} of {len(data)} bytes came back, or different ones"
    assert not be.errors, be.errors
    wait_until(lambda: len(be.seen) > before, 5, "the backend's record")
    return be.seen[-1]


def raw_upgrade(sock, token, extra=b""):
    """A WebSocket upgrade to /v1/connect; returns (status, head)."""
    sock.sendall(b"GET /v1/connect HTTP/1.1\r\nHost: relay.test\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Authorization: Bearer " + token.encode() + b"\r\n" + extra + b"\r\n")
    return read_head(sock)


def connected_lines(relay, role="client"):
    return re.findall(rf"{role} \S+ connected from [^\n]*", relay.text())


# ---- the tests

@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_trusted_proxy_backend_sees_the_real_client(stack, fronts, backends, tmp, cert, kind,
                                                    version):
    be = backends(version)
    rp, direct = start_front(stack, fronts, tmp, cert, kind, "--trusted-proxy", PROXY)
    stack.start_agent([f"pp=tcp://127.0.0.1:{be.port}?proxy-protocol=v{version}"])
    h = one_stream(stack, be)
    # The client as nginx/haproxy saw it (X-Forwarded-For carries no port); the destination is
    # the relay's end of the proxy's connection.
    assert h["cmd"] == "proxy", h
    assert (h["src"], h["sport"]) == ("127.0.0.1", 0), h
    assert (h["dst"], h["dport"]) == ("127.0.0.1", direct), h
    if version == 1:
        assert h["raw"] == f"PROXY TCP4 127.0.0.1 127.0.0.1 0 {direct}\r\n".encode()
    assert h["peer"] == "127.0.0.1"  # the agent's own connection, for contrast
    relay = stack.relay_proc
    lines = connected_lines(relay)
    assert lines and all(re.fullmatch(
        r"client \S+ connected from 127\.0\.0\.1 \(via proxy 127\.0\.0\.9:\d+, https\)", ln)
        for ln in lines), lines
    assert re.search(r"agent \S+ connected from 127\.0\.0\.1 \(via proxy 127\.0\.0\.9:\d+, "
                     r"https\) serving pp", relay.text()), relay.text()
    # /stats judges the client behind the proxy: 127.0.0.1 is loopback.
    assert stack.stats()["streams_total"] >= 1


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_untrusted_proxy_backend_sees_the_proxy(stack, fronts, backends, tmp, cert, kind):
    be = backends(1)
    rp, direct = start_front(stack, fronts, tmp, cert, kind)
    stack.start_agent(["pp=tcp://127.0.0.1:{}?proxy-protocol=v1".format(be.port)])
    h = one_stream(stack, be)
    assert h["cmd"] == "proxy", h
    assert h["src"] == PROXY and h["sport"] > 0, h
    assert (h["dst"], h["dport"]) == ("127.0.0.1", direct), h
    relay = stack.relay_proc
    lines = connected_lines(relay)
    assert lines and all(re.fullmatch(r"client \S+ connected from 127\.0\.0\.9:\d+", ln)
                         for ln in lines), lines
    assert "via proxy" not in relay.text()
    # X-Forwarded-For from an untrusted peer is not believed, and it shows the request came
    # through a proxy: /stats is not served to it although its peer is on loopback.
    with pytest.raises(urllib.error.HTTPError) as e:
        stack.stats()
    assert e.value.code == 403


def test_forged_xff_straight_to_the_relay_is_ignored(stack, backends):
    be = backends(2)
    stack.start_relay("--trusted-proxy", PROXY)
    stack.start_agent([f"pp=tcp://127.0.0.1:{be.port}?proxy-protocol=v2"])
    # connect straight to the relay, from 127.0.0.1 (not a trusted proxy): its real address
    # and port.
    h = one_stream(stack, be)
    assert h["cmd"] == "proxy" and h["src"] == "127.0.0.1" and h["sport"] > 0, h
    assert (h["dst"], h["dport"]) == ("127.0.0.1", stack.relay_port), h
    # A client that writes its own X-Forwarded-For (and -Proto) gets its link, under its own
    # address.
    relay = stack.relay_proc
    n = len(connected_lines(relay))
    s = socket.create_connection(("127.0.0.1", stack.relay_port), timeout=5)
    try:
        status, head = raw_upgrade(s, mint(stack.env, "client", "pp"),
                                   b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.7\r\n"
                                   b"X-Forwarded-Proto: https\r\n")
        assert status == 101, head
        relay.wait_log("connected from", 5, count=n + 1)
    finally:
        s.close()
    lines = connected_lines(relay)
    assert re.fullmatch(r"client \S+ connected from 127\.0\.0\.1:\d+", lines[-1]), lines
    assert "6.6.6." not in relay.text() and "via proxy" not in relay.text()


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_forged_xff_through_a_trusted_proxy_is_ignored(stack, fronts, tmp, cert, kind):
    """nginx appends the peer to the client's X-Forwarded-For, haproxy adds a second header:
    either way the walk from the right stops at the real client."""
    rp, _ = start_front(stack, fronts, tmp, cert, kind, "--trusted-proxy", PROXY)
    relay = stack.relay_proc
    ctx = ssl.create_default_context(cafile=str(cert[0]))
    s = ctx.wrap_socket(socket.create_connection((rp.addr, rp.port), timeout=5),
                        server_hostname="127.0.0.1")
    try:
        status, head = raw_upgrade(s, mint(stack.env, "client", "pp"),
                                   b"X-Forwarded-For: 6.6.6.6, 127.0.0.9\r\n"
                                   b"X-Forwarded-Proto: gopher\r\n")
        assert status == 101, head
        relay.wait_log("connected from", 5)
    finally:
        s.close()
    lines = connected_lines(relay)
    assert re.fullmatch(
        r"client \S+ connected from 127\.0\.0\.1 \(via proxy 127\.0\.0\.9:\d+, https\)",
        lines[-1]), lines
    assert "6.6.6.6" not in relay.text()


def test_8mib_byte_exact_through_nginx(stack, fronts, backends, tmp, cert):
    be = backends(2)
    start_front(stack, fronts, tmp, cert, "nginx", "--trusted-proxy", PROXY)
    stack.start_agent([f"pp=tcp://127.0.0.1:{be.port}?proxy-protocol=v2"])
    h = one_stream(stack, be, n=8 * MiB)
    assert h["src"] == "127.0.0.1", h
    assert stack.stats()["bytes_relayed"] >= 2 * 8 * MiB


def test_ipv6_relay_behind_nginx_mixed_families(stack, fronts, backends, tmp, cert):
    """nginx reaches the relay over IPv6 from ::1 while the client is IPv4: the PROXY line
    carries both as IPv6 (the client IPv4-mapped), as the spec asks for mixed families."""
    require("nginx")
    be = backends(1)
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    s.close()
    relay = Proc([BIN, "relay", "--listen", f"[::1]:{port}", "--trusted-proxy", "::1"],
                 stack.env, tmp / "relay.log")
    stack.procs.append(relay)
    relay.wait_log("relay ready on", 10)
    stack.relay_proc = relay
    rp = fronts("nginx", tmp, port, cert[0], cert[1], backend_addr="[::1]", source="::1")
    behind(stack, rp, cert)
    stack.start_agent([f"pp=tcp://127.0.0.1:{be.port}?proxy-protocol=v1"])
    h = one_stream(stack, be)
    assert h["raw"] == f"PROXY TCP6 ::ffff:127.0.0.1 ::1 0 {port}\r\n".encode(), h
    lines = connected_lines(relay)
    assert lines and all(re.fullmatch(
        r"client \S+ connected from 127\.0\.0\.1 \(via proxy \[::1\]:\d+, https\)", ln)
        for ln in lines), lines


def test_bad_trusted_proxy_and_proxy_protocol_values_are_startup_errors(env):
    for args, want in [
        (["relay", "--trusted-proxy", "127.0.0.1,10.0.0.0/33"], "--trusted-proxy"),
        (["relay", "--trusted-proxy", "nginx.local"], "bad address"),
        (["agent", "--relay", "ws://127.0.0.1:1", "--token", "t", "--service",
          "pp=tcp://127.0.0.1:22?proxy-protocol=v3"], "proxy-protocol must be v1 or v2"),
        (["agent", "--relay", "ws://127.0.0.1:1", "--token", "t", "--service",
          "pp=tcp://127.0.0.1:22?proxy_protocol=v1"], "unknown option"),
    ]:
        out = subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=10)
        assert out.returncode == 2, (args, out.stderr)
        assert want in out.stderr, (args, out.stderr)
