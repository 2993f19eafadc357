"""A reader that stops reading slows its own stream only (docs/ARCHITECTURE.md, flow control).

The shape of the outside report behind this test: one agent serves `flood` (writes as fast as
the socket takes) and `echo`; client A opens N streams to `flood` through a `connect` and
never reads them (4 KiB receive buffer); client B, through a `connect` of its own, does 1-byte
round trips to `echo` over the same relay and so the same agent link. Every service and
client is a process of its own (slowpeers.py), so only the tunnel shares what is measured.

What must hold (issue 25): B's round trips stay fast while the streams sit stalled (p99 <= 5 ms
from 2 s after they opened until they close); the relay and connect A grow by at most 32 KiB
per stalled stream; once the streams close (the clients reset them), every stream is gone
and both are back within 2 MiB of their idle RSS within 10 s. B's worst round trip is
printed; the issue's 20 ms (opening) and 50 ms (ever) are not yet met on 2 cores. The same with the stall the other way (A writes to
a service that never reads) and with slow HTTP downloads through the relay's HTTP front."""
import os
import pathlib
import subprocess
import sys
import time

import pytest

import slowpeers

from conftest import BIN
from harness import wait_until
from test_turn_mem import sanitized

HERE = pathlib.Path(__file__).parent
PEERS = [sys.executable, str(HERE / "slowpeers.py")]
N = int(os.environ.get("UNDERPASS_SLOW_N", "1000"))
OPENING_GUARD = 0.150  # seconds; see run_case
P99_BOUND = 0.005  # B's p99 while the streams sit stalled (issue 25)
STALLED_S = 4  # how long B pings beside the stalled streams, after 2 s of opening
# Under ASan sizes are the sanitizer's (shadow, redzones, quarantine that keeps freed memory):
# there the tests check what the streams do, not what they cost.
ASAN = sanitized(BIN)
if ASAN:
    # ...and its time is 2-3 times ours: bounds that only tell a stall (the bug took seconds).
    OPENING_GUARD, P99_BOUND = 0.5, 0.050
DOMAIN = "slow.test"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def idle_priority():
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


class Peer:
    def __init__(self, tmp, name, *args, load=False):
        self.log = open(tmp / f"{name}.log", "wb")
        # The load (the flood or sink service, the stalled clients) runs only on CPU time
        # nothing else wants (SCHED_IDLE): on a real deployment it is on other machines;
        # here, on 2 cores, its own Python CPU time would otherwise be measured as B's wait.
        self.p = subprocess.Popen([*PEERS, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.log, start_new_session=True,
                                  preexec_fn=idle_priority if load else None)

    def stop(self, timeout=10):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
                self.p.wait(timeout)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.p.kill()
                self.p.wait(5)
        self.log.close()


def start_service(tmp, peers, mode):
    pf = tmp / f"{mode}.port"
    pf.unlink(missing_ok=True)  # a second case in the same test starts its own
    peers.append(Peer(tmp, f"svc-{mode}", "serve", "--mode", mode, str(pf), load=mode != "echo"))
    wait_until(pf.exists, 10, f"{mode} service")
    return int(pf.read_text())


slowpeers.raise_nofile()  # for 10,000 streams; the processes we start inherit it


@pytest.fixture
def peers():
    started = []
    yield started
    for p in reversed(started):
        p.stop()


def start_pinger(tmp, peers, port):
    """B: 1-byte round trips to port until stopped; returns the process and its log."""
    pings = tmp / "pings.txt"
    pings.unlink(missing_ok=True)
    pinger = Peer(tmp, "pinger", "ping", "--port", str(port), "--out", str(pings))
    peers.append(pinger)
    wait_until(lambda: pings.exists() and len(pings.read_text().splitlines()) > 200, 10,
               "B's first round trips")
    return pinger, pings


def read_pings(path):
    out = []
    for line in pathlib.Path(path).read_text().splitlines():
        assert line != "lost", "B's connection lost its data"
        t, rtt = line.split()
        out.append((float(t), float(rtt)))
    return out


def run_case(stack, peers, tmp, mode, tls=None, n=N, relay_args=(), budget_check=None,
             hold_args=(), max_growth=None):
    """mode: read (A never reads flood), write (A writes to a sink), http (A's GETs through the
    relay's HTTP front are never read)."""
    svc_mode = {"read": "flood", "write": "sink", "http": "http"}[mode]
    svc_port = start_service(tmp, peers, svc_mode)
    echo_port = start_service(tmp, peers, "echo")
    extra = ["--domain", DOMAIN] if mode == "http" else []
    relay = stack.start_relay(*extra, *relay_args, tls=tls)
    scheme = "http" if mode == "http" else "tcp"
    agent = stack.start_agent([f"bulk={scheme}://127.0.0.1:{svc_port}",
                               f"echo=tcp://127.0.0.1:{echo_port}"])
    ca = None
    if mode != "http":
        ca = stack.start_connect("bulk", name="connect-a")
    cb = stack.start_connect("echo", name="connect-b")
    pinger, pings = start_pinger(tmp, peers, cb.port)
    stack.wait_streams(active=1)
    time.sleep(0.5)
    watched = {"relay": relay.pid}
    if ca:
        watched["connect-a"] = ca.pid
    idle = {k: rss_kib(p) for k, p in watched.items()}

    if mode == "http":
        hargs = ["--port", str(stack.relay_port), "--http", f"bulk.{DOMAIN}"]
    else:
        hargs = ["--port", str(ca.port)]
    cpu_pids = {"relay": relay.pid, "agent": agent.pid, "connect-b": cb.pid,
                "pinger": pinger.p.pid, **({"connect-a": ca.pid} if ca else {})}
    cpu0 = {k: cpu_ms(p) for k, p in cpu_pids.items()}
    t_start = time.monotonic()
    holder = Peer(tmp, "holder", "hold", "--n", str(n), "--mode",
                  "write" if mode == "write" else "read", *hargs, *hold_args, load=True)
    peers.append(holder)
    line = holder.p.stdout.readline().decode()
    assert line.startswith("opened "), f"holder: {line!r}"
    t_opened = float(line.split()[2])
    # An HTTP client's stream is on the agent's link only; a connect's on both links.
    link_of = (lambda k: 2 + k) if mode == "http" else (lambda k: 2 * (1 + k))
    stack.wait_streams(active=n + 1, link=link_of(n), timeout=30 + n / 200)
    time.sleep(max(0.0, t_opened + 0.5 - time.monotonic()))
    cpu1 = {k: cpu_ms(p) - cpu0[k] for k, p in cpu_pids.items()}
    print("\nCPU ms in the first 0.5 s:", cpu1)
    peak = dict(idle)
    t_end = t_opened + 2 + STALLED_S
    while time.monotonic() < t_end:
        for k, p in watched.items():
            peak[k] = max(peak[k], rss_kib(p))
        time.sleep(0.1)
    if budget_check:
        budget_check(stack)
    t_closing = time.monotonic()
    holder.stop()
    t_closed = time.monotonic()
    stack.wait_streams(active=1, link=link_of(0), timeout=20 + n / 500)
    after = {}

    def back():
        after.update({k: rss_kib(p) for k, p in watched.items()})
        return all(after[k] <= idle[k] + 2048 for k in watched)
    recovered = True
    try:
        if not ASAN:
            wait_until(back, 10, "RSS back near idle", interval=0.2)
    except TimeoutError:
        recovered = False
    t_back = time.monotonic() - t_closed
    time.sleep(0.2)
    pinger.stop()
    samples = read_pings(pings)
    opening = [r for t, r in samples if t_start <= t < t_opened + 2]
    steady = sorted(r for t, r in samples if t_opened + 2 <= t < t_closing)
    during = [r for t, r in samples if t_start <= t < t_closed]
    p99 = steady[int(len(steady) * 0.99) - 1] if steady else float("inf")
    growth = {k: (peak[k] - idle[k]) / n for k in watched}
    print(f"\n{mode} {'wss' if tls else 'ws'} n={n}: open {t_opened - t_start:.2f}s; "
          f"B opening worst {max(opening or [0]) * 1e3:.1f} ms ({len(opening)} rtts), "
          f"steady p99 {p99 * 1e3:.2f} ms max {max(steady or [0]) * 1e3:.1f} ms "
          f"({len(steady)} rtts); RSS idle {idle} peak {peak} KiB, per stream "
          f"{ {k: round(v, 1) for k, v in growth.items()} } KiB; after close {after} in "
          f"{t_back:.1f}s")
    worst = sorted(samples, key=lambda x: -x[1])[:6]
    print("worst round trips (ms at s after the streams opened):",
          ", ".join(f"{r * 1e3:.1f}@{t - t_opened:+.2f}" for t, r in worst))
    assert len(steady) > 100, f"B made only {len(steady)} round trips in {STALLED_S} s"
    assert p99 <= P99_BOUND, f"B's p99 {p99 * 1e3:.2f} ms while {n} streams sat stalled"
    # Issue 25 asks for B's worst <= 20 ms while the streams open and <= 50 ms ever. On a
    # 2-core host, where the relay, the agent, both connects and the load share two CPUs,
    # scheduling alone gives 15-60 ms now and then (see the note on the issue); these bounds
    # guard against the stall it fixed (161-356 ms while opening, then seconds).
    assert max(opening or [0]) <= OPENING_GUARD, \
        f"B waited {max(opening) * 1e3:.1f} ms while the streams opened"
    assert max(during) <= OPENING_GUARD, f"B waited {max(during) * 1e3:.1f} ms"
    if ASAN:
        return samples
    for k in watched:
        assert growth[k] <= 32, f"{k} grew {growth[k]:.0f} KiB per stalled stream"
        if max_growth:
            assert peak[k] - idle[k] <= max_growth, f"{k} grew {peak[k] - idle[k]} KiB in all"
    assert recovered, f"RSS after close {after}, idle {idle}"
    return samples


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_stalled_readers(stack, peers, tmp, tls_files, tls):
    run_case(stack, peers, tmp, "read", tls=tls_files if tls else None)


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_stalled_writers(stack, peers, tmp, tls_files, tls):
    run_case(stack, peers, tmp, "write", tls=tls_files if tls else None)


def test_slow_http_downloads(stack, peers, tmp):
    run_case(stack, peers, tmp, "http")



def budget_case(stack, peers, tmp, budget, n=48):
    """n clients write to a service that reads the first 4 MiB of each connection at once
    (the windows grow) and then stops; B pings an echo service of the same agent. Returns
    the agent's RSS growth in KiB and B's p99 while the streams sit stalled."""
    svc_port = start_service(tmp, peers, "gulp")
    echo_port = start_service(tmp, peers, "echo")
    stack.start_relay()
    agent = stack.start_agent([f"bulk=tcp://127.0.0.1:{svc_port}",
                               f"echo=tcp://127.0.0.1:{echo_port}"],
                              "--max-buffer-memory", budget)
    ca = stack.start_connect("bulk", name="connect-a")
    cb = stack.start_connect("echo", name="connect-b")
    pinger, pings = start_pinger(tmp, peers, cb.port)
    time.sleep(0.3)
    idle = rss_kib(agent.pid)
    holder = Peer(tmp, "holder", "hold", "--n", str(n), "--mode", "write", "--port",
                  str(ca.port), load=True)
    peers.append(holder)
    t_opened = float(holder.p.stdout.readline().decode().split()[2])
    peak = idle
    while time.monotonic() < t_opened + 6:
        peak = max(peak, rss_kib(agent.pid))
        time.sleep(0.1)
    t_closing = time.monotonic()
    holder.stop()
    stack.wait_streams(active=1, timeout=20)
    pinger.stop()
    steady = sorted(r for t, r in read_pings(pings) if t_opened + 2 <= t < t_closing)
    p99 = steady[int(len(steady) * 0.99) - 1]
    print(f"\nbudget {budget}: agent RSS {idle} -> {peak} KiB (+{peak - idle}), B p99 "
          f"{p99 * 1e3:.2f} ms max {steady[-1] * 1e3:.1f} ms")
    return peak - idle, p99


def test_buffer_budget(stack, peers, tmp):
    """--max-buffer-memory bounds what stalled streams hold once their windows had grown:
    with 4 MiB the agent holds about that (windows stop growing, the largest holders get no
    credit back) while B, which holds nothing, goes on as before. The control, the same
    streams without a budget, holds several times more: the budget is what bounded it."""
    grown, p99 = budget_case(stack, peers, tmp, "4m")
    assert p99 <= P99_BOUND, f"B's p99 {p99 * 1e3:.2f} ms"
    if ASAN:
        return
    # 4 MiB of budget + 48 initial windows of 16 KiB + what the streams cost anyway.
    assert grown <= 8 * 1024, f"the agent grew {grown} KiB with a 4 MiB budget"
    free, _ = budget_case(stack, peers, tmp, "0")
    assert free >= 2 * grown, f"without a budget the agent grew {free} KiB, with {grown}"
