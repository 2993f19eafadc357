"""Several links to one service: an agent with --links N, several agents serving one name, and
a fleet of agents coming back after a relay restart without arriving all at once.

Streams are checked byte for byte (sha256); a lost link costs only its own streams, promptly;
after each fault the survivors are back to their baseline file-descriptor counts."""
import datetime
import re
import socket
import struct
import threading
import time

from conftest import BIN, mint
from harness import (FdBaseline, Proc, Server, assert_all_ok, assert_cut_promptly, echo_handler,
                     exchange, free_port_outside_ephemeral, gated_flows, wait_fds, wait_until)
from test_drain import stream_counts, streams_zero


class Forwarder:
    """A TCP forwarder on 127.0.0.1 to a target port, one pair of sockets per connection, so a
    test can cut one connection (RST both ways) and leave the others alone."""

    def __init__(self, target_port):
        self.target = target_port
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.pairs = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                a, _ = self.ls.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                a.close()
                continue
            b.settimeout(None)
            pair = [a, b, False]
            with self.lock:
                self.pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair, a, b), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, b, a), daemon=True).start()

    def _pump(self, pair, src, dst):
        try:
            while True:
                d = src.recv(1 << 18)
                if not d:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(d)
        except OSError:
            self._kill(pair)

    @staticmethod
    def _kill(pair):
        if pair[2]:
            return
        pair[2] = True
        for s in pair[:2]:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RD)  # wakes the pump blocked in recv()
            except OSError:
                pass
            s.close()  # linger 0: the peer sees RST

    def live(self):
        with self.lock:
            return [p for p in self.pairs if not p[2]]

    def cut(self, pair):
        self._kill(pair)

    def close(self):
        self.closed = True
        self.ls.close()
        for p in self.live():
            self._kill(p)


def start_agent_at(stack, port, services, *extra, name="agent"):
    token = mint(stack.env, "agent", ",".join(s.split("=")[0] for s in services))
    args = [BIN, "agent", "--relay", f"ws://127.0.0.1:{port}", "--token", token]
    for s in services:
        args += ["--service", s]
    p = Proc(args + list(extra), stack.env, stack.tmp / f"{name}.log")
    stack.procs.append(p)
    return p


def test_agent_links_spread_streams_and_survive_a_cut_link(stack):
    echo = Server(echo_handler)
    fwd = None
    try:
        relay = stack.start_relay()
        fwd = Forwarder(stack.relay_port)
        agent = start_agent_at(stack, fwd.port, [f"bulk=tcp://127.0.0.1:{echo.port}"], "--links",
                               "3", "--log-level", "debug", "--backoff-min", "100ms",
                               "--backoff-max", "500ms")
        agent.wait_log("connected to relay", 10, count=3)
        for i in (1, 2, 3):
            assert f"(link {i}/3)" in agent.text()
        wait_until(lambda: stack.stats()["agents"] == 3, 5, "3 agent links at the relay")
        c = stack.start_connect("bulk")
        fds = FdBaseline(relay=relay, agent=agent, connect=c)
        gate = threading.Event()
        flows = gated_flows(c.port, 30, 1 << 20, gate)
        stack.wait_streams(30)
        assert stream_counts(agent, "bulk") == {1: 10, 2: 10, 3: 10}
        # Cut one agent link in the middle of the transfers.
        assert len(fwd.live()) == 3
        t_cut = time.monotonic()
        fwd.cut(fwd.live()[0])
        wait_until(lambda: sum(f.done for f in flows) == 10, 5, "the cut link's streams end")
        lost = [f for f in flows if f.done]
        assert_cut_promptly(lost, t_cut, 2.0, "the cut link's streams")
        # The relay let go of exactly those 10 (on the client link too); 20 remain.
        stack.wait_streams(20, timeout=2)
        assert not any(f.done for f in flows if f not in lost)
        gate.set()
        assert_all_ok([f for f in flows if f not in lost], what="the other links' streams")
        # The cut link comes back by itself and takes streams again.
        agent.wait_log("relay link down (link", 5)
        agent.wait_log("connected to relay", 10, count=4)
        wait_until(lambda: stack.stats()["agents"] == 3, 5, "3 agent links again")
        before = stream_counts(agent, "bulk")
        for i in range(6):
            assert exchange(c.port, b"again %d" % i, timeout=10) == b"again %d" % i
        after = stream_counts(agent, "bulk")
        assert all(after[k] - before.get(k, 0) == 2 for k in (1, 2, 3)), (before, after)
        streams_zero(stack)
        fds.check()  # the cut link is back: same counts everywhere
    finally:
        if fwd:
            fwd.close()
        echo.close()


def test_several_agents_share_a_name_and_one_is_killed(stack):
    echo = Server(echo_handler)
    try:
        relay = stack.start_relay()
        svc = [f"echo=tcp://127.0.0.1:{echo.port}"]
        a1 = stack.start_agent(svc, "--log-level", "debug", name="agent1")
        a2 = stack.start_agent(svc, "--log-level", "debug", name="agent2")
        wait_until(lambda: stack.stats()["agents"] == 2, 5, "two agents")
        c = stack.start_connect("echo")
        fds = FdBaseline(relay=relay, agent2=a2, connect=c)
        gate = threading.Event()
        flows = gated_flows(c.port, 10, 1 << 20, gate)
        stack.wait_streams(10)
        assert sum(stream_counts(a1, "echo").values()) == 5
        assert sum(stream_counts(a2, "echo").values()) == 5
        t_kill = time.monotonic()
        a1.kill()
        wait_until(lambda: sum(f.done for f in flows) == 5, 5, "agent1's streams end")
        lost = [f for f in flows if f.done]
        assert_cut_promptly(lost, t_kill, 2.0, "agent1's streams")
        stack.wait_streams(5, timeout=2)
        gate.set()
        assert_all_ok([f for f in flows if f not in lost], what="agent2's streams")
        wait_until(lambda: stack.stats()["agents"] == 1, 5, "agent1 gone")
        for i in range(6):
            assert exchange(c.port, b"left %d" % i, timeout=10) == b"left %d" % i
        assert sum(stream_counts(a2, "echo").values()) == 11
        streams_zero(stack)
        fds.check(relay=-1)  # agent1's link socket is gone
    finally:
        echo.close()


def log_times(text, what):
    """Times (epoch seconds, ms resolution) of the relay's log lines matching what."""
    pat = re.compile(r"^(\S+)Z info relay " + what, re.M)
    return [datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
            for m in pat.finditer(text)]


def test_agent_fleet_returns_spread_out_after_a_relay_restart(stack):
    n = 40
    port = free_port_outside_ephemeral()
    relay = stack.start_relay(port=port)
    token = mint(stack.env, "agent", "fleet")
    agents = []
    for i in range(n):
        args = [BIN, "agent", "--relay", stack.relay_url, "--token", token, "--service",
                "fleet=tcp://127.0.0.1:9", "--backoff-min", "200ms", "--backoff-max", "2s"]
        p = Proc(args, stack.env, stack.tmp / f"agent{i}.log")
        stack.procs.append(p)
        agents.append(p)
    wait_until(lambda: stack.stats()["agents"] == n, 20, f"{n} agents connected")
    base = [a.nfds() for a in agents]
    relay.kill()
    time.sleep(1.0)  # the scenario: the relay is away for about a second
    relay2 = stack.start_relay(port=port, name="relay2")
    ready = log_times(relay2.text(), "relay ready on")[0]
    wait_until(lambda: stack.stats()["agents"] == n, 2.0 + 3.0, f"{n} agents back")
    times = sorted(log_times(relay2.text(), r"agent \S+ connected from"))
    assert len(times) == n
    rel = [t - ready for t in times]
    spread = rel[-1] - rel[0]
    window = max(sum(1 for u in rel if t <= u < t + 0.05) for t in rel)
    print(f"fleet of {n}: first back {rel[0]:.3f}s, last {rel[-1]:.3f}s after the new relay "
          f"was ready; spread {spread:.3f}s; at most {window} within 50 ms")
    assert rel[-1] < 2.0 + 1.0, rel  # back-off cap + dial time
    assert spread > 0.2, rel
    assert window <= n // 2, rel
    for a, b in zip(agents, base):
        wait_fds(a, b, what="agent")
    assert stack.stats()["streams_active"] == 0
