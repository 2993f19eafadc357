"""Memory of `underpass turn` under many allocations (issue 7, Must show 4): 10,000 allocations
held at once from 10,000 client sockets, the server's RSS and open descriptors reported; then
the allocations expire and the memory and the ports come back.

The client is tests/integration/stun_client.py, written from the RFCs independently of the
server's codec. Requests go out in batches (every socket's request, then every answer), so
the 20,000 round trips take seconds."""
import os
import pathlib
import resource
import select
import socket
import struct
import time

import pytest

from conftest import BIN
from harness import Proc, free_port, wait_until
from stun_client import (A_LIFETIME, A_NONCE, A_REALM, A_RELAYED, A_TRANSPORT, A_USERNAME, ALLOCATE,
                         ERROR, REQUEST, SUCCESS, Msg, error_code, lt_key, parse, parse_xaddr)

N = 10_000
LIFETIME = 20  # seconds: the allocations expire within the test
OUT = pathlib.Path(__file__).resolve().parent / "out"


def sanitized(binary):
    """Whether binary is an ASan build: its memory is the sanitizer's (shadow, quarantine),
    so sizes mean nothing there and freed memory stays quarantined."""
    with open(binary, "rb") as f:
        return b"libasan.so" in f.read()


def status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def exchange(socks, build, timeout=30):
    """Send build(i) on every socket, then collect one answer per socket (retransmitting,
    bounded, what has not been answered after a while: UDP may drop under a burst)."""
    pending = {}
    for i, s in enumerate(socks):
        pending[s.fileno()] = (i, build(i))
        s.send(pending[s.fileno()][1])
    answers = [None] * len(socks)
    by_fd = {s.fileno(): s for s in socks}
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    poller = select.epoll()
    for fd in pending:
        poller.register(fd, select.EPOLLIN)
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(socks)} requests unanswered")
            events = poller.poll(0.5)
            for fd, _ in events:
                i, _msg = pending.pop(fd)
                answers[i] = by_fd[fd].recv(65536)
                poller.unregister(fd)
            if not events and time.monotonic() - last > 1:
                for fd, (i, msg) in pending.items():  # retransmit (RFC 8489 §6.2.1)
                    by_fd[fd].send(msg)
            last = time.monotonic() if events else last
    finally:
        poller.close()
    return answers


@pytest.fixture
def many_sockets():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < N + 500:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below {N + 500}: cannot hold {N} "
                    "client sockets in the test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    yield socks
    for s in socks:
        s.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_10000_allocations_memory(procs, env, tmp_path, many_sockets):
    port = free_port()
    srv = Proc([BIN, "turn", "--listen", f"127.0.0.1:{port}", "--realm", "example.org",
                "--relay-ip", "127.0.0.1", "--user", "load:load-pw", "--allow-peer",
                "127.0.0.0/8", "--min-port", "20000", "--max-port", "31999",
                "--default-lifetime", f"{LIFETIME}s", "--max-lifetime", f"{LIFETIME}s",
                "--user-quota", "0", "--max-allocations", "20000",
                "--unauth-rate", "0"], env, tmp_path / "turn.log")
    procs.append(srv)
    srv.wait_log("turn ready on", 10)
    base_rss, base_fds = status(srv.pid, "VmRSS"), nfds(srv.pid)

    socks = many_sockets
    for _ in range(N):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    t0 = time.monotonic()
    reqs = [Msg(ALLOCATE, REQUEST).add(A_TRANSPORT, bytes([17, 0, 0, 0])) for _ in range(N)]
    first = exchange(socks, lambda i: reqs[i].encode())
    realm = None
    nonces = []
    for b in first:
        _, cls, _, attrs = parse(b)
        assert cls == ERROR and error_code(attrs) == 401
        realm = attrs[A_REALM]
        nonces.append(attrs[A_NONCE])
    key = lt_key("load", realm.decode(), "load-pw")

    def authed(i):
        m = Msg(ALLOCATE, REQUEST).add(A_TRANSPORT, bytes([17, 0, 0, 0]))
        m.add(A_LIFETIME, struct.pack("!I", LIFETIME))
        m.add(A_USERNAME, b"load").add(A_REALM, realm).add(A_NONCE, nonces[i])
        return m.encode(key)
    built = [authed(i) for i in range(N)]
    second = exchange(socks, lambda i: built[i])
    ports = set()
    for i, b in enumerate(second):
        _, cls, tid, attrs = parse(b)
        assert cls == SUCCESS, (i, error_code(attrs))
        ports.add(parse_xaddr(tid, attrs[A_RELAYED])[1])
    took = time.monotonic() - t0
    assert len(ports) == N  # every allocation has its own relay port
    held_rss, held_fds = status(srv.pid, "VmRSS"), nfds(srv.pid)
    assert held_fds - base_fds == N
    per_alloc = (held_rss - base_rss) * 1024 / N
    asan = sanitized(BIN)
    # The sockets are the kernel's; our part is the core's state plus libuv's poll handle.
    if not asan:
        assert held_rss < 64 * 1024, f"RSS {held_rss} KiB with {N} allocations"

    # Let them expire: every port closed, the memory handed back.
    wait_until(lambda: nfds(srv.pid) <= base_fds, LIFETIME + 15, "allocations to expire")
    if not asan:  # under ASan sizes are the sanitizer's: ports and descriptors only
        try:
            wait_until(lambda: status(srv.pid, "VmRSS") < base_rss + (held_rss - base_rss) / 2,
                       10, "memory to come back")
        except TimeoutError:
            raise AssertionError(f"RSS idle {base_rss} KiB, holding {held_rss} KiB, after "
                                 f"expiry {status(srv.pid, 'VmRSS')} KiB: not given back")
    after_rss = status(srv.pid, "VmRSS")
    report = (f"underpass turn, {N} allocations (created in {took:.1f}s):\n"
              f"  RSS idle {base_rss} KiB, holding {held_rss} KiB "
              f"(+{per_alloc:.0f} bytes per allocation), after expiry {after_rss} KiB\n"
              f"  descriptors idle {base_fds}, holding {held_fds}, after expiry "
              f"{nfds(srv.pid)}\n")
    OUT.mkdir(exist_ok=True)
    (OUT / "turn-memory.txt").write_text(report)
    print(report)
    # The ports are free again: one of them can be bound by anyone.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", next(iter(ports))))
    probe.close()
