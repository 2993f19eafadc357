"""TURN servers and clients for the TURN tests, on loopback only.

A server under test is either coturn's `turnserver` (the reference: the checks are first shown to
pass against it) or `underpass turn`, both behind one interface:

    srv = TurnServer("coturn" | "underpass", tmp, users=[("alice", "pw")],
                     allow_peers=["127.0.0.0/8"], tls=(cert, key), auth_secret=None, procs=procs)
    srv.port, srv.tls_port, srv.realm, srv.stop()

`underpass turn` is started with exactly

    underpass turn --listen 127.0.0.1:PORT --realm REALM --relay-ip 127.0.0.1
                   --user NAME:PASS... --allow-peer CIDR... --min-port A --max-port B
                   [--tls-cert F --tls-key F] [--auth-secret S]

and is ready when its log says "turn ready on". coturn gets the equivalent options (see
CoturnTurn). Both are then probed with a STUN Binding request, bounded, before a test uses them.

Clients: coturn's `turnutils_peer` (a UDP echo peer), `turnutils_stunclient` and
`turnutils_uclient` (wrapped with their output parsed), our own STUN Binding request, and the
pion/turn client in tests/turn/pionclient (built by the tests with `go`).

Every process started here is tracked (appended to `procs`, the conftest fixture's list, when
given) and killed and reaped on stop(), also when a test fails; every wait has a deadline."""
import ipaddress
import json
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

from harness import Proc, free_port, wait_until

REALM = "example.org"
KINDS = ("coturn", "underpass")
COTURN_TOOLS = ("turnserver", "turnutils_peer", "turnutils_stunclient", "turnutils_uclient")


# ---------------------------------------------------------------- availability

def missing_coturn_tools():
    return [t for t in COTURN_TOOLS if not shutil.which(t)]


_underpass_turn = {}


def underpass_turn_available(bin_path):
    """`underpass turn --help` exits 0: the subcommand exists (checked once per binary)."""
    if bin_path not in _underpass_turn:
        ok = False
        if os.path.exists(bin_path):
            try:
                ok = subprocess.run([bin_path, "turn", "--help"], capture_output=True,
                                    timeout=10, stdin=subprocess.DEVNULL).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
        _underpass_turn[bin_path] = ok
    return _underpass_turn[bin_path]


# ---------------------------------------------------------------- ports


def _udp_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port_udp_tcp(span=1):
    """A port from free_port() that is free for UDP too, with the `span - 1` ports after it
    free for UDP as well (turnutils_peer binds PORT and PORT+1)."""
    for _ in range(100):
        p = free_port()
        if p + span <= 65535 and all(_udp_free(p + i) for i in range(span)):
            return p
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1")


def relay_port_range(n=100):
    """(min, max): n consecutive UDP ports free on 127.0.0.1 for relayed addresses, below the
    kernel's ephemeral range so that no client socket is handed one of them meanwhile."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
    except (OSError, ValueError):
        eph_lo = 32768
    hi = max(20000 + n + 1000, eph_lo - 1)
    for _ in range(200):
        lo = random.randint(20000, hi - n)
        if all(_udp_free(p) for p in range(lo, lo + n)):
            return lo, lo + n - 1
    raise RuntimeError(f"no {n} consecutive free UDP ports on 127.0.0.1")


# ---------------------------------------------------------------- STUN

MAGIC = 0x2112A442


def stun_binding(port, host="127.0.0.1", timeout=2.0, sock=None):
    """Send a STUN Binding request over UDP from `sock` (default: a fresh socket on 127.0.0.1)
    and return (XOR-MAPPED-ADDRESS as (ip, port), our own (ip, port)), or None on no answer."""
    own = sock is None
    if own:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
    try:
        tid = os.urandom(12)
        sock.sendto(struct.pack("!HHI", 0x0001, 0, MAGIC) + tid, (host, port))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(2048)
            except socket.timeout:
                return None
            except ConnectionRefusedError:  # ICMP port unreachable from an earlier try
                time.sleep(0.02)
                sock.sendto(struct.pack("!HHI", 0x0001, 0, MAGIC) + tid, (host, port))
                continue
            if len(data) < 20 or data[8:20] != tid:
                continue
            mtype, mlen = struct.unpack("!HH", data[:4])
            if mtype != 0x0101:  # Binding success response
                return None
            attrs = data[20:20 + mlen]
            i = 0
            while i + 4 <= len(attrs):
                atype, alen = struct.unpack("!HH", attrs[i:i + 4])
                val = attrs[i + 4:i + 4 + alen]
                if atype == 0x0020 and alen >= 8 and val[1] == 0x01:  # XOR-MAPPED-ADDRESS v4
                    xport = struct.unpack("!H", val[2:4])[0] ^ (MAGIC >> 16)
                    xip = struct.unpack("!I", val[4:8])[0] ^ MAGIC
                    return (str(ipaddress.IPv4Address(xip)), xport), sock.getsockname()
                i += 4 + alen + (-alen % 4)
            return None
    finally:
        if own:
            sock.close()


def _wait_stun(port, timeout, proc):
    def ok():
        if not proc.alive():
            raise AssertionError(f"{proc.args[0]} exited ({proc.p.returncode}) before answering "
                                 f"STUN on :{port}:\n{proc.text()}")
        return stun_binding(port, timeout=0.3) is not None
    try:
        wait_until(ok, timeout, f"a STUN Binding answer on 127.0.0.1:{port}", interval=0.05)
    except TimeoutError:
        raise AssertionError(f"no STUN Binding answer on 127.0.0.1:{port} within {timeout}s:\n"
                             f"{proc.text()}")


def _wait_tcp(port, timeout, proc):
    def ok():
        if not proc.alive():
            raise AssertionError(f"{proc.args[0]} exited before listening on :{port}:\n"
                                 f"{proc.text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    try:
        wait_until(ok, timeout, f"TCP 127.0.0.1:{port} to accept", interval=0.05)
    except TimeoutError:
        raise AssertionError(f"nothing accepts on TCP 127.0.0.1:{port} within {timeout}s:\n"
                             f"{proc.text()}")


# ---------------------------------------------------------------- servers


class _TurnBase:
    kind = "?"

    def __init__(self, tmp, *, users=(("alice", "pw"),), allow_peers=("127.0.0.0/8",),
                 tls=None, auth_secret=None, realm=REALM, port=None, relay_ports=None,
                 procs=None, ready_timeout=15, name=None):
        self.tmp = tmp
        self.users = list(users)
        self.allow_peers = list(allow_peers)
        self.tls = tls
        self.auth_secret = auth_secret
        self.realm = realm
        self.port = port or free_port_udp_tcp()
        self.min_port, self.max_port = relay_ports or relay_port_range()
        self.tls_port = None
        self.name = name or f"turn-{self.kind}"
        self.proc = None
        self._start(ready_timeout)
        if procs is not None:
            procs.append(self)

    def __repr__(self):
        return f"<{self.kind} turn on 127.0.0.1:{self.port} tls={self.tls_port}>"

    def text(self):
        return self.proc.text() if self.proc else ""

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def stop(self):
        if self.proc:
            self.proc.stop()

    def _launch(self, args, env=None):
        self.proc = Proc(args, env if env is not None else _clean_env(),
                         self.tmp / f"{self.name}.log")

    def _ready(self, timeout):
        end = time.monotonic() + timeout
        try:
            _wait_stun(self.port, max(1, end - time.monotonic()), self.proc)
            _wait_tcp(self.port, max(1, end - time.monotonic()), self.proc)
            if self.tls_port:
                _wait_tcp(self.tls_port, max(1, end - time.monotonic()), self.proc)
        except BaseException:
            self.proc.stop()
            raise


def _clean_env():
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("UNDERPASS_"):
            del e[k]
    return e


class UnderpassTurn(_TurnBase):
    """`underpass turn` with exactly the pinned flags. Ready on its "turn ready on" line.

    The TLS port: there is no pinned flag for it, so it is read from the ready line (a port
    other than --listen's that follows "tls" or "turns"), else taken to be the --listen port
    (TLS and plain TCP told apart on one port, as coturn also does)."""
    kind = "underpass"
    READY = "turn ready on"

    def __init__(self, tmp, bin_path=None, **kw):
        if bin_path is None:
            from conftest import BIN
            bin_path = BIN
        self.bin = bin_path
        super().__init__(tmp, **kw)

    def args(self):
        return underpass_argv(self.bin, self.port, self.min_port, self.max_port, self.users,
                              self.allow_peers, realm=self.realm, tls=self.tls,
                              auth_secret=self.auth_secret)

    def _start(self, timeout):
        self._launch(self.args())
        end = time.monotonic() + timeout
        try:
            self.proc.wait_log(self.READY, timeout)
        except BaseException:
            self.proc.stop()
            raise
        if self.tls:
            line = next((ln for ln in self.text().splitlines() if self.READY in ln), "")
            m = re.search(r"(?:tls|turns)\b.*?:(\d{1,5})\b", line[line.find(self.READY):],
                          re.IGNORECASE)
            self.tls_port = int(m.group(1)) if m and int(m.group(1)) != self.port else self.port
        self._ready(max(1, end - time.monotonic()))


def underpass_argv(bin_path, port, min_port, max_port, users, allow_peers, *, realm=REALM,
                   tls=None, auth_secret=None):
    """The command line of `underpass turn` (the pinned flags, nothing else)."""
    a = [str(bin_path), "turn", "--listen", f"127.0.0.1:{port}", "--realm", realm,
         "--relay-ip", "127.0.0.1"]
    for u, p in users:
        a += ["--user", f"{u}:{p}"]
    for cidr in allow_peers:
        a += ["--allow-peer", cidr]
    a += ["--min-port", str(min_port), "--max-port", str(max_port)]
    if tls:
        a += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    if auth_secret:
        a += ["--auth-secret", auth_secret]
    return a


def coturn_argv(port, min_port, max_port, users, allow_peers, state_dir, *, name="turn-coturn",
                realm=REALM, tls=None, tls_port=None, auth_secret=None):
    """The equivalent command line of coturn's turnserver (see CoturnTurn)."""
    state_dir = pathlib.Path(state_dir)
    a = ["turnserver", "-n", "--no-cli", "--log-file", "stdout", "--simple-log", "-v",
         "--listening-ip", "127.0.0.1", "--listening-port", str(port),
         "--relay-ip", "127.0.0.1", "--realm", realm,
         "--min-port", str(min_port), "--max-port", str(max_port),
         "--no-multicast-peers", "--no-dtls",
         "--pidfile", str(state_dir / f"{name}.pid"),
         "--db", str(state_dir / f"{name}.sqlite")]
    a += ["--lt-cred-mech"]
    for u, p in users:
        a += ["--user", f"{u}:{p}"]
    if auth_secret:
        a += ["--use-auth-secret", "--static-auth-secret", auth_secret]
    loopback = False
    for cidr in allow_peers:
        net, rng = _cidr_range(cidr)
        a += [f"--allowed-peer-ip={rng}"]
        lo = ipaddress.ip_network("127.0.0.0/8" if net.version == 4 else "::1/128")
        loopback = loopback or net.overlaps(lo)
    if loopback:
        a += ["--allow-loopback-peers"]
    if tls:
        a += ["--tls-listening-port", str(tls_port), "--cert", str(tls[0]),
              "--pkey", str(tls[1])]
    else:
        a += ["--no-tls"]
    return a


def _cidr_range(cidr):
    n = ipaddress.ip_network(cidr, strict=False)
    return n, f"{n.network_address}-{n.broadcast_address}"


class CoturnTurn(_TurnBase):
    """coturn's turnserver in the foreground with options equivalent to UnderpassTurn's:

      -n --no-cli --log-file stdout --simple-log -v    no config file, no CLI, log to stdout
                                                       (-v for the "listener opened" lines)
      --listening-ip 127.0.0.1 --listening-port PORT   UDP and TCP
      --relay-ip 127.0.0.1 --realm R --min-port A --max-port B --no-multicast-peers
      --lt-cred-mech --user NAME:PASS...               (--user alone is not enough)
      --use-auth-secret --static-auth-secret S         for --auth-secret (TURN REST API)
      --allowed-peer-ip=LO-HI...                       per --allow-peer CIDR, as a range:
                                                       4.6.1 rejects CIDR ("Wrong address
                                                       format") and starts anyway
      --allow-loopback-peers                           when an allowed CIDR touches loopback:
                                                       coturn refuses 127.x and ::1 peers
                                                       (403 Forbidden IP) before it even looks
                                                       at --allowed-peer-ip
      --tls-listening-port TP --cert F --pkey F        with TLS, else --no-tls; --no-dtls always
      --pidfile, --db                                  in tmp, not /var/run, /var/lib/turn

    No --denied-peer-ip: coturn allows any other peer by default; without --allow-peer both
    servers refuse a loopback peer, which is what the tests compare. Ready when its log shows
    its UDP and TCP listeners on PORT (and TP), and it answers a STUN Binding request."""
    kind = "coturn"

    def args(self):
        return coturn_argv(self.port, self.min_port, self.max_port, self.users,
                           self.allow_peers, self.tmp, name=self.name, realm=self.realm,
                           tls=self.tls, tls_port=self.tls_port, auth_secret=self.auth_secret)

    def _start(self, timeout):
        if self.tls:
            self.tls_port = free_port()
        self._launch(self.args())
        end = time.monotonic() + timeout
        try:
            self.proc.wait_log(f"UDP listener opened on: 127.0.0.1:{self.port}", timeout)
            self.proc.wait_log(f"listener opened on : 127.0.0.1:{self.port}",
                               max(1, end - time.monotonic()))
            if self.tls:
                self.proc.wait_log(f"TLS/TCP listener opened on : 127.0.0.1:{self.tls_port}",
                                   max(1, end - time.monotonic()))
        except BaseException:
            self.proc.stop()
            raise
        self._ready(max(1, end - time.monotonic()))


def TurnServer(kind, tmp, **kw):
    """Start a TURN server of `kind` ("coturn" or "underpass"); see the module docstring."""
    if kind == "coturn":
        return CoturnTurn(tmp, **kw)
    if kind == "underpass":
        return UnderpassTurn(tmp, **kw)
    raise ValueError(f"unknown TURN server kind {kind!r}")


# ---------------------------------------------------------------- peers


class Peer:
    """coturn's turnutils_peer: a UDP echo on 127.0.0.1:PORT and PORT+1 (it always binds both;
    uclient's "RTCP" sessions send to PORT+1). Ready when it echoes a datagram."""

    def __init__(self, tmp, port=None, procs=None, timeout=10, name="peer"):
        self.port = port or free_port_udp_tcp(span=2)
        self.proc = Proc(["turnutils_peer", "-L", "127.0.0.1", "-p", str(self.port)],
                         _clean_env(), tmp / f"{name}.log")
        try:
            wait_until(self._echoes, timeout, f"turnutils_peer to echo on :{self.port}",
                       interval=0.05)
        except BaseException:
            self.proc.stop()
            raise
        if procs is not None:
            procs.append(self)

    def _echoes(self):
        if not self.proc.alive():
            raise AssertionError(f"turnutils_peer exited:\n{self.proc.text()}")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.settimeout(0.2)
            s.sendto(b"ping", ("127.0.0.1", self.port))
            return s.recvfrom(64)[0] == b"ping"
        except OSError:
            return False
        finally:
            s.close()

    def stop(self):
        self.proc.stop()


class CountingPeer:
    """A UDP echo peer in this process (a thread) that counts what reaches it: for the checks
    that a refused client got nothing through to the peer at all."""

    def __init__(self, procs=None):
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.sources = set()
        self._stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        if procs is not None:
            procs.append(self)

    def _run(self):
        while not self._stop:
            try:
                data, src = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.count += 1
            self.sources.add(src)
            try:
                self.sock.sendto(data, src)
            except OSError:
                pass

    def stop(self):
        self._stop = True
        self.t.join(2)
        self.sock.close()


# ---------------------------------------------------------------- one-shot tools


@dataclass
class ToolRun:
    args: list
    rc: int
    out: str
    timed_out: bool
    seconds: float


def run_tool(args, timeout, env=None):
    """Run a client tool to completion in its own process group; on timeout kill the group and
    reap it. Never raises for a non-zero exit."""
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env=env if env is not None else _clean_env(),
                         start_new_session=True)
    timed_out = False
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = p.communicate(timeout=10)
    except BaseException:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(10)
        raise
    return ToolRun(list(args), p.returncode, out.decode(errors="replace"), timed_out,
                   time.monotonic() - t0)


def tls_handshake(port, ca, timeout=5):
    """A TLS handshake with 127.0.0.1:port verified against `ca`: the negotiated version."""
    import ssl
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return t.version()


def stunclient(port, timeout=10):
    """turnutils_stunclient against 127.0.0.1:port: (reflexive (ip, port) or None, ToolRun).
    It prints "IPv4. UDP reflexive addr: 127.0.0.1:PORT" (twice: log and stdout), exits 0 even
    when the answer is an error, and waits forever when there is no answer."""
    r = run_tool(["turnutils_stunclient", "-p", str(port), "127.0.0.1"], timeout)
    m = re.search(r"UDP reflexive addr: ([0-9.]+):(\d+)", r.out)
    return ((m.group(1), int(m.group(2))) if m else None), r


@dataclass
class UclientResult:
    run: ToolRun
    sent: int = None
    received: int = None
    bytes_sent: int = None
    bytes_received: int = None
    lost: int = None
    lost_pct: float = None
    send_dropped: int = None
    rtt_avg_ms: float = None
    rtt_min_ms: int = None
    rtt_max_ms: int = None
    jitter_avg_ms: float = None
    errors: list = field(default_factory=list)

    @property
    def summary(self):
        return self.lost is not None

    @property
    def ok(self):
        """Exited 0 and every message came back."""
        return (self.run.rc == 0 and not self.run.timed_out and self.summary and self.lost == 0
                and self.sent and self.received == self.sent)

    def describe(self):
        tail = "\n".join(self.run.out.splitlines()[-25:])
        return (f"{' '.join(self.run.args)}\nrc={self.run.rc} timed_out={self.run.timed_out} "
                f"{self.run.seconds:.1f}s sent={self.sent} received={self.received} "
                f"lost={self.lost} errors={self.errors}\n{tail}")


def _last(pattern, text):
    found = re.findall(pattern, text)
    return found[-1] if found else None


def parse_uclient(run):
    """turnutils_uclient's summary (lines prefixed "N: : ", N = seconds since start):
      start_mclient: tot_send_msgs=2000, tot_recv_msgs=2000
      start_mclient: tot_send_bytes ~ 200000, tot_recv_bytes ~ 200000
      Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
      Average round trip delay 0.000000 ms; min = 0 ms, max = 0 ms     (whole milliseconds)
      Average jitter 1.169500 ms; min = 0 ms, max = 4 ms
    and its refusals ("Cannot complete Allocation", "channel bind: error 403 (Forbidden IP)",
    "create permission error 403 (...)", "error 401 (...)"), after which it exits 255."""
    res = UclientResult(run)
    t = run.out
    m = _last(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", t)
    if m:
        res.sent, res.received = int(m[0]), int(m[1])
    m = _last(r"start_mclient: tot_send_bytes ~ (\d+), tot_recv_bytes ~ (\d+)", t)
    if m:
        res.bytes_sent, res.bytes_received = int(m[0]), int(m[1])
    m = _last(r"Total lost packets (\d+) \(([-\d.naif]+)%\), total send dropped (\d+)", t)
    if m:
        res.lost, res.send_dropped = int(m[0]), int(m[2])
        try:
            res.lost_pct = float(m[1])
        except ValueError:
            res.lost_pct = None
    m = _last(r"Average round trip delay ([-\d.naif]+) ms; min = (\d+) ms, max = (\d+) ms", t)
    if m:
        res.rtt_avg_ms = float(m[0]) if m[0][0].isdigit() else None
        res.rtt_min_ms, res.rtt_max_ms = int(m[1]), int(m[2])
    m = _last(r"Average jitter ([-\d.naif]+) ms", t)
    if m:
        res.jitter_avg_ms = float(m) if m[0].isdigit() else None
    for pat in (r"Cannot complete Allocation", r"channel bind: error \d+ \([^)]*\)",
                r"create permission error \d+ \([^)]*\)", r"\berror \d+ \([^)]*\)",
                r"ERROR: [^\n]*"):
        for e in re.findall(pat, t):
            if not any(e in known for known in res.errors):
                res.errors.append(e)
    return res


def uclient(port, peer_port, *, user=None, password=None, secret=None, messages=200, clients=10,
            length=100, send_indications=False, tcp=False, tls=False, interval_ms=5,
            no_rtcp=True, ipv4_relay=False, c2c=False, peer="127.0.0.1", timeout=None,
            extra=()):
    """Run turnutils_uclient against the TURN server on 127.0.0.1:port, relaying to the echo
    peer on peer:peer_port; return the parsed UclientResult.

      -m clients -n messages -l length   each client sends `messages` datagrams of `length` bytes
      -c (no_rtcp, default)              one allocation per client, all to peer_port (without it,
                                         uclient pairs an "RTCP" allocation to peer_port + 1)
      -s  Send indications instead of a channel;  -t TCP to the server;  -S -t TLS
      -z interval_ms                     between a client's datagrams (uclient's default 20)
      -X  REQUESTED-ADDRESS-FAMILY IPv4;  -y client-to-client (no peer)
      -u/-w long-term credentials; -W the TURN REST API secret (with -u as the user part)

    Each client starts sending at a random moment 1-6 s after connecting and a client whose
    datagrams do not all come back waits 10 s more (STOPPING_TIME) before it gives up, so a
    run takes several seconds whatever its size: the default timeout allows for that."""
    a = ["turnutils_uclient", "-p", str(port), "-m", str(clients), "-n", str(messages),
         "-l", str(length), "-z", str(interval_ms)]
    if not c2c:
        a += ["-e", peer, "-r", str(peer_port)]
    if user is not None:
        a += ["-u", user]
    if password is not None:
        a += ["-w", password]
    if secret is not None:
        a += ["-W", secret]
    if no_rtcp:
        a.append("-c")
    if send_indications:
        a.append("-s")
    if tcp or tls:
        a.append("-t")
    if tls:
        a.append("-S")
    if ipv4_relay:
        a.append("-X")
    if c2c:
        a.append("-y")
    a += list(extra)
    a.append("127.0.0.1")
    if timeout is None:
        timeout = 30 + messages * interval_ms / 1000 + 10
    return parse_uclient(run_tool(a, timeout))


# ---------------------------------------------------------------- pion client

PIONCLIENT_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "turn",
                              "pionclient")


def build_pionclient(out_dir, timeout=600):
    """`go -C tests/turn/pionclient build` into out_dir; returns the binary's path. Needs the
    module cache or the Go module proxy the first time (go.sum pins every module)."""
    out = os.path.join(str(out_dir), "pionclient")
    r = run_tool(["go", "-C", os.path.normpath(PIONCLIENT_SRC), "build", "-o", out, "."],
                 timeout)
    if r.rc != 0 or not os.path.exists(out):
        raise AssertionError(f"building the pion client failed (rc={r.rc}, "
                             f"timed_out={r.timed_out}):\n{r.out}")
    return out


@dataclass
class PionResult:
    run: ToolRun
    summary: dict

    @property
    def ok(self):
        return self.run.rc == 0 and not self.run.timed_out and self.summary.get("lost") == 0

    def __getitem__(self, k):
        return self.summary.get(k)

    def describe(self):
        return (f"{' '.join(self.run.args)}\nrc={self.run.rc} timed_out={self.run.timed_out} "
                f"{self.run.seconds:.1f}s\n{self.run.out[-3000:]}")


def pion(binary, port, *, user, password, realm=REALM, n=10000, size=200, tcp=False,
         tls=False, ca=None, peer=None, clients=1, window=1, duration=None, rate=None, deadline=60, extra=()):
    """Run the pion client against 127.0.0.1:port; it runs its own echo peer unless `peer`
    (an echo already listening, e.g. a Peer) is given. Returns a PionResult whose summary is the
    JSON it printed (exit 0 ok, 1 loss/mismatch/no channel, 3 setup refused, 4 deadline)."""
    a = [binary, "-server", f"127.0.0.1:{port}", "-user", user, "-pass", password,
         "-realm", realm, "-size", str(size), "-clients", str(clients), "-window", str(window),
         "-deadline", f"{deadline}s"]
    a += ["-duration", f"{duration}s"] if duration else ["-n", str(n)]
    if rate:
        a += ["-rate", str(rate)]
    if tcp:
        a.append("-tcp")
    if tls:
        a.append("-tls")
    if ca:
        a += ["-ca", str(ca)]
    if peer is not None:
        a += ["-peer", f"127.0.0.1:{peer}", "-external-peer"]
    a += list(extra)
    r = run_tool(a, deadline + 15)
    summary = {}
    for line in reversed(r.out.splitlines()):
        if line.startswith("{"):
            try:
                summary = json.loads(line)
            except ValueError:
                pass
            break
    return PionResult(r, summary)


# ---------------------------------------------------------------- command line (bench/turn.sh)

def _main(argv):
    """turn_harness.py argv KIND --port P --min-port A --max-port B --dir DIR [--bin B]
                        [--realm R] [--user NAME:PASS]... [--allow-peer CIDR]...
                        [--tls-cert F --tls-key F --tls-port TP] [--auth-secret S]
           print the server's command line, one argument per line
       turn_harness.py stun PORT [SECONDS]
           send a STUN Binding request to 127.0.0.1:PORT; print the mapped address, exit 0,
           or exit 1 on no answer"""
    import argparse
    if argv[:1] == ["stun"] and len(argv) in (2, 3):
        got = stun_binding(int(argv[1]), timeout=float(argv[2]) if len(argv) == 3 else 1.0)
        if got is None:
            return 1
        print(f"{got[0][0]}:{got[0][1]}")
        return 0
    if argv[:1] != ["argv"]:
        print(_main.__doc__, file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(prog="turn_harness.py argv")
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--min-port", type=int, required=True)
    ap.add_argument("--max-port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--bin", default=None)
    ap.add_argument("--realm", default=REALM)
    ap.add_argument("--user", action="append", default=[])
    ap.add_argument("--allow-peer", action="append", default=[])
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-port", type=int)
    ap.add_argument("--auth-secret")
    o = ap.parse_args(argv[1:])
    users = [tuple(u.split(":", 1)) for u in o.user]
    tls = (o.tls_cert, o.tls_key) if o.tls_cert else None
    if o.kind == "coturn":
        a = coturn_argv(o.port, o.min_port, o.max_port, users, o.allow_peer, o.dir,
                        realm=o.realm, tls=tls, tls_port=o.tls_port, auth_secret=o.auth_secret)
    else:
        if not o.bin:
            ap.error("underpass needs --bin")
        a = underpass_argv(o.bin, o.port, o.min_port, o.max_port, users, o.allow_peer,
                           realm=o.realm, tls=tls, auth_secret=o.auth_secret)
    print("\n".join(a))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
