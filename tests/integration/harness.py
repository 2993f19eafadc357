"""Process and network helpers for the integration tests (loopback only)."""
import hashlib
import os
import signal
import socket
import socketserver
import subprocess
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_port_outside_ephemeral():
    """A free port below the ephemeral range, for a server that starts later: a client that
    keeps dialing a port in the ephemeral range can be handed that very port as its own source
    port and connect to itself (TCP simultaneous open), which then blocks the server's bind."""
    import random
    for _ in range(200):
        port = random.randint(20000, 32000)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port below the ephemeral range")


def wait_until(pred, timeout, what="condition", interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A child process whose stderr+stdout go to a log file we can wait on."""

    def __init__(self, args, env, log_path, stdin=subprocess.DEVNULL):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=stdin, start_new_session=True)
        self.pid = self.p.pid

    def text(self):
        try:
            return open(self.log_path, "rb").read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout, count=1):
        def ok():
            if self.p.poll() is not None and self.text().count(pattern) < count:
                raise AssertionError(f"{self.args[1]} exited ({self.p.returncode}) before "
                                     f"'{pattern}':\n{self.text()}")
            return self.text().count(pattern) >= count
        try:
            wait_until(ok, timeout, f"'{pattern}' in {self.log_path}")
        except TimeoutError:
            raise AssertionError(f"no '{pattern}' within {timeout}s in {self.args[1]} log:\n"
                                 f"{self.text()}")

    def alive(self):
        return self.p.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout=5):
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGTERM)
                self.p.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.kill()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()

    def nfds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))


class _Threaded(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


class Server:
    """A TCP server on 127.0.0.1 running handler(sock) per connection in threads."""

    def __init__(self, handler, port=0):
        outer = self

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    handler(self.request)
                except OSError:
                    pass
                outer.handled += 1

        self.handled = 0
        self.srv = _Threaded(("127.0.0.1", port), H)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def echo_handler(sock):
    while True:
        b = sock.recv(1 << 18)
        if not b:
            sock.shutdown(socket.SHUT_WR)
            return
        sock.sendall(b)


def digest_handler(sock):
    """Read until EOF, then answer with the sha256 of what arrived, its length, and close."""
    h = hashlib.sha256()
    n = 0
    while True:
        b = sock.recv(1 << 18)
        if not b:
            break
        h.update(b)
        n += len(b)
    sock.sendall(f"{h.hexdigest()} {n}\n".encode())
    sock.shutdown(socket.SHUT_WR)


def exchange(port, data, timeout=60, chunk=1 << 18):
    """Send data to 127.0.0.1:port while reading the reply until EOF; return the reply."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = []
    err = []

    def reader():
        try:
            while True:
                b = s.recv(1 << 20)
                if not b:
                    return
                got.append(b)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    view = memoryview(data)
    for i in range(0, len(data), chunk):
        s.sendall(view[i:i + chunk])
    s.shutdown(socket.SHUT_WR)
    t.join(timeout)
    s.close()
    if t.is_alive():
        raise TimeoutError("reply did not end in time")
    if err:
        raise err[0]
    return b"".join(got)


# ---- shared by the fault tests (test_faults, test_links, test_drain) ----


def wait_fds(proc, want, timeout=5, what=""):
    """Wait (bounded) until proc has exactly `want` open file descriptors."""
    try:
        wait_until(lambda: proc.nfds() == want, timeout, f"fd count of {what or proc.args[1]}")
    except TimeoutError:
        raise AssertionError(f"{what or proc.args[1]}: {proc.nfds()} fds, expected {want}")


def settled_nfds(*procs, quiet=0.15, timeout=5):
    """The fd counts of procs (a list) once none has changed for `quiet` seconds, so that a
    baseline is not taken while a socket (e.g. of a /stats request) is still being closed; for
    one process, its count."""
    def now():
        return [p.nfds() for p in procs]
    deadline = time.monotonic() + timeout
    last, since = now(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        n = now()
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return n[0] if len(procs) == 1 else n
    raise AssertionError(f"fd counts of {[p.args[1] for p in procs]} did not settle within "
                         f"{timeout}s")


class FdBaseline:
    """File-descriptor counts of several processes (by name), taken before a fault with
    nothing in flight. check() waits, bounded, until every process is back at its baseline
    plus an expected change (e.g. relay=-1 for a link socket that is legitimately gone) and
    reports every mismatch at once."""

    def __init__(self, **procs):
        self.procs = procs
        names = list(procs)
        counts = settled_nfds(*procs.values()) if len(names) > 1 else [
            settled_nfds(procs[names[0]])]
        self.base = dict(zip(names, counts))

    def check(self, timeout=5, **delta):
        unknown = set(delta) - set(self.procs)
        assert not unknown, f"no baseline for {unknown}"
        want = {n: self.base[n] + delta.get(n, 0) for n in self.procs}

        def now():
            return {n: p.nfds() for n, p in self.procs.items()}
        try:
            wait_until(lambda: now() == want, timeout, "fd counts back at their baseline")
        except TimeoutError:
            raise AssertionError(f"fd leak: counts {now()}, expected {want} "
                                 f"(baseline {self.base})")


class Flow:
    """One TCP stream through connect to an echo service: sends data (after the first chunk it
    may wait on a gate), reads the echo until EOF, and records its sha256 and when it ended."""

    def __init__(self, port, data, gate=None, first=1 << 16, chunk=1 << 18):
        self.data = data
        self.want = hashlib.sha256(data).hexdigest()
        self.gate = gate
        self.first = min(first, len(data))
        self.chunk = chunk
        self.h = hashlib.sha256()
        self.n = 0
        self.err = None
        self.ended = None
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader.start()
        self.writer.start()

    def _read(self):
        try:
            while True:
                b = self.sock.recv(1 << 20)
                if not b:
                    break
                self.h.update(b)
                self.n += len(b)
        except OSError as e:
            self.err = e
        self.ended = time.monotonic()

    def _write(self):
        try:
            view = memoryview(self.data)
            self.sock.sendall(view[:self.first])
            if self.gate:
                self.gate.wait(60)
            for i in range(self.first, len(self.data), self.chunk):
                self.sock.sendall(view[i:i + self.chunk])
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the reader sees the reset too

    @property
    def done(self):
        return not self.reader.is_alive()

    @property
    def ok(self):
        return (self.done and self.err is None and self.n == len(self.data)
                and self.h.hexdigest() == self.want)

    @property
    def echoed_first(self):
        return self.n >= self.first

    def join(self, timeout):
        self.reader.join(timeout)
        self.writer.join(1)
        self.sock.close()
        assert self.done, "stream did not end in time"


def gated_flows(port, n, size, gate, timeout=20):
    """n Flows of `size` random bytes that each send their first chunk, see it echoed, then
    wait on `gate`: n streams held open mid-transfer for a fault."""
    flows = [Flow(port, os.urandom(size), gate=gate) for _ in range(n)]
    wait_until(lambda: all(f.echoed_first for f in flows), timeout,
               "every stream echoed its start")
    return flows


def assert_cut_promptly(flows, t_fault, bound, what="streams"):
    """Every flow in `flows` has ended (reset or EOF) within `bound` seconds of t_fault and
    none of them carried its data through; returns the slowest close time."""
    assert flows and all(f.done for f in flows), f"{what}: not all ended"
    slowest = max(f.ended for f in flows) - t_fault
    assert slowest < bound, f"{what} closed {slowest:.2f}s after the fault (bound {bound}s)"
    assert not any(f.ok for f in flows), f"{what}: a stream that lost its path completed"
    for f in flows:
        f.sock.close()  # a writer still waiting on its gate then fails quietly
    return slowest


def assert_all_ok(flows, timeout=60, what="surviving streams"):
    """Join every flow and check each carried its data byte for byte (sha256)."""
    for f in flows:
        f.join(timeout)
    bad = [(f.err, f.n, len(f.data)) for f in flows if not f.ok]
    assert not bad, f"{what}: {len(bad)} of {len(flows)} not byte-exact: {bad}"
