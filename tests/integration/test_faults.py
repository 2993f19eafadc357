"""Failures propagate: relay killed → connect's sockets close and the agent comes back when the
relay does; a silent link is declared dead after the missed pings; nothing dangles."""
import os
import signal
import socket
import time

import pytest

from harness import Server, echo_handler, exchange, wait_until


@pytest.fixture
def echo():
    s = Server(echo_handler)
    yield s
    s.close()


def recv_eof(sock, timeout):
    sock.settimeout(timeout)
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_relay_killed_closes_client_sockets_and_agent_reconnects(stack, echo):
    backend_closed = []

    def echo_then_note_close(sock):
        try:
            while True:
                b = sock.recv(65536)
                if not b:
                    break
                sock.sendall(b)
        except OSError:
            pass
        backend_closed.append(True)

    srv = Server(echo_then_note_close)
    relay = stack.start_relay()
    port = stack.relay_port
    agent = stack.start_agent([f"echo=tcp://127.0.0.1:{srv.port}"], "--backoff-max", "2s")
    c = stack.start_connect("echo", "--backoff-max", "2s")
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    s.sendall(b"hello")
    assert s.recv(5) == b"hello"
    relay.kill()
    t0 = time.monotonic()
    assert recv_eof(s, 5), "connect kept the local socket open after the relay died"
    wait_until(lambda: backend_closed, 5, "agent closed its backend socket")
    assert time.monotonic() - t0 < 2.0
    s.close()
    agent.wait_log("relay link down", 5)
    # Relay back on the same port: agent and connect return by themselves.
    stack.start_relay(port=port, name="relay2")
    agent.wait_log("connected to relay", 10, count=2)
    c.wait_log("connected to relay", 10, count=2)
    assert exchange(c.port, b"again", timeout=10) == b"again"
    srv.close()


def test_agent_killed_resets_client_streams(stack, echo):
    stack.start_relay()
    agent = stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"])
    c = stack.start_connect("echo")
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    agent.kill()
    t0 = time.monotonic()
    assert recv_eof(s, 5)
    assert time.monotonic() - t0 < 2.0
    c.wait_log("link-lost", 5)
    wait_until(lambda: stack.stats()["streams_active"] == 0, 5, "relay streams released")


def test_silent_agent_link_declared_dead_after_missed_pings(stack, echo):
    stack.start_relay("--ping-interval", "200ms", "--ping-misses", "2")
    agent = stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"], "--ping-interval", "60s")
    c = stack.start_connect("echo")
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    os.kill(agent.pid, signal.SIGSTOP)  # the agent stops answering, its socket stays open
    try:
        t0 = time.monotonic()
        assert recv_eof(s, 5), "stream not closed after the agent link went silent"
        elapsed = time.monotonic() - t0
        assert elapsed < 2.0, elapsed
        stack.relay_proc.wait_log("pings unanswered", 5)
        assert stack.stats()["agents"] == 0
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    agent.wait_log("connected to relay", 10, count=2)


def test_backend_killed_midstream_closes_client(stack):
    def reset_after_1000(sock):
        got = 0
        while got < 1000:
            b = sock.recv(65536)
            if not b:
                return
            got += len(b)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST to the agent

    srv = Server(reset_after_1000)
    try:
        stack.start_relay()
        stack.start_agent([f"rst=tcp://127.0.0.1:{srv.port}"])
        c = stack.start_connect("rst")
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"x" * 1000)
        t0 = time.monotonic()
        assert recv_eof(s, 5)
        assert time.monotonic() - t0 < 2.0
        c.wait_log("reset", 5)
    finally:
        srv.close()


def test_no_leaked_fds_after_many_streams(stack, echo):
    relay = stack.start_relay()
    agent = stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"])
    c = stack.start_connect("echo")
    # Baseline with the links up and no stream yet.
    base = (relay.nfds(), agent.nfds(), c.nfds())
    assert exchange(c.port, b"warm") == b"warm"
    for i in range(200):
        assert exchange(c.port, b"x" * (i * 100)) == b"x" * (i * 100)
    now = lambda: (relay.nfds(), agent.nfds(), c.nfds())  # noqa: E731
    try:
        wait_until(lambda: now() == base, 5, "fd counts back to baseline")
    except TimeoutError:
        raise AssertionError(f"fds (relay, agent, connect) were {base}, now {now()}")
    assert stack.stats()["link_streams"] == 0


def test_silent_relay_detected_by_agent_and_connect(stack):
    """The relay stops answering (SIGSTOP, socket open): agent and connect each declare their
    link dead after the missed pings; connect closes its local socket, the agent closes its
    backend socket."""
    closed = []

    def hold(sock):
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
        closed.append(True)

    srv = Server(hold)
    try:
        relay = stack.start_relay("--ping-interval", "60s")
        fast = ("--ping-interval", "200ms", "--ping-misses", "2")
        agent = stack.start_agent([f"hold=tcp://127.0.0.1:{srv.port}"], *fast)
        c = stack.start_connect("hold", *fast)
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"x")
        wait_until(lambda: srv.handled == 0 and stack.stats()["streams_active"] == 1, 5,
                   "stream open")
        os.kill(relay.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            assert recv_eof(s, 5), "connect kept its socket after the relay went silent"
            c.wait_log("pings unanswered", 5)
            agent.wait_log("pings unanswered", 5)
            wait_until(lambda: closed, 5, "agent closed the backend socket")
            assert time.monotonic() - t0 < 3.0
        finally:
            os.kill(relay.pid, signal.SIGCONT)
    finally:
        srv.close()


def test_local_connection_waits_for_the_relay_link(stack, echo):
    """connect --listen accepted before the relay is up: the connection waits (--hold) and
    goes through once relay and agent are there."""
    from harness import free_port_outside_ephemeral
    import threading
    port = free_port_outside_ephemeral()
    stack.relay_port = port
    c = stack.start_connect("echo", "--backoff-max", "500ms", wait=False)
    c.wait_log("connect ready on", 10)
    result = []
    t = threading.Thread(target=lambda: result.append(exchange(c.port, b"early", timeout=20)))
    t.start()
    c.wait_log("waits for the relay link", 5)
    stack.start_relay(port=port)
    stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"])
    t.join(20)
    assert result == [b"early"]


def test_held_connection_closed_when_the_relay_stays_away(stack):
    from harness import free_port_outside_ephemeral
    stack.relay_port = free_port_outside_ephemeral()  # nothing listens there
    c = stack.start_connect("echo", "--hold", "500ms", wait=False)
    c.wait_log("connect ready on", 10)
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    t0 = time.monotonic()
    assert recv_eof(s, 5)
    assert 0.4 < time.monotonic() - t0 < 3.0
    c.wait_log("no link to the relay within 0.5s", 5)
