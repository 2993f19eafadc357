"""Holding on through restarts: the relay drains on SIGTERM (GOAWAY on every link, streams
finish, a replacement relay takes the port at once), agents and connect move to a new link when
they get a GOAWAY, an agent drains on SIGTERM, and the relay's own pings catch a silent client.

Every wait has a deadline; data is checked byte for byte (sha256); after each fault the surviving
processes are back to their baseline file-descriptor counts and the relay has no stream left."""
import base64
import os
import signal
import socket
import struct
import threading
import time

from conftest import mint
from harness import (FdBaseline, Flow, Server, echo_handler, exchange,
                     free_port_outside_ephemeral, wait_fds, wait_until)

FAST = ("--backoff-min", "100ms", "--backoff-max", "1s")


def paced_echo(progress, delay):
    """An echo service that takes its time: 64 KiB per `delay` seconds. progress['in'] counts
    the bytes it received (for 'the transfer is in flight')."""
    def handler(sock):
        while True:
            b = sock.recv(1 << 16)
            if not b:
                sock.shutdown(socket.SHUT_WR)
                return
            progress["in"] = progress.get("in", 0) + len(b)
            sock.sendall(b)
            time.sleep(delay)
    return handler


def streams_zero(stack, timeout=5):
    """No stream left at the relay: neither bridged (streams_active) nor on any link."""
    stack.wait_streams(0, timeout=timeout)


def stream_counts(proc, service):
    """Streams per agent link, from the agent's debug log lines."""
    import re
    counts = {}
    for m in re.finditer(r"link (\d+): stream \d+ for '" + service + "'", proc.text()):
        counts[int(m.group(1))] = counts.get(int(m.group(1)), 0) + 1
    return counts


# ---- relay drain ----


def test_relay_drain_finishes_transfer_while_a_new_relay_takes_over(stack):
    progress = {}
    srv = Server(paced_echo(progress, 0.006))
    try:
        port = free_port_outside_ephemeral()
        relay = stack.start_relay("--drain-timeout", "20s", port=port)
        agent = stack.start_agent([f"bulk=tcp://127.0.0.1:{srv.port}"], *FAST)
        c = stack.start_connect("bulk", *FAST)
        fds = FdBaseline(agent=agent, connect=c)
        data = os.urandom(32 << 20)
        flow = Flow(c.port, data)
        wait_until(lambda: progress.get("in", 0) >= 4 << 20, 20, "transfer in flight")
        relay.kill(signal.SIGTERM)
        relay.wait_log("draining: 1 streams, up to 20s", 5)
        # The port is free at once: the replacement binds it while the old relay drains.
        relay2 = stack.start_relay(port=port, name="relay2")
        agent.wait_log("relay asked us to go away", 5)
        agent.wait_log("connected to relay", 10, count=2)
        c.wait_log("connected to relay", 10, count=2)
        assert not flow.done, "transfer ended before the new relay was up; make it longer"
        # The new relay's baseline: its listener plus one link each from agent and connect.
        wait_until(lambda: (lambda s: (s["agents"], s["clients"]))(stack.stats()) == (1, 1), 5,
                   "agent and connect linked to the new relay")
        fds2 = FdBaseline(relay2=relay2)
        # New streams go through the new relay, beside the transfer on the old one.
        for i in range(5):
            assert exchange(c.port, b"fresh %d" % i, timeout=10) == b"fresh %d" % i
        assert stack.stats()["streams_total"] == 5
        assert relay.alive(), "the old relay must wait for its stream"
        flow.join(90)
        assert flow.ok, (flow.err, flow.n, len(data))
        t_end = time.monotonic()
        relay.p.wait(10)
        exited = time.monotonic() - t_end
        assert relay.p.returncode == 0
        assert exited < 3.0, f"old relay exited {exited:.2f}s after its last stream"
        relay.wait_log("drained: all streams ended", 1)
        agent.wait_log("old link to the relay closed", 5)
        # The survivors hold exactly their one link again; nothing leaked.
        fds.check()
        streams_zero(stack)
        fds2.check()
        assert relay2.alive()
    finally:
        srv.close()


def test_relay_drain_timeout_resets_streams_and_exits(stack):
    closed = []

    def hold(sock):
        try:
            while True:
                b = sock.recv(65536)
                if not b:
                    break
                sock.sendall(b)
        except OSError:
            pass
        closed.append(time.monotonic())

    srv = Server(hold)
    try:
        relay = stack.start_relay("--drain-timeout", "1s")
        agent = stack.start_agent([f"hold=tcp://127.0.0.1:{srv.port}"], *FAST)
        c = stack.start_connect("hold", *FAST)
        fds = FdBaseline(agent=agent, connect=c)
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        t0 = time.monotonic()
        relay.kill(signal.SIGTERM)
        relay.wait_log("draining: 1 streams, up to 1s", 5)
        s.settimeout(5)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        reset_after = time.monotonic() - t0
        assert 0.8 < reset_after < 2.0, reset_after
        relay.p.wait(5)
        assert time.monotonic() - t0 < 2.2
        assert relay.p.returncode == 0
        relay.wait_log("drain timeout after 1s: resetting 1 stream(s)", 1)
        wait_until(lambda: closed, 5, "agent closed the backend socket")
        c.wait_log("relay drain timeout", 5)
        # Agent and connect are alive and dialing again.
        agent.wait_log("relay link down", 5)
        assert agent.alive() and c.alive()
        # Both lost their link (no relay to dial now) and every stream socket: baseline - 1.
        fds.check(agent=-1, connect=-1)
        s.close()
    finally:
        srv.close()


def test_stopping_connect_and_agent_closes_their_draining_links(stack, tls_files):
    """Over wss: the relay drains with a stream open, so agent and connect each hold a
    draining link and no relay to dial. Stopping connect closes its draining link (the stream
    is reset on every hop), the relay then has nothing left and exits, and the agent exits at
    once on SIGTERM: every process ends cleanly (under ASan: without leaks)."""
    def hold(sock):
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    srv = Server(hold)
    try:
        relay = stack.start_relay("--drain-timeout", "20s", tls=tls_files)
        agent = stack.start_agent([f"hold=tcp://127.0.0.1:{srv.port}"], *FAST)
        c = stack.start_connect("hold", *FAST)
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"x")
        wait_until(lambda: stack.stats()["streams_active"] == 1, 5, "stream open")
        relay.kill(signal.SIGTERM)
        agent.wait_log("relay asked us to go away", 5)
        c.wait_log("relay asked us to go away", 5)
        c.kill(signal.SIGTERM)
        c.p.wait(5)
        assert c.p.returncode == 0
        agent.wait_log("old link to the relay closed", 5)
        relay.p.wait(5)
        assert relay.p.returncode == 0
        relay.wait_log("drained: all streams ended", 1)
        agent.kill(signal.SIGTERM)
        agent.p.wait(5)
        assert agent.p.returncode == 0
        s.close()
    finally:
        srv.close()


# A minimal WebSocket + mux client, to see the frames the relay sends.

def ws_open(port, path, token):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(4096)
        assert b, "relay closed during the upgrade"
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, bytearray(rest)


def ws_send_mux(s, ftype, flags, sid, payload=b""):
    frame = struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid)
    frame += payload
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(frame))
    assert len(frame) < 126
    s.sendall(bytes([0x82, 0x80 | len(frame)]) + mask + masked)


def ws_recv(s, buf):
    """Next WS message from the relay: (opcode, payload); (None, b'') on EOF."""
    while True:
        if len(buf) >= 2:
            op, ln = buf[0] & 0x0F, buf[1] & 0x7F
            off = {126: 4, 127: 10}.get(ln, 2)
            if len(buf) >= off and off > 2:
                ln = int.from_bytes(buf[2:off], "big")
            if len(buf) >= off and len(buf) >= off + ln:
                payload = bytes(buf[off:off + ln])
                del buf[:off + ln]
                return op, payload
        b = s.recv(65536)
        if not b:
            return None, b""
        buf += b


def mux_next(s, buf, skip=(5,)):
    """Next mux frame (type, flags, sid, payload), skipping PINGs; ('close', ...) on WS close."""
    while True:
        op, p = ws_recv(s, buf)
        if op is None:
            return ("eof", 0, 0, b"")
        if op == 8:
            return ("close", 0, 0, p)
        if op != 2:
            continue
        ftype, flags, sid = p[3], p[4], struct.unpack(">I", p[5:9])[0] & 0x7FFFFFFF
        if ftype in skip:
            continue
        return (ftype, flags, sid, p[9:])


def test_open_after_relay_goaway_is_refused_with_reason(stack):
    echo = Server(echo_handler)
    try:
        relay = stack.start_relay("--drain-timeout", "10s")
        stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"], *FAST)
        s, buf = ws_open(stack.relay_port, "/v1/connect", mint(stack.env, "client", "echo"))
        s.settimeout(5)
        name = b"echo"
        ws_send_mux(s, 1, 0, 1, struct.pack(">I", 1 << 18) + bytes([len(name)]) + name)
        assert mux_next(s, buf)[:3] == (2, 0, 1)  # ACCEPT
        ws_send_mux(s, 0, 0, 1, b"hi")
        t, _, sid, p = mux_next(s, buf)
        assert (t, sid, p) == (0, 1, b"hi")
        relay.kill(signal.SIGTERM)
        t, _, sid, p = mux_next(s, buf, skip=(3, 5))  # GOAWAY (CREDIT may come first)
        assert t == 6, (t, p)
        code = struct.unpack(">I", p[4:8])[0]
        assert code == 11 and b"draining" in p[8:], p
        # An OPEN that arrives after the GOAWAY: refused, with code and reason.
        ws_send_mux(s, 1, 0, 3, struct.pack(">I", 1 << 18) + bytes([len(name)]) + name)
        t, _, sid, p = mux_next(s, buf, skip=(3, 5))
        assert (t, sid) == (4, 3), (t, sid, p)
        assert struct.unpack(">I", p[:4])[0] == 11
        assert p[4:].startswith(b"refused: relay is draining"), p
        # Stream 1 still works, and once it ends the relay closes the link and exits.
        ws_send_mux(s, 0, 0, 1, b"more")
        t, _, sid, p = mux_next(s, buf, skip=(3, 5))
        assert (t, sid, p) == (0, 1, b"more")
        ws_send_mux(s, 0, 1, 1)  # FIN
        t, flags, sid, p = mux_next(s, buf, skip=(3, 5))
        assert (t, flags, sid, p) == (0, 1, 1, b"")  # FIN from the service
        assert mux_next(s, buf, skip=(3, 5))[0] == "close"
        s.close()
        relay.p.wait(5)
        relay.wait_log("drained: all streams ended", 1)
    finally:
        echo.close()


def test_drain_timeout_zero_closes_at_once_and_second_signal_ends_a_drain(stack):
    def hold(sock):
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    srv = Server(hold)
    try:
        for extra, signals in ((("--drain-timeout", "0"), 1), ((), 2)):
            name = "relay0" if signals == 1 else "relay30"
            relay = stack.start_relay(*extra, name=name)
            agent = stack.start_agent([f"hold=tcp://127.0.0.1:{srv.port}"], name="a" + name)
            c = stack.start_connect("hold", name="c" + name)
            s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
            s.sendall(b"x")
            wait_until(lambda: stack.stats()["streams_active"] == 1, 5, "stream open")
            t0 = time.monotonic()
            relay.kill(signal.SIGTERM)
            if signals == 2:
                relay.wait_log("draining: 1 streams, up to 30s", 5)
                assert relay.alive()
                relay.kill(signal.SIGTERM)  # the second signal ends the drain at once
            relay.p.wait(5)
            assert time.monotonic() - t0 < 1.5
            assert relay.p.returncode == (0 if signals == 1 else -signal.SIGTERM)
            s.settimeout(5)
            try:
                assert s.recv(10) == b""
            except ConnectionResetError:
                pass
            assert time.monotonic() - t0 < 2.0
            s.close()
            agent.stop()
            c.stop()
    finally:
        srv.close()


def raw_agent(stack, service, behaviour, opened):
    """A hand-made agent link that, on the first OPEN, sends GOAWAY and then either refuses
    the stream (RST shutdown) or just closes the link: a stream crossing its GOAWAY."""
    tok = mint(stack.env, "agent", service)
    s, buf = ws_open(stack.relay_port, f"/v1/agent?services={service}", tok)
    s.settimeout(20)

    def run():
        t, _, sid, _ = mux_next(s, buf, skip=(3, 5))
        if t != 1:
            return
        opened.append(behaviour)
        reason = b"agent shutting down"
        ws_send_mux(s, 6, 0, 0, struct.pack(">II", sid, 11) + reason)
        if behaviour == "rst":
            ws_send_mux(s, 4, 0, sid, struct.pack(">I", 11) + b"refused: " + reason)
            time.sleep(0.5)
        s.close()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def test_stream_crossing_an_agent_goaway_is_retried_on_another_agent(stack):
    echo = Server(echo_handler)
    try:
        stack.start_relay()
        real = stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"], "--log-level", "debug")
        opened = []
        # Newest links are tried first: "close" then "rst" then the real agent.
        t1 = raw_agent(stack, "echo", "rst", opened)
        t2 = raw_agent(stack, "echo", "close", opened)
        wait_until(lambda: stack.stats()["agents"] == 3, 5, "three agent links")
        c = stack.start_connect("echo")
        assert exchange(c.port, b"crossed", timeout=10) == b"crossed"
        assert sorted(opened) == ["close", "rst"]
        assert sum(stream_counts(real, "echo").values()) == 1
        t1.join(5)
        t2.join(5)
        streams_zero(stack)
    finally:
        echo.close()


# ---- agent drain ----


def test_agent_drain_finishes_its_stream_while_new_ones_go_elsewhere(stack):
    progress = {}
    srv = Server(paced_echo(progress, 0.004))
    try:
        stack.start_relay()
        svc = [f"bulk=tcp://127.0.0.1:{srv.port}"]
        a1 = stack.start_agent(svc, "--log-level", "debug", name="agent1")
        c = stack.start_connect("bulk")
        fdc = FdBaseline(connect=c)
        data = os.urandom(16 << 20)
        flow = Flow(c.port, data)
        wait_until(lambda: progress.get("in", 0) >= 2 << 20, 20, "transfer in flight")
        a2 = stack.start_agent(svc, "--log-level", "debug", name="agent2")
        wait_until(lambda: stack.stats()["agents"] == 2, 5, "two agents")
        fds = FdBaseline(relay=stack.relay_proc, agent2=a2)
        a1.kill(signal.SIGTERM)
        a1.wait_log("draining: 1 streams, up to 30s", 5)
        wait_until(lambda: stack.stats()["links_draining"] == 1, 5, "relay sees agent1 draining")
        assert stack.stats()["draining"] is False
        for i in range(10):
            assert exchange(c.port, b"new %d" % i, timeout=10) == b"new %d" % i
        assert sum(stream_counts(a1, "bulk").values()) == 1
        assert sum(stream_counts(a2, "bulk").values()) == 10
        assert a1.alive(), "agent1 must wait for its stream"
        flow.join(90)
        assert flow.ok, (flow.err, flow.n, len(data))
        t_end = time.monotonic()
        a1.p.wait(10)
        assert a1.p.returncode == 0
        assert time.monotonic() - t_end < 3.0
        a1.wait_log("drained: all streams ended", 1)
        wait_until(lambda: stack.stats()["agents"] == 1, 5, "agent1 gone from the relay")
        streams_zero(stack)
        fdc.check()
        fds.check(relay=-1)  # agent1's link socket is gone
    finally:
        srv.close()


def test_agent_drain_timeout_resets_and_exits(stack):
    def hold(sock):
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    srv = Server(hold)
    try:
        stack.start_relay()
        a = stack.start_agent([f"hold=tcp://127.0.0.1:{srv.port}"], "--drain-timeout", "1s")
        c = stack.start_connect("hold")
        fds = FdBaseline(relay=stack.relay_proc, connect=c)
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"x")
        wait_until(lambda: stack.stats()["streams_active"] == 1, 5, "stream open")
        t0 = time.monotonic()
        a.kill(signal.SIGTERM)
        a.p.wait(5)
        assert 0.8 < time.monotonic() - t0 < 2.2
        assert a.p.returncode == 0
        a.wait_log("drain timeout after 1s: resetting 1 stream(s)", 1)
        s.settimeout(5)
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
        streams_zero(stack)
        s.close()
        fds.check(relay=-1)  # the agent's link socket is gone, nothing else
    finally:
        srv.close()


# ---- relay-side liveness ----


def test_relay_pings_detect_a_silent_client(stack):
    """connect stops answering (SIGSTOP, socket open): the relay's own pings declare the link
    dead and the stream is reset on the agent's side too (backend socket closed)."""
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
        relay = stack.start_relay("--ping-interval", "200ms", "--ping-misses", "2")
        agent = stack.start_agent([f"hold=tcp://127.0.0.1:{srv.port}"])
        base = agent.nfds()
        c = stack.start_connect("hold", "--ping-interval", "60s", *FAST)
        fds = FdBaseline(relay=relay, connect=c)
        s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
        s.sendall(b"x")
        wait_until(lambda: stack.stats()["streams_active"] == 1, 5, "stream open")
        wait_until(lambda: agent.nfds() == base + 1, 5, "agent holds the backend socket")
        os.kill(c.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            stack.relay_proc.wait_log("pings unanswered", 5)
            wait_until(lambda: closed, 5, "agent closed the backend socket")
            assert time.monotonic() - t0 < 2.5
            assert stack.stats()["clients"] == 0
            streams_zero(stack)
            wait_fds(agent, base, what="agent")
            wait_fds(relay, fds.base["relay"] - 1, what="relay")  # the dead link's socket
        finally:
            os.kill(c.pid, signal.SIGCONT)
        s.close()
        # connect, running again, finds its link gone and dials a new one: nothing left over.
        c.wait_log("connected to relay", 10, count=2)
        streams_zero(stack)
        fds.check()
    finally:
        srv.close()


def established_on(port):
    """Established TCP sockets whose local port is port (IPv4, this namespace)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows if int(r[1].split(":")[1], 16) == port and r[3] == "01")


def test_connections_opened_as_the_relay_drains_are_not_lost(stack):
    """Local connections accepted just before connect reads the relay's GOAWAY: their streams
    cross it and the draining relay refuses them (shutdown). connect keeps each socket
    (nothing moved yet) and opens the stream again on the replacement link, so every one
    gets through, byte-exact, to the relay that took over the port."""
    echo = Server(echo_handler)
    port = free_port_outside_ephemeral()
    relay = stack.start_relay("--drain-timeout", "10s", port=port)
    stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"], *FAST)
    c = stack.start_connect("echo", *FAST, "--log-level", "debug")
    # A stream that stays open keeps the old client link alive through the drain.
    keep = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    keep.sendall(b"x")
    assert keep.recv(1) == b"x"
    datas = [os.urandom(256 << 10) for _ in range(8)]
    results = [None] * len(datas)
    ts = []
    # connect sleeps while the connections queue in its listen backlog and then the GOAWAY
    # arrives: on waking it accepts first (readiness order) and opens streams that cross it.
    c.kill(signal.SIGSTOP)
    try:
        def one(i):
            results[i] = exchange(c.port, datas[i], timeout=20)

        ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(datas))]
        for t in ts:
            t.start()
        # The kernel completes the handshakes for the stopped connect: wait until all of them
        # sit in its listen backlog (server-side sockets on its port, the kept one included).
        wait_until(lambda: established_on(c.port) >= len(datas) + 1, 5,
                   "connections queued in connect's backlog")
        relay.kill(signal.SIGTERM)
        relay.wait_log("draining: 1 streams", 5)
        stack.start_relay(port=port, name="relay2")
    finally:
        c.kill(signal.SIGCONT)
    for t in ts:
        t.join(30)
    assert results == datas
    keep.close()
    relay.p.wait(10)
    echo.close()
    crossed = c.text().count("waits: refused")
    print(f"\n{crossed} of {len(datas)} streams crossed the GOAWAY and were opened again")
