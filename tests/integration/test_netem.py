"""A 64 MiB transfer stays byte-exact over a bad network, in both directions.

               <p>-net: bridge (loss rules live here)
        +--------------+--------------+
   <p>-priv        <p>-pub        <p>-out
   agent, service  relay          client

Two shapes:
- netem on priv's and pub's interfaces, 50 ms delay and 1 % loss each way (the issue's
  shape). Skipped, saying so, when the kernel has no netem qdisc (as on the CI machines of
  this project, whose kernel has neither netem nor fq).
- 1 % random loss on every packet to and from priv and out, with nftables (numgen) on the
  bridge: no delay, but real loss and real retransmissions on both links, which any kernel
  with nftables can do. This one always runs.
"""
import hashlib
import socket
import threading
import time

import pytest

import netns
from netns import topo  # noqa: F401 - the fixture
from conftest import BIN, clean_env, mint
from harness import digest_handler

netns.skip_unless_available()

SVC_PORT = 7001
SRC_PORT = 7002
RELAY_PORT = 8080
SIZE = 64 << 20


def netem_on(topo, host, *args):
    """Put netem on host's interface; (False, why) when the kernel has no netem qdisc."""
    r = topo.run(host, ["tc", "qdisc", "add", "dev", "eth0", "root", "netem", *args],
                 check=False)
    return r.returncode == 0, r.stderr.strip()


def pattern(n, seed=7):
    """n deterministic pseudo-random bytes (so the far end can check them without a copy)."""
    import random
    return random.Random(seed).randbytes(n)


def source_handler(sock):
    """Send SIZE pattern bytes, then close."""
    sock.sendall(pattern(SIZE, seed=11))
    sock.shutdown(socket.SHUT_WR)
    try:
        sock.recv(1)
    except OSError:
        pass


def run_stack(topo, tmp, extra=()):
    env = clean_env()
    topo.server("priv", digest_handler, port=SVC_PORT)
    topo.server("priv", source_handler, port=SRC_PORT)
    relay = topo.proc("pub", [BIN, "relay", "--listen", f"0.0.0.0:{RELAY_PORT}"], env=env,
                      log_path=tmp / "relay.log")
    relay.wait_log("relay ready on", 10)
    url = f"ws://{topo.ip('pub')}:{RELAY_PORT}"
    agent = topo.proc("priv", [BIN, "agent", "--relay", url, "--token",
                               mint(env, "agent", "sink,source"),
                               "--service", f"sink=tcp://127.0.0.1:{SVC_PORT}",
                               "--service", f"source=tcp://127.0.0.1:{SRC_PORT}", *extra],
                      env=env, log_path=tmp / "agent.log")
    agent.wait_log("connected to relay", 20)
    conns = {}
    for svc, port in (("sink", 9001), ("source", 9002)):
        c = topo.proc("out", [BIN, "connect", "--relay", url, "--token",
                              mint(env, "client", svc), svc, "--listen", f"127.0.0.1:{port}",
                              *extra], env=env, log_path=tmp / f"connect-{svc}.log")
        c.wait_log("connected to relay", 20)
        conns[svc] = port
    return conns


def transfer_both_ways(topo, conns, timeout):
    """Upload SIZE bytes to the sink and download SIZE bytes from the source at the same
    time; returns (upload reply, download digest, seconds)."""
    up_data = pattern(SIZE, seed=5)
    result = {}

    def upload():
        s = topo.connect("out", "127.0.0.1", conns["sink"], timeout=timeout)
        s.sendall(up_data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            out += b
        s.close()
        result["up"] = out.decode()

    def download():
        s = topo.connect("out", "127.0.0.1", conns["source"], timeout=timeout)
        h = hashlib.sha256()
        n = 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        s.close()
        result["down"] = (h.hexdigest(), n)

    t0 = time.monotonic()
    ts = [threading.Thread(target=f, daemon=True) for f in (upload, download)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout)
    took = time.monotonic() - t0
    assert not any(t.is_alive() for t in ts), f"transfer not done in {timeout}s"
    assert result["up"].split() == [hashlib.sha256(up_data).hexdigest(), str(SIZE)]
    assert result["down"] == (hashlib.sha256(pattern(SIZE, seed=11)).hexdigest(), SIZE)
    return took


def test_64mib_each_way_over_a_lossy_network(topo, tmp_path):
    # 1 % of packets dropped on every wire that touches priv (the agent's link and its
    # backends' side) and out (the client's link), in both directions.
    body = "\n".join(f"        {d}name \"{h}\" numgen random mod 100 < 1 counter drop"
                     for h in ("priv", "out") for d in ("iif", "oif"))
    rules = topo._table("net", "bridge", f"""\
    chain forward {{
        type filter hook forward priority -10; policy accept;
{body}
    }}""", "loss")
    # Segments no larger than one MTU, so "1 % of packets" means 1 % of wire-sized packets
    # and not of 64 KiB GSO super-packets.
    for host in ("priv", "pub", "out"):
        topo.run(host, ["ip", "link", "set", "dev", "eth0", "gso_max_size", "1500"])
    conns = run_stack(topo, tmp_path)
    took = transfer_both_ways(topo, conns, timeout=240)
    # The loss was real: packets were dropped on the way.
    listing = topo.run("net", ["nft", "list", "table", "bridge", rules.table]).stdout
    dropped = sum(int(x.split()[1]) for x in listing.split("counter")[1:])
    assert dropped > 1000, listing
    print(f"\n64 MiB each way with 1 % loss: {took:.1f}s, {dropped} packets dropped")


def test_64mib_each_way_with_netem_delay_and_loss(topo, tmp_path):
    for host in ("priv", "pub"):
        ok, why = netem_on(topo, host, "delay", "50ms", "loss", "1%")
        if not ok:
            pytest.skip(f"the kernel has no netem qdisc ({why}); the loss-only test above "
                        "runs instead")
    conns = run_stack(topo, tmp_path, extra=("--dial-timeout", "20s"))
    took = transfer_both_ways(topo, conns, timeout=900)
    print(f"\n64 MiB each way over netem 50 ms / 1 %: {took:.1f}s")
