"""Limits at the relay's front door and on the dialing side: each has a default, a flag, and
a clear answer when it is hit."""
import socket
import subprocess
import time

from conftest import BIN, mint
from harness import Server, free_port


def read_all(s, timeout=5):
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    except (ConnectionResetError, socket.timeout):
        return out


def test_slow_request_head_gets_408_after_head_timeout(stack):
    stack.start_relay("--head-timeout", "300ms")
    s = socket.create_connection(("127.0.0.1", stack.relay_port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
    t0 = time.monotonic()
    resp = read_all(s)
    elapsed = time.monotonic() - t0
    assert resp.startswith(b"HTTP/1.1 408 "), resp
    assert 0.2 < elapsed < 3.0, elapsed


def test_idle_connection_closed_after_head_timeout(stack):
    stack.start_relay("--head-timeout", "300ms")
    s = socket.create_connection(("127.0.0.1", stack.relay_port), timeout=5)
    t0 = time.monotonic()
    assert read_all(s) == b""
    assert time.monotonic() - t0 < 3.0


def test_oversized_head_gets_431(stack):
    stack.start_relay("--max-head", "2k")
    for size, want in ((1000, b"200"), (4000, b"431")):
        s = socket.create_connection(("127.0.0.1", stack.relay_port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * size + b"\r\n\r\n")
        resp = read_all(s)
        assert resp.split(b" ")[1] == want, resp[:100]


def test_malformed_request_gets_400_and_relay_keeps_serving(stack):
    stack.start_relay()
    for bad in (b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n",  # smuggling
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):  # TLS to a plain port
        s = socket.create_connection(("127.0.0.1", stack.relay_port), timeout=5)
        s.sendall(bad)
        resp = read_all(s)
        assert resp.startswith(b"HTTP/1.1 400 "), (bad, resp)
    st = stack.stats()
    assert st["http_errors"] >= 3


def test_dial_timeout_when_the_relay_never_answers_the_upgrade(env):
    # A TCP server that accepts and then says nothing.
    srv = Server(lambda sock: sock.recv(65536) and time.sleep(5))
    try:
        r = subprocess.run([BIN, "connect", "--relay", f"ws://127.0.0.1:{srv.port}", "--token",
                            mint(env, "client", "x"), "x", "--stdio", "--dial-timeout", "300ms"],
                           env=env, input=b"", capture_output=True, timeout=10)
        assert r.returncode == 1
        assert b"timed out waiting for the upgrade" in r.stderr, r.stderr
    finally:
        srv.close()


def test_relay_not_listening_gives_a_clear_error(env):
    r = subprocess.run([BIN, "connect", "--relay", f"ws://127.0.0.1:{free_port()}", "--token",
                        mint(env, "client", "x"), "x", "--stdio"], env=env, input=b"",
                       capture_output=True, timeout=10)
    assert r.returncode == 1
    assert b"Connection refused" in r.stderr, r.stderr
