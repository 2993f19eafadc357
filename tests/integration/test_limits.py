"""Limits at the relay's front door and on the dialing side: each has a default, a flag, and
a clear answer when it is hit."""
import os
import socket
import subprocess
import time
import urllib.request

from conftest import BIN, mint
from harness import Proc, Server, free_port, wait_until


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


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_relay_neither_spins_nor_floods_its_log(procs, env, tmp):
    """At the descriptor limit, accept fails while connections stay queued: a level-triggered
    listener would wake for them again at once (100 % CPU and a warning per wake-up). The
    relay pauses accepting instead, warns once, and serves again when descriptors free."""
    port = free_port()
    relay = Proc(["prlimit", "--nofile=48:48", BIN, "relay", "--listen", f"127.0.0.1:{port}"],
                 env, tmp / "relay.log")
    procs.append(relay)
    relay.wait_log("relay ready on", 10)
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(80)]
    try:
        relay.wait_log("accept failed: Too many open files", 10)
        cpu0, t0 = cpu_seconds(relay.p.pid), time.monotonic()
        time.sleep(1.5)  # a measuring window, not a wait for something to happen
        busy = (cpu_seconds(relay.p.pid) - cpu0) / (time.monotonic() - t0)
        assert busy < 0.2, f"relay used {busy:.0%} of a core while out of descriptors"
        warnings = relay.text().count("accept failed")
        assert warnings == 1, f"{warnings} accept warnings in 1.5 s"
    finally:
        for s in held:
            s.close()

    def healthy():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    wait_until(healthy, 10, "the relay to serve again once descriptors were freed")
    assert relay.alive()
