"""An interactive stream stays responsive beside a bulk stream when the link to the agent is
slow: the relay must not park megabytes of one stream in its socket, ahead of every other
stream's frames.

                 <p>-net: tbf on the bridge's port to priv (relay -> agent: RATE)
   out: client, 2 connects ──► pub: relay ──► priv: agent, sink + echo services

One client uploads to a sink as fast as it can; the link into priv is the bottleneck, so the
tunnel's buffers fill up. Meanwhile a second client's 1-byte round trips through the same
relay and agent link must wait behind at most a little of the bulk stream: the tbf queue
(about 130 KB), what the relay's link socket may hold unsent (128 KiB, TCP_NOTSENT_LOWAT) and
the link's own output buffer (128 KiB): about 80 ms at 5 MB/s. Unbounded, the socket holds the
bulk stream's whole window: 4 MiB, 870 ms at this rate.

The agent starts with a 4 MiB window, the size auto-tuning reaches on a long path (50 ms RTT
and more). This kernel has no netem to add such a delay, and with none the window stays at
256 KiB and hides the queue."""
import socket
import threading
import time

import pytest

import netns
from netns import topo  # noqa: F401 - the fixture
from conftest import BIN, clean_env, mint
from harness import echo_handler

netns.skip_unless_available()

RATE = "40mbit"  # 5 MB/s
LATENCY_MS = 20  # tbf queue bound
RELAY_PORT = 8080
ROUNDS = 40


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_round_trips_stay_short_beside_a_bulk_stream_over_a_slow_link(topo, tmp_path,
                                                                      direction):
    """upload: client -> agent, the relay's link socket queues; download: agent -> client, the
    agent's does (the slow side is its uplink)."""
    up = direction == "upload"
    # The bridge's port to a host shapes what enters that host.
    topo.run("net", ["tc", "qdisc", "add", "dev", "priv" if up else "pub", "root", "tbf",
                     "rate", RATE, "burst", "32kb", "latency", f"{LATENCY_MS}ms"])
    moved_bytes = [0]
    stop = threading.Event()

    def sink_handler(sock):
        while True:
            b = sock.recv(1 << 18)
            if not b:
                return
            moved_bytes[0] += len(b)

    def source_handler(sock):
        chunk = b"\0" * (1 << 16)
        while not stop.is_set():
            sock.sendall(chunk)

    env = clean_env()
    bulk_svc = topo.server("priv", sink_handler if up else source_handler, port=7001)
    echo = topo.server("priv", echo_handler, port=7002)
    # The receiver of the bulk stream grants the 4 MiB window.
    relay = topo.proc("pub", [BIN, "relay", "--listen", f"0.0.0.0:{RELAY_PORT}",
                              *(() if up else ("--window", "4m"))],
                      env=env, log_path=tmp_path / "relay.log")
    relay.wait_log("relay ready on", 10)
    url = f"ws://{topo.ip('pub')}:{RELAY_PORT}"
    agent = topo.proc("priv", [BIN, "agent", "--relay", url, "--token",
                               mint(env, "agent", "bulk,echo"),
                               "--service", f"bulk=tcp://127.0.0.1:{bulk_svc.port}",
                               "--service", f"echo=tcp://127.0.0.1:{echo.port}",
                               *(("--window", "4m") if up else ())],
                      env=env, log_path=tmp_path / "agent.log")
    agent.wait_log("connected to relay", 20)
    ports = {}
    for svc, port in (("bulk", 9001), ("echo", 9002)):
        c = topo.proc("out", [BIN, "connect", "--relay", url, "--token", mint(env, "client", svc),
                              svc, "--listen", f"127.0.0.1:{port}"],
                      env=env, log_path=tmp_path / f"connect-{svc}.log")
        c.wait_log("connected to relay", 20)
        ports[svc] = port

    def bulk():
        s = topo.connect("out", "127.0.0.1", ports["bulk"], timeout=30)
        chunk = b"\0" * (1 << 16)
        try:
            while not stop.is_set():
                if up:
                    s.sendall(chunk)
                else:
                    b = s.recv(1 << 18)
                    if not b:
                        return
                    moved_bytes[0] += len(b)
        except OSError:
            pass
        finally:
            s.close()

    t = threading.Thread(target=bulk, daemon=True)
    t.start()
    try:
        # 8 MiB through the bottleneck: every buffer on the way is as full as it gets.
        deadline = time.monotonic() + 20
        while moved_bytes[0] < (8 << 20):
            assert time.monotonic() < deadline, \
                f"the bulk stream moved only {moved_bytes[0]} bytes in 20 s"
            time.sleep(0.05)
        s = topo.connect("out", "127.0.0.1", ports["echo"], timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = []
        before = moved_bytes[0]
        for _ in range(ROUNDS):
            t0 = time.monotonic()
            s.sendall(b"p")
            assert s.recv(1) == b"p"
            rtts.append(time.monotonic() - t0)
            time.sleep(0.01)
        moved = moved_bytes[0] - before
        s.close()
    finally:
        stop.set()
        t.join(30)
    rtts.sort()
    p50, p90, top = (rtts[len(rtts) // 2] * 1e3, rtts[len(rtts) * 9 // 10] * 1e3,
                     rtts[-1] * 1e3)
    took = sum(rtts) + ROUNDS * 0.01
    print(f"{direction}: round trips beside the bulk stream: p50 {p50:.1f} ms, p90 {p90:.1f} ms, "
          f"max {top:.1f} ms; bulk moved {moved / took / 1e6:.2f} MB/s meanwhile")
    # The bulk stream kept the link busy (5 MB/s at most) while the round trips ran.
    assert moved / took > 2e6, "the bulk stream stalled while the small one ran"
    # Waiting behind the tbf queue is the network's doing; behind the whole window is ours.
    assert p50 < 150, f"round trips wait behind the bulk stream: p50 {p50:.0f} ms"
    assert p90 < 250, f"round trips wait behind the bulk stream: p90 {p90:.0f} ms"
    assert top < 400, f"a round trip took {top:.0f} ms beside the bulk stream"
