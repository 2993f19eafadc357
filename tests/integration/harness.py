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
