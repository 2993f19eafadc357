"""Network-namespace topologies for integration tests: private network, proxy, relay, outsider.

A Topology builds one network namespace per host plus one for the wire between them: a Linux
bridge in its own namespace, with a veth pair from it to each host. Nothing is created in the
namespace the tests run in (no interfaces, no routes, no rules), so concurrent runs cannot
clash; the subnet is still picked at random inside 10.200-250.x.0/24 so that addresses in logs
from two runs are told apart.

                  <prefix>-net  (bridge br0; nft "bridge" rules here cut a wire)
        +-----------+-----------+-----------+-----------+
        | veth      | veth      | veth      | veth      |
   <prefix>-priv <prefix>-proxy <prefix>-pub <prefix>-out
     10.A.B.2     10.A.B.3      10.A.B.4     10.A.B.5
     agent +      squid /       relay        a client on
     service      tinyproxy                  the outside
     (firewall: no inbound; outbound only to proxy:port)

Every namespace has its loopback up. Hosts are named by their short name ("priv", "proxy",
"pub", "out"; "net" is the bridge namespace) everywhere in this API; ns(host) gives the real
namespace name, `up<pid><two random letters>-<host>`: the pid lets sweep_stale() (run before
each new topology) delete what a SIGKILLed run left, without touching live runs.

Two ways to run something inside a namespace:
  * a process: cmd()/run()/popen()/proc() wrap `ip netns exec NS ...`, which setns()es and
    then execs the command, so the pid you get is the real process (a harness.Proc made by
    proc() can read /proc/<pid>/fd and its log like any other);
  * a socket: socket()/connect()/server() create the socket in a short-lived thread that has
    setns()ed into the namespace (ctypes; os.setns is Python 3.12+). A socket stays in the
    namespace it was made in, so the test then uses it from any thread as usual.

Packet filtering is nftables, one table per call so that each can be lifted on its own:
firewall() locks a host down (default priv: nothing in, out only to proxy:port); blackhole()
silently drops traffic between two hosts, or of one TCP port, on the bridge (the wire) or in a
host, and its remove() heals the link: established connections resume by retransmission.
Apply firewall() before opening the connections it should govern: conntrack only starts in a
namespace once a rule needs it, and a flow it first meets mid-stream counts as "new".

Teardown (close(), __exit__, the fixtures, and an atexit safety net) stops what the topology
started, SIGKILLs anything still inside a namespace (`ip netns pids`), and deletes every
namespace, also when the test failed.
"""
import atexit
import contextlib
import ctypes
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import threading

import pytest

from harness import Proc, wait_until

HOSTS = {"priv": 2, "proxy": 3, "pub": 4, "out": 5}
BRIDGE = "net"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_live = set()


def available():
    """(True, "") if this process can create network namespaces and run nft in them, else
    (False, why)."""
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            return False, f"'{tool}' is not installed (scripts/deps.sh installs it)"
    if os.geteuid() != 0:
        return False, "network namespace tests need root (CAP_SYS_ADMIN + CAP_NET_ADMIN)"
    name = f"upprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return False, f"cannot create a network namespace: {r.stderr.strip()}"
    try:
        r = subprocess.run(["ip", "netns", "exec", name, "nft", "list", "ruleset"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            return False, f"nft does not work in a namespace: {r.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    return True, ""


_STALE = re.compile(r"^up(\d+)[a-z]{2}-[a-z0-9_]+$")


def sweep_stale():
    """Delete namespaces left behind by Topologies of test processes that no longer exist
    (killed by SIGKILL, so neither teardown nor atexit ran), killing what runs inside them.
    Names carry the creating pid, so a live run's namespaces are never touched."""
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return
    for name in names:
        m = _STALE.match(name)
        if not m or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        r = _sh(["ip", "netns", "pids", name], check=False)
        for pid in r.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        _sh(["ip", "netns", "del", name], check=False)


def _sh(args, check=True, timeout=10, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({r.returncode}): "
                           f"{r.stderr.strip()}")
    return r


class Rules:
    """An nft table added to one namespace; remove() (or leaving a with-block) deletes it."""

    def __init__(self, topo, host, family, table):
        self.topo, self.host, self.family, self.table = topo, host, family, table
        self.active = True

    def remove(self):
        if self.active:
            self.active = False
            self.topo._rules.discard(self)
            if not self.topo.closed:  # else the namespace, and the table, are gone already
                self.topo.run(self.host, ["nft", "delete", "table", self.family, self.table])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class NsServer:
    """A TCP server whose listening socket lives in a namespace; handler(sock) runs per
    connection in a thread, like harness.Server. peers lists (ip, port) of every accepted
    connection, in order."""

    def __init__(self, topo, host, handler, port=0, bind="0.0.0.0"):
        self.handler = handler
        self.handled = 0
        self.peers = []
        self._conns = set()
        self._lock = threading.Lock()
        self.lsock = topo.socket(host)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((bind, port))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.addr = topo.ip(host) if bind == "0.0.0.0" else bind
        self._closed = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while True:
            try:
                c, peer = self.lsock.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    c.close()
                    return
                self.peers.append(peer)
                self._conns.add(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(c)
            c.close()
            self.handled += 1

    def close(self):
        with self._lock:
            self._closed = True
            conns = list(self._conns)
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.t.join(5)


class Topology:
    """Namespaces priv/proxy/pub/out on one bridged /24 (see the module docstring).

    Use as a context manager, or through the `topo` fixture (or topology()). tmp (a directory)
    is where proc() puts logs by default; hosts maps host name -> last octet (default HOSTS);
    prefix overrides the generated namespace-name prefix."""

    def __init__(self, tmp=None, hosts=None, prefix=None):
        self.tmp = tmp
        self.hosts = dict(hosts or HOSTS)
        self.prefix = prefix
        a, b = random.randint(200, 250), random.randint(0, 255)
        self.net = f"10.{a}.{b}"
        self.subnet = f"{self.net}.0/24"
        self._made = []
        self._procs = []
        self._popens = []
        self._servers = []
        self._rules = set()
        self._on_close = []
        self._n = 0
        self.closed = False

    # ---- names and addresses

    def ns(self, host):
        """The real namespace name of host ("priv", ..., or "net" for the bridge)."""
        if host != BRIDGE and host not in self.hosts:
            raise KeyError(f"no host {host!r} in this topology")
        return f"{self.prefix}-{host}"

    def ip(self, host):
        """IPv4 address of host; an address (with a dot) is returned unchanged."""
        if "." in host or ":" in host:
            return host
        return f"{self.net}.{self.hosts[host]}"

    # ---- build and tear down

    def __enter__(self):
        self.create()
        return self

    def __exit__(self, *exc):
        self.close()

    def create(self):
        """Make the namespaces, the bridge and the veths; bring everything up."""
        if self.prefix is None:
            sweep_stale()
            for _ in range(50):
                p = f"up{os.getpid()}" + "".join(
                    random.choice(string.ascii_lowercase) for _ in range(2))
                if not any(os.path.exists(f"/run/netns/{p}-{h}") for h in [BRIDGE, *self.hosts]):
                    self.prefix = p
                    break
            else:
                raise RuntimeError("no free namespace prefix")
        _live.add(self)
        try:
            self._add_ns(BRIDGE)
            netns = self.ns(BRIDGE)
            _sh(["ip", "-n", netns, "link", "add", "br0", "type", "bridge"])
            _sh(["ip", "-n", netns, "link", "set", "br0", "up"])
            for host in self.hosts:
                self._add_ns(host)
                hns = self.ns(host)
                _sh(["ip", "-n", netns, "link", "add", host, "type", "veth", "peer", "name",
                     "eth0", "netns", hns])
                _sh(["ip", "-n", netns, "link", "set", host, "master", "br0", "up"])
                _sh(["ip", "-n", hns, "addr", "add", f"{self.ip(host)}/24", "dev", "eth0"])
                _sh(["ip", "-n", hns, "link", "set", "eth0", "up"])
        except BaseException:
            self.close()
            raise

    def _add_ns(self, host):
        name = self.ns(host)
        _sh(["ip", "netns", "add", name])
        self._made.append(name)
        _sh(["ip", "-n", name, "link", "set", "lo", "up"])

    def pids(self, host):
        """Pids of every process inside host's namespace."""
        r = _sh(["ip", "netns", "pids", self.ns(host)], check=False)
        return [int(x) for x in r.stdout.split()]

    def close(self):
        """Stop everything started here, kill what is left in the namespaces, delete them."""
        if self.closed:
            return
        self.closed = True
        errors = []
        for fn in reversed(self._on_close):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - keep tearing down
                errors.append(e)
        for s in reversed(self._servers):
            with contextlib.suppress(Exception):
                s.close()
        for p in reversed(self._procs):
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - keep tearing down
                errors.append(e)
        for p in reversed(self._popens):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        for name in reversed(self._made):
            host = name[len(self.prefix) + 1:]
            for _ in range(3):
                pids = self.pids(host)
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    wait_until(lambda: not self.pids(host), 3, f"processes in {name} gone", 0.05)
        for name in reversed(self._made):
            r = _sh(["ip", "netns", "del", name], check=False)
            if r.returncode != 0 and os.path.exists(f"/run/netns/{name}"):
                errors.append(RuntimeError(f"ip netns del {name}: {r.stderr.strip()}"))
        self._made.clear()
        _live.discard(self)
        if errors:
            raise errors[0]

    def on_close(self, fn):
        """Call fn() first thing in close() (callbacks run last-registered first)."""
        self._on_close.append(fn)

    # ---- processes in a namespace

    def cmd(self, host, args):
        """args prefixed so that they run inside host's namespace."""
        return ["ip", "netns", "exec", self.ns(host), *map(str, args)]

    def run(self, host, args, check=True, timeout=10, **kw):
        """Run args to completion inside host; CompletedProcess with text stdout/stderr."""
        return _sh(self.cmd(host, args), check=check, timeout=timeout, **kw)

    def popen(self, host, args, **kw):
        """subprocess.Popen of args inside host (its pid is the command's own); killed at
        close()."""
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(self.cmd(host, args), **kw)
        self._popens.append(p)
        return p

    def proc(self, host, args, env=None, log_path=None, name=None):
        """A harness.Proc running args inside host (log, wait_log, nfds work); stopped at
        close(). Its .args are the inner args, .ns the host."""
        name = name or os.path.basename(str(args[0]))
        if log_path is None:
            if self.tmp is None:
                raise ValueError("proc() needs log_path when the topology has no tmp dir")
            log_path = os.path.join(str(self.tmp), f"{host}-{name}.log")
        p = Proc(self.cmd(host, args), env if env is not None else dict(os.environ), log_path)
        p.args = list(map(str, args))
        p.ns = host
        self._procs.append(p)
        return p

    # ---- sockets in a namespace

    def call_in(self, host, fn, *args, **kw):
        """fn(*args, **kw) run in a fresh thread that has entered host's network namespace;
        returns its result or raises its exception."""
        out = {}

        def body():
            try:
                fd = os.open(f"/run/netns/{self.ns(host)}", os.O_RDONLY)
                try:
                    if _libc.setns(fd, _CLONE_NEWNET) != 0:
                        e = ctypes.get_errno()
                        raise OSError(e, f"setns({self.ns(host)}): {os.strerror(e)}")
                finally:
                    os.close(fd)
                out["v"] = fn(*args, **kw)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                out["e"] = e

        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join()
        if "e" in out:
            raise out["e"]
        return out["v"]

    def socket(self, host, family=socket.AF_INET, type=socket.SOCK_STREAM):
        """A new socket that lives in host's namespace."""
        return self.call_in(host, socket.socket, family, type)

    def connect(self, host, addr, port, timeout=5, source=None):
        """A TCP connection made from host to (addr, port); addr may be a host name of this
        topology. Raises OSError (timeout, refused) like socket.create_connection."""
        s = self.socket(host)
        try:
            s.settimeout(timeout)
            if source:
                s.bind((self.ip(source), 0))
            s.connect((self.ip(addr), port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except BaseException:
            s.close()
            raise

    def can_connect(self, host, addr, port, timeout=1.0):
        """True if host completes a TCP handshake with (addr, port) within timeout."""
        try:
            self.connect(host, addr, port, timeout).close()
            return True
        except OSError:
            return False

    def wait_port(self, host, addr, port, timeout=10, proc=None):
        """Wait until host can connect to (addr, port); if proc (a Proc) dies first, fail with
        its log."""
        def ok():
            if proc is not None and not proc.alive():
                raise AssertionError(f"{proc.args[0]} exited ({proc.p.returncode}) before "
                                     f"listening on {addr}:{port}:\n{proc.text()}")
            return self.can_connect(host, addr, port, 0.5)
        wait_until(ok, timeout, f"{addr}:{port} accepting in {host}", 0.05)

    def server(self, host, handler, port=0, bind="0.0.0.0"):
        """An NsServer in host running handler(sock) per connection; closed at close()."""
        s = NsServer(self, host, handler, port, bind)
        self._servers.append(s)
        return s

    # ---- nftables

    def nft(self, host, ruleset):
        """Load an nft ruleset (text, as for `nft -f`) inside host."""
        self.run(host, ["nft", "-f", "-"], input=ruleset)

    def _table(self, host, family, body, kind):
        self._n += 1
        table = f"up_{kind}{self._n}"
        self.nft(host, f"table {family} {table} {{\n{body}\n}}\n")
        r = Rules(self, host, family, table)
        self._rules.add(r)
        return r

    def firewall(self, port, dest="proxy", host="priv", also=()):
        """Firewall host: inbound only loopback and established/related; outbound only
        loopback, established/related and new TCP to (dest, port) plus each (dest, port) in
        also. Everything else is dropped silently. Returns Rules (remove() lifts it)."""
        allow = [(dest, port), *also]
        out_rules = "\n".join(f"        ip daddr {self.ip(d)} tcp dport {p} ct state new accept"
                              for d, p in allow)
        body = f"""\
    chain input {{
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ct state established,related accept
    }}
    chain output {{
        type filter hook output priority 0; policy drop;
        oif "lo" accept
        ct state established,related accept
{out_rules}
    }}"""
        return self._table(host, "inet", body, "fw")

    def blackhole(self, host=BRIDGE, a=None, b=None, port=None):
        """Silently drop packets, in host's namespace ("net", the default, is the bridge: the
        wire itself), that go between a and b (both directions; hosts or addresses), or to/from
        a if b is None, optionally only TCP with source or destination port `port`; with no
        a/b/port, everything (except loopback in a host namespace). No FIN, no RST, no ICMP:
        the link just goes silent. Returns Rules; remove() heals the link."""
        sel = []
        if a and b:
            sel = [f"ip saddr {self.ip(a)} ip daddr {self.ip(b)}",
                   f"ip saddr {self.ip(b)} ip daddr {self.ip(a)}"]
        elif a:
            sel = [f"ip saddr {self.ip(a)}", f"ip daddr {self.ip(a)}"]
        if port is not None:
            ports = [f"tcp sport {port}", f"tcp dport {port}"]
            sel = [f"{s} {p}".strip() for s in (sel or [""]) for p in ports]
        if host == BRIDGE:
            rules = "\n".join(f"        {s} drop" for s in sel) if sel else "        drop"
            body = f"""\
    chain forward {{
        type filter hook forward priority -10; policy accept;
{rules}
    }}"""
            return self._table(host, "bridge", body, "bh")
        chains = []
        for chain, lo in (("input", 'iif != "lo"'), ("output", 'oif != "lo"')):
            rules = "\n".join(f"        {s} drop" for s in sel) if sel else f"        {lo} drop"
            chains.append(f"""\
    chain {chain} {{
        type filter hook {chain} priority -10; policy accept;
{rules}
    }}""")
        return self._table(host, "inet", "\n".join(chains), "bh")


@contextlib.contextmanager
def topology(tmp=None, **kw):
    """with topology(tmp) as t: ... — a Topology created on entry and torn down on exit."""
    t = Topology(tmp, **kw)
    t.create()
    try:
        yield t
    finally:
        t.close()


def skip_unless_available():
    """pytest.skip the calling module if namespaces cannot be used here."""
    ok, why = available()
    if not ok:
        pytest.skip(f"network namespaces unavailable: {why}", allow_module_level=True)


@pytest.fixture
def topo(tmp_path):
    """A fresh Topology for one test (logs in tmp_path), torn down even if the test fails."""
    with topology(tmp_path) as t:
        yield t


@atexit.register
def _cleanup_at_exit():
    for t in list(_live):
        with contextlib.suppress(Exception):
            t.close()
