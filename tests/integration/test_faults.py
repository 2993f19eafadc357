"""Failures propagate: a hop that dies costs exactly the streams that depended on it, those
close promptly on every other hop, the streams that did not depend on it carry on byte for byte,
and afterwards no process holds a file descriptor or a stream it should not.

Where each fault of the fault list is shown. The first test under each fault (except the
black hole, see below) checks the streams that should survive byte for byte (sha256) after the
fault, bounds the time the lost streams take to close, and ends with every surviving process
back at its file-descriptor baseline (FdBaseline: /proc/<pid>/fd, adjusted only for link
sockets that are legitimately gone) and the relay's streams_active and link_streams at 0; the
tests after it add cases. When everything depends on the failed hop (relay killed or silent),
what survives is a connection made during the outage (held) and the streams after it.

  relay killed and restarted
      test_faults.py::test_relay_killed_closes_client_sockets_and_agent_reconnects
  agent kill -9
      test_faults.py::test_agent_killed_resets_client_streams
  backend killed
      test_faults.py::test_backend_killed_midstream_spares_other_backends
      test_faults.py::test_backend_killed_midstream_closes_client (the backend resets)
  a link silently black-holed by an nftables rule mid-transfer (network namespaces, root;
  these check detection time, cleanup and recovery, but no concurrent survivor, and fds only
  in the first)
      test_topology.py::test_a_black_holed_link_is_detected_and_every_hop_cleans_up
      test_topology.py::test_a_black_holed_agent_link_is_detected_by_both_ends
    the same silence on loopback, all three checks (SIGSTOP: socket open, nothing answers)
      test_faults.py::test_silent_agent_link_declared_dead_after_missed_pings
      test_faults.py::test_silent_relay_detected_by_agent_and_connect
      test_drain.py::test_relay_pings_detect_a_silent_client
  one of several links cut
      test_links.py::test_agent_links_spread_streams_and_survive_a_cut_link
  one of several agents gone
      test_links.py::test_several_agents_share_a_name_and_one_is_killed
  SIGTERM drain with a transfer in flight that completes
      test_drain.py::test_relay_drain_finishes_transfer_while_a_new_relay_takes_over
      test_drain.py::test_agent_drain_finishes_its_stream_while_new_ones_go_elsewhere
    what a drain cannot finish is reset on time
      test_drain.py::test_relay_drain_timeout_resets_streams_and_exits
      test_drain.py::test_agent_drain_timeout_resets_and_exits
"""
import os
import re
import signal
import socket
import sys
import threading
import time

import pytest

from harness import (FdBaseline, Flow, Proc, Server, assert_all_ok, assert_cut_promptly,
                     echo_handler, exchange, free_port_outside_ephemeral, gated_flows,
                     settled_nfds, wait_fds, wait_until)

FAST = ("--backoff-min", "100ms", "--backoff-max", "500ms")


@pytest.fixture
def echo():
    s = Server(echo_handler)
    yield s
    s.close()


def time_to_close(port, timeout=5):
    """Open a connection to connect's local port and return how long until it is closed (EOF
    or reset, also a reset that beats the handshake's return); fail if it stays open."""
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionResetError:
        return time.monotonic() - t0
    try:
        assert recv_eof(s, timeout), "connect kept the connection open"
    finally:
        s.close()
    return time.monotonic() - t0


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


def echo_noting_close(closed):
    """An echo service that records (monotonic time) when each connection ended."""
    def handler(sock):
        try:
            while True:
                b = sock.recv(1 << 18)
                if not b:
                    break
                sock.sendall(b)
        except OSError:
            pass
        closed.append(time.monotonic())
    return handler


def test_relay_killed_closes_client_sockets_and_agent_reconnects(stack):
    """kill -9 of the relay with four transfers in flight: connect closes all four local sockets
    and the agent all four backend sockets within 2 s. A connection made while the relay is
    away is held and goes through byte for byte once the relay is back on the same port; so do
    new ones; then agent and connect are back at their fd baseline (one link each, no dial
    socket left behind by the retries) and the new relay at the old one's."""
    closed = []
    srv = Server(echo_noting_close(closed))
    try:
        port = free_port_outside_ephemeral()
        relay = stack.start_relay(port=port)
        agent = stack.start_agent([f"echo=tcp://127.0.0.1:{srv.port}"], *FAST)
        c = stack.start_connect("echo", *FAST)
        fds = FdBaseline(agent=agent, connect=c)
        relay_base = settled_nfds(relay)
        gate = threading.Event()
        flows = gated_flows(c.port, 4, 1 << 20, gate)
        stack.wait_streams(4)
        t0 = time.monotonic()
        relay.kill()
        wait_until(lambda: all(f.done for f in flows), 5, "connect closed its local sockets")
        assert_cut_promptly(flows, t0, 2.0, "streams through the dead relay")
        wait_until(lambda: len(closed) == 4, 5, "agent closed its backend sockets")
        assert max(closed) - t0 < 2.0, f"backend sockets closed {max(closed) - t0:.2f}s later"
        agent.wait_log("relay link down", 5)
        c.wait_log("relay link down", 5)
        # Opened while the relay is away: held (--hold), not lost. connect is paused until the
        # agent is back, or the held stream could reach the new relay before any agent did and
        # be refused ("no agent online"), as it should be.
        held = Flow(c.port, os.urandom(1 << 20))
        c.wait_log("waits for the relay link", 5)
        os.kill(c.pid, signal.SIGSTOP)
        try:
            relay2 = stack.start_relay(port=port, name="relay2")
            agent.wait_log("connected to relay", 10, count=2)
            wait_until(lambda: stack.stats()["agents"] == 1, 5, "agent at the new relay")
        finally:
            os.kill(c.pid, signal.SIGCONT)
        c.wait_log("connected to relay", 10, count=2)
        assert_all_ok([held], 30, "the connection held through the outage")
        assert_all_ok([Flow(c.port, os.urandom(4 << 20)) for _ in range(2)], 30,
                      "new streams through the restarted relay")
        wait_until(lambda: len(closed) == 4 + 3, 5, "backend sockets of the new streams closed")
        stack.wait_streams(0)
        fds.check()
        wait_fds(relay2, relay_base, what="restarted relay (same links as the first)")
    finally:
        srv.close()


def test_agent_killed_resets_client_streams(stack):
    """kill -9 of one agent with transfers in flight on it and on another agent (another
    service, another connect, the same relay): the dead agent's streams close within 2 s, the
    others finish byte for byte; a new connection to the orphaned service is closed at once;
    relay, the other agent and both connects hold no fd or stream more than before, and once
    the agent is back the service works again."""
    e1, e2 = Server(echo_handler), Server(echo_handler)
    try:
        relay = stack.start_relay()
        a1 = stack.start_agent([f"echo=tcp://127.0.0.1:{e1.port}"], name="agent1")
        a2 = stack.start_agent([f"other=tcp://127.0.0.1:{e2.port}"], name="agent2")
        c1 = stack.start_connect("echo", name="connect1")
        c2 = stack.start_connect("other", name="connect2")
        wait_until(lambda: (lambda s: (s["agents"], s["clients"]))(stack.stats()) == (2, 2), 5,
                   "two agents and two connects linked")
        fds = FdBaseline(relay=relay, agent2=a2, connect1=c1, connect2=c2)
        gate = threading.Event()
        doomed = gated_flows(c1.port, 3, 1 << 20, gate)
        spared = gated_flows(c2.port, 3, 1 << 20, gate)
        stack.wait_streams(6)
        t0 = time.monotonic()
        a1.kill()
        wait_until(lambda: all(f.done for f in doomed), 5, "the dead agent's streams end")
        assert_cut_promptly(doomed, t0, 2.0, "the dead agent's streams")
        c1.wait_log("link-lost", 5)
        stack.wait_streams(3, timeout=2)
        assert not any(f.done for f in spared), "a stream on the other agent ended"
        gate.set()
        assert_all_ok(spared, what="the other agent's streams")
        # Nobody serves 'echo' now: a new connection is closed at once, with the reason.
        assert time_to_close(c1.port) < 2.0
        c1.wait_log("no agent online for service 'echo'", 5)
        stack.wait_streams(0)
        fds.check(relay=-1)  # the dead agent's link socket is gone, nothing else
        assert stack.stats()["agents"] == 1
        stack.start_agent([f"echo=tcp://127.0.0.1:{e1.port}"], name="agent1b")
        assert_all_ok([Flow(c1.port, os.urandom(1 << 20))], 30, "'echo' with its agent back")
        stack.wait_streams(0)
        fds.check()
    finally:
        e1.close()
        e2.close()


def test_silent_agent_link_declared_dead_after_missed_pings(stack):
    """One agent's link goes silent (SIGSTOP: socket open, nothing answers) with transfers in
    flight on it and on another agent: the relay declares it dead after 2 missed pings of 200 ms
    and its streams close within 2 s, the other agent's finish byte for byte; once the agent
    runs again it comes back, and nobody holds an fd or stream more than before."""
    e1, e2 = Server(echo_handler), Server(echo_handler)
    try:
        relay = stack.start_relay("--ping-interval", "200ms", "--ping-misses", "2")
        agent = stack.start_agent([f"echo=tcp://127.0.0.1:{e1.port}"], "--ping-interval",
                                  "60s", *FAST)
        a2 = stack.start_agent([f"other=tcp://127.0.0.1:{e2.port}"], name="agent2")
        c = stack.start_connect("echo")
        c2 = stack.start_connect("other", name="connect2")
        wait_until(lambda: stack.stats()["clients"] == 2, 5, "both connects linked")
        fds = FdBaseline(relay=relay, agent=agent, agent2=a2, connect=c, connect2=c2)
        gate = threading.Event()
        doomed = gated_flows(c.port, 2, 1 << 20, gate)
        spared = gated_flows(c2.port, 2, 1 << 20, gate)
        stack.wait_streams(4)
        os.kill(agent.pid, signal.SIGSTOP)  # the agent stops answering, its socket stays open
        try:
            t0 = time.monotonic()
            wait_until(lambda: all(f.done for f in doomed), 5, "the silent agent's streams end")
            # 2 misses x 200 ms, plus a ping period of phase and slack.
            assert_cut_promptly(doomed, t0, 2.0, "the silent agent's streams")
            stack.relay_proc.wait_log("pings unanswered", 5)
            assert stack.stats()["agents"] == 1
            stack.wait_streams(2)
            assert not any(f.done for f in spared), "a stream on the other agent ended"
            gate.set()
            assert_all_ok(spared, what="the other agent's streams")
        finally:
            os.kill(agent.pid, signal.SIGCONT)
        agent.wait_log("connected to relay", 10, count=2)
        assert_all_ok([Flow(c.port, os.urandom(1 << 20))], 30, "a stream once the agent is back")
        stack.wait_streams(0)
        fds.check()  # the agent's stale link replaced by one new one, on both ends
    finally:
        e1.close()
        e2.close()


def test_backend_killed_midstream_closes_client(stack):
    """The backend resets its connection (RST) mid-stream: the client's socket closes within
    2 s with the reason logged, and the agent keeps no socket and the relay no stream."""
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
        relay = stack.start_relay()
        agent = stack.start_agent([f"rst=tcp://127.0.0.1:{srv.port}"])
        c = stack.start_connect("rst")
        fds = FdBaseline(relay=relay, agent=agent, connect=c)
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"x" * 1000)
        t0 = time.monotonic()
        assert recv_eof(s, 5)
        assert time.monotonic() - t0 < 2.0
        c.wait_log("reset", 5)
        s.close()
        stack.wait_streams(0)
        fds.check()
    finally:
        srv.close()


# A backend in a process of its own, to be killed: it echoes the first `first` bytes of each
# connection, then stops reading, so the rest of a transfer waits unread in its socket and the
# kill turns into a RST, as for a service that dies under load.
STALLING_ECHO = r"""
import socket, sys, threading
first = int(sys.argv[1])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(64)
print("listening on", ls.getsockname()[1], flush=True)
def serve(c):
    got = 0
    while got < first:
        b = c.recv(first - got)
        if not b:
            return
        got += len(b)
        c.sendall(b)
    threading.Event().wait()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def start_backend(stack, first, name="backend"):
    p = Proc([sys.executable, "-c", STALLING_ECHO, str(first)], stack.env,
             stack.tmp / f"{name}.log")
    stack.procs.append(p)
    p.wait_log("listening on ", 10)
    p.port = int(re.search(r"listening on (\d+)", p.text()).group(1))
    return p


def test_backend_killed_midstream_spares_other_backends(stack):
    """kill -9 of a backend process with three transfers in flight to it, while three others run
    to another backend through the same agent and relay: the killed backend's streams close
    within 2 s, the agent's link stays up, the others finish byte for byte; a new connection to
    the dead backend is closed at once; no process holds an fd or stream more than before."""
    other = Server(echo_handler)
    try:
        first = 1 << 16
        victim = start_backend(stack, first)
        relay = stack.start_relay()
        agent = stack.start_agent([f"victim=tcp://127.0.0.1:{victim.port}",
                                   f"other=tcp://127.0.0.1:{other.port}"])
        cv = stack.start_connect("victim", name="connect-victim")
        co = stack.start_connect("other", name="connect-other")
        wait_until(lambda: stack.stats()["clients"] == 2, 5, "both connects linked")
        fds = FdBaseline(relay=relay, agent=agent, connect_victim=cv, connect_other=co)
        gate = threading.Event()
        spared = gated_flows(co.port, 3, 1 << 20, gate)
        doomed = gated_flows(cv.port, 3, 4 << 20, None)  # they push on into the stalled backend
        stack.wait_streams(6)
        t0 = time.monotonic()
        victim.kill()
        wait_until(lambda: all(f.done for f in doomed), 5, "the dead backend's streams end")
        assert_cut_promptly(doomed, t0, 2.0, "the dead backend's streams")
        stack.wait_streams(3, timeout=2)
        assert not any(f.done for f in spared), "a stream to the other backend ended"
        gate.set()
        assert_all_ok(spared, what="the other backend's streams")
        assert "relay link down" not in agent.text()
        assert stack.stats()["agents"] == 1
        # Nothing listens on the dead backend's port: a new connection is closed at once.
        assert time_to_close(cv.port) < 2.0
        cv.wait_log("refused", 5)
        assert "closed: reset" in cv.text()  # the killed streams were reset, not ended
        stack.wait_streams(0)
        fds.check()
    finally:
        other.close()


def test_no_leaked_fds_after_many_streams(stack, echo):
    relay = stack.start_relay()
    agent = stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"])
    c = stack.start_connect("echo")
    # Baseline with the links up and no stream yet.
    fds = FdBaseline(relay=relay, agent=agent, connect=c)
    assert exchange(c.port, b"warm") == b"warm"
    for i in range(200):
        assert exchange(c.port, b"x" * (i * 100)) == b"x" * (i * 100)
    fds.check()
    stack.wait_streams(0)


def test_silent_relay_detected_by_agent_and_connect(stack):
    """The relay stops answering (SIGSTOP, socket open): agent and connect each declare their
    link dead after the missed pings; connect closes its local socket, the agent closes its
    backend socket. Once the relay runs again both come back, streams go through byte for
    byte, and nobody (the relay included) holds an fd or stream more than before."""
    closed = []
    srv = Server(echo_noting_close(closed))
    try:
        relay = stack.start_relay("--ping-interval", "60s")
        fast = ("--ping-interval", "200ms", "--ping-misses", "2", *FAST)
        agent = stack.start_agent([f"echo=tcp://127.0.0.1:{srv.port}"], *fast)
        c = stack.start_connect("echo", *fast)
        fds = FdBaseline(relay=relay, agent=agent, connect=c)
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        stack.wait_streams(1)
        os.kill(relay.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            assert recv_eof(s, 5), "connect kept its socket after the relay went silent"
            c.wait_log("pings unanswered", 5)
            agent.wait_log("pings unanswered", 5)
            wait_until(lambda: closed, 5, "agent closed the backend socket")
            # 2 misses x 200 ms on each side, plus a ping period of phase and slack.
            assert time.monotonic() - t0 < 3.0
            assert max(closed) - t0 < 3.0
        finally:
            os.kill(relay.pid, signal.SIGCONT)
        s.close()
        agent.wait_log("connected to relay", 10, count=2)
        c.wait_log("connected to relay", 10, count=2)
        wait_until(lambda: stack.stats()["agents"] == 1, 5, "agent back at the relay")
        assert_all_ok([Flow(c.port, os.urandom(1 << 20)) for _ in range(2)], 30,
                      "streams once the relay answers again")
        stack.wait_streams(0)
        fds.check()  # stale links closed on the relay too once it runs again
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


def test_held_connection_waits_for_the_agent_after_a_relay_restart(stack, echo):
    """A connection accepted while the relay is away waits (--hold); when connect is back
    before the agent (its back-off is longer), the relay refuses the stream (no agent yet)
    and the connection keeps waiting, within the same --hold, until the agent is back: it
    then goes through byte-exact. A connection made while the link is up and no agent serves
    the name still fails at once (test_agent_killed_resets_client_streams)."""
    import threading
    from harness import free_port_outside_ephemeral
    port = free_port_outside_ephemeral()
    stack.start_relay(port=port)
    stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"], "--backoff-min", "2s",
                      "--backoff-max", "2s")
    c = stack.start_connect("echo", "--hold", "15s", "--backoff-min", "100ms",
                            "--backoff-max", "200ms")
    stack.relay_proc.kill()
    c.wait_log("relay link down", 5)
    data = os.urandom(1 << 20)
    result = []
    t = threading.Thread(target=lambda: result.append(exchange(c.port, data, timeout=30)))
    t.start()
    c.wait_log("waits for the relay link", 5)
    stack.start_relay(port=port, name="relay2")
    c.wait_log("connected to relay", 5, count=2)
    # connect is back first: the held stream is refused (no agent yet) and waits on.
    wait_until(lambda: stack.stats()["streams_refused"] >= 1, 5, "a no-service refusal")
    assert not result
    t.join(30)
    assert result == [data]
    wait_until(lambda: stack.stats()["streams_active"] == 0, 5, "streams done")


def test_held_connection_waiting_for_an_agent_ends_at_hold(stack):
    from harness import free_port_outside_ephemeral
    port = free_port_outside_ephemeral()
    stack.start_relay(port=port)
    c = stack.start_connect("echo", "--hold", "2s", "--backoff-min", "100ms",
                            "--backoff-max", "200ms")
    stack.relay_proc.kill()
    c.wait_log("relay link down", 5)
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    t0 = time.monotonic()
    c.wait_log("waits for the relay link", 5)
    stack.start_relay(port=port, name="relay2")
    assert recv_eof(s, 6)
    assert 1.5 < time.monotonic() - t0 < 4.0
    c.wait_log("no agent served 'echo' within 2.0s", 5)
    s.close()
