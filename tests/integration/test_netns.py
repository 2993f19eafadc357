"""Self-test of the namespace and proxy infrastructure (netns.py, proxies.py), with plain Python
sockets only: no underpass binary is needed.

               <p>-net: bridge (black-hole rules cut the wire here)
        +--------------+--------------+--------------+
   <p>-priv        <p>-proxy       <p>-pub        <p>-out
   .2 firewalled   .3 squid :3128  .4 echo :7000  .5 outsider
   echo :7001         tinyproxy :8888

priv may only open TCP to proxy:3128 and proxy:8888 and accepts no inbound connection; the
proxies let authenticated CONNECTs through to pub. nginx and haproxy run on loopback and, in
one case each, inside pub, in front of a small HTTP backend that reports what it saw.
"""
import base64
import hashlib
import os
import socket
import ssl
import threading
from types import SimpleNamespace

import pytest

import netns
from harness import Server, echo_handler, wait_until
from netns import topo  # noqa: F401 - the fixture
from proxies import (SQUID_AUTH_HELPER, Haproxy, Nginx, Squid, Tinyproxy, http_connect,
                     make_cert, read_head, require)

netns.skip_unless_available()

ECHO_PORT = 7000
PRIV_PORT = 7001
SQUID_PORT = 3128
TINY_PORT = 8888


def recv_exactly(sock, n, timeout=5):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        b = sock.recv(n - len(buf))
        if not b:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += b
    return buf


def echoes(sock, data):
    """True if sock echoes data back: written and read concurrently so any size works, or, on
    a TLS socket (an SSL object must not be read and written from two threads), in 16 KiB
    round trips."""
    if isinstance(sock, ssl.SSLSocket):
        for i in range(0, len(data), 16384):
            sock.sendall(data[i:i + 16384])
            if recv_exactly(sock, len(data[i:i + 16384])) != data[i:i + 16384]:
                return False
        return True
    t = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    t.start()
    got = recv_exactly(sock, len(data))
    t.join(5)
    return got == data


def stalls(sock, timeout=1.0):
    """True if nothing arrives on sock within timeout."""
    sock.settimeout(timeout)
    try:
        return not sock.recv(1)  # EOF would be a failure too: the link must go silent
    except socket.timeout:
        return True


def gone(pid):
    """True if pid has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def group_gone(pgid):
    """True if no live (non-zombie) process is left in process group pgid: a stopped proxy
    took its helpers and workers with it."""
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return False
    return True


def assert_stopped(proxy):
    proxy.stop()
    assert not proxy.alive()
    wait_until(lambda: group_gone(proxy.proc.pid), 5, f"{proxy.name} and its children gone")


# ---- shared world: one topology, echo servers, firewall, two forward proxies

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("netns")
    with netns.topology(tmp) as t:
        w = SimpleNamespace(topo=t, tmp=tmp)
        w.echo = t.server("pub", echo_handler, port=ECHO_PORT)
        w.inside = t.server("priv", echo_handler, port=PRIV_PORT)
        t.firewall(SQUID_PORT, dest="proxy", host="priv", also=[("proxy", TINY_PORT)])
        yield w
    assert not any(os.path.exists(f"/run/netns/{t.ns(h)}") for h in ("net", *netns.HOSTS))


@pytest.fixture(scope="module")
def squid(world):
    require("squid", SQUID_AUTH_HELPER)
    p = Squid(world.tmp, users={"alice": "s3cret", "bob": "hunter2"}, topo=world.topo,
              host="proxy", port=SQUID_PORT)
    yield p
    assert_stopped(p)


@pytest.fixture(scope="module")
def tiny(world):
    require("tinyproxy")
    p = Tinyproxy(world.tmp, users={"alice": "s3cret"}, connect_ports=[ECHO_PORT],
                  topo=world.topo, host="proxy", port=TINY_PORT)
    yield p
    assert_stopped(p)


def via(world, proxy, user, password, port=ECHO_PORT):
    """From priv, CONNECT through proxy to pub:port; (status, head, socket)."""
    s = proxy.connect(from_host="priv")
    status, head = http_connect(s, world.topo.ip("pub"), port, user, password)
    return status, head, s


# ---- the topology itself

def test_topology_names_addresses_and_loopback(topo):
    assert topo.subnet.startswith("10.") and 200 <= int(topo.subnet.split(".")[1]) <= 250
    for host, last in netns.HOSTS.items():
        assert os.path.exists(f"/run/netns/{topo.ns(host)}")
        assert topo.ip(host) == f"{topo.net}.{last}"
        out = topo.run(host, ["ip", "-o", "addr", "show"]).stdout
        assert f"{topo.ip(host)}/24" in out and "127.0.0.1/8" in out
    assert os.path.exists(f"/run/netns/{topo.ns('net')}")
    srv = topo.server("pub", echo_handler)
    for host in ("priv", "proxy", "out"):  # no firewall yet: everyone reaches pub
        s = topo.connect(host, "pub", srv.port)
        assert echoes(s, b"hi from " + host.encode())
        s.close()
    assert [p[0] for p in srv.peers] == [topo.ip(h) for h in ("priv", "proxy", "out")]


def test_proc_in_namespace_is_the_real_process(topo, tmp_path):
    code = ("import socket,sys,time; s=socket.socket(); s.bind(('0.0.0.0', 7100)); s.listen();"
            "print('ready', flush=True); c,a=s.accept(); c.sendall(a[0].encode()); time.sleep(30)")
    p = topo.proc("pub", ["python3", "-c", code], log_path=tmp_path / "py.log")
    p.wait_log("ready", 10)
    assert p.args[0] == "python3" and p.ns == "pub"
    # `ip netns exec` execs: the pid is python itself, inside pub's namespace
    assert "python" in open(f"/proc/{p.pid}/comm").read()
    assert os.readlink(f"/proc/{p.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert p.pid in topo.pids("pub")
    assert p.nfds() >= 3
    s = topo.connect("out", "pub", 7100)
    assert s.recv(64).decode() == topo.ip("out")
    s.close()
    assert not topo.can_connect("out", "127.0.0.1", 7100, 0.5)  # out's own loopback


def test_teardown_removes_namespaces_and_processes_even_on_failure(tmp_path):
    t = netns.Topology(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with t:
            names = [t.ns(h) for h in ("net", *netns.HOSTS)]
            p = t.proc("priv", ["sleep", "300"])
            po = t.popen("proxy", ["sleep", "301"])
            # an orphan nobody tracks: only `ip netns pids` finds it
            t.run("out", ["sh", "-c", "sleep 302 </dev/null >/dev/null 2>&1 &"])
            orphan = t.pids("out")
            assert len(orphan) == 1
            raise RuntimeError("boom")
    for n in names:
        assert not os.path.exists(f"/run/netns/{n}"), n
    assert not p.alive() and po.poll() is not None
    wait_until(lambda: gone(orphan[0]), 5, "orphan killed")
    assert t not in netns._live


# ---- firewall in priv

def test_firewall_blocks_direct_priv_to_pub(world):
    t = world.topo
    assert t.can_connect("out", "pub", ECHO_PORT)  # pub's server is up
    assert not t.can_connect("priv", "pub", ECHO_PORT, 1.0)
    assert not t.can_connect("priv", "out", 22, 1.0)
    assert t.can_connect("priv", "priv", PRIV_PORT)  # loopback traffic is allowed


def test_firewall_blocks_inbound_to_priv(world):
    t = world.topo
    assert not t.can_connect("out", "priv", PRIV_PORT, 1.0)
    assert not t.can_connect("proxy", "priv", PRIV_PORT, 1.0)
    assert t.can_connect("out", "pub", ECHO_PORT)
    assert t.can_connect("priv", "priv", PRIV_PORT)  # the server is there
    assert all(peer[0] == t.ip("priv") for peer in world.inside.peers)


# ---- squid

def test_squid_connect_with_credentials_tunnels_to_pub(world, squid):
    status, head, s = via(world, squid, "alice", "s3cret")
    assert status == 200, head
    data = os.urandom(256 * 1024)
    assert echoes(s, data)
    s.close()
    status, head, s = via(world, squid, "bob", "hunter2")
    assert status == 200, head
    assert echoes(s, b"second user")
    s.close()
    # pub saw the proxy, not priv
    assert world.echo.peers[-1][0] == world.topo.ip("proxy")


@pytest.mark.parametrize("user,password", [(None, None), ("alice", "wrong"),
                                           ("mallory", "s3cret")])
def test_squid_without_right_credentials_answers_407(world, squid, user, password):
    status, head, s = via(world, squid, user, password)
    s.close()
    assert status == 407, head
    assert "Proxy-Authenticate: Basic" in head


# ---- tinyproxy

def test_tinyproxy_connect_with_credentials_tunnels_to_pub(world, tiny):
    status, head, s = via(world, tiny, "alice", "s3cret")
    assert status == 200, head
    assert echoes(s, os.urandom(64 * 1024))
    s.close()


def test_tinyproxy_without_credentials_answers_407(world, tiny):
    status, head, s = via(world, tiny, None, None)
    s.close()
    assert status == 407, head


def test_tinyproxy_wrong_credentials_are_refused(world, tiny):
    status, head, s = via(world, tiny, "alice", "wrong")
    s.close()
    # tinyproxy 1.11.1 says 401 here (tinyproxy/tinyproxy#532, fixed upstream in #549)
    assert status in (401, 407), head


def test_tinyproxy_refuses_ports_not_in_connectport(world, tiny):
    status, head, s = via(world, tiny, "alice", "s3cret", port=ECHO_PORT + 1)
    s.close()
    assert status == 403, head


# ---- black holes

def test_blackhole_on_the_wire_stalls_then_heals(world):
    t = world.topo
    s = t.connect("out", "pub", ECHO_PORT)
    assert echoes(s, b"before")
    with t.blackhole("net", a="out", b="pub") as bh:
        assert not t.can_connect("out", "pub", ECHO_PORT, 0.5)
        s.sendall(b"during")
        assert stalls(s, 1.0), "data crossed a black-holed link"
    assert not bh.active
    # the retransmission gets through once the link is back
    assert recv_exactly(s, 6, timeout=8) == b"during"
    assert echoes(s, b"after")
    s.close()


def test_blackhole_by_port_in_host_namespace(world, squid):
    t = world.topo
    status, head, s = via(world, squid, "alice", "s3cret")
    assert status == 200, head
    assert echoes(s, b"before")
    bh = t.blackhole("priv", port=SQUID_PORT)
    try:
        s.sendall(b"during")
        assert stalls(s, 1.0)
        assert t.can_connect("out", "pub", ECHO_PORT)  # only that port is cut
    finally:
        bh.remove()
    assert recv_exactly(s, 6, timeout=8) == b"during"
    s.close()


# ---- nginx / haproxy in front of a plain-HTTP backend

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def report_backend(seen):
    """A backend handler: record (peer, request line, headers); answer a WebSocket upgrade
    with 101 (haproxy checks Sec-WebSocket-Accept) and then echo raw bytes, anything else with
    200 and the peer address as the body."""
    def handler(sock):
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = sock.recv(4096)
            if not b:
                return
            buf += b
        head = buf.decode("latin-1").split("\r\n\r\n")[0]
        lines = head.split("\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, v in
                (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        seen.append((sock.getpeername()[0], lines[0], hdrs))
        if hdrs.get("upgrade", "").lower() == "websocket":
            accept = base64.b64encode(hashlib.sha1(
                (hdrs["sec-websocket-key"] + WS_GUID).encode()).digest())
            sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                         b"\r\n\r\n")
            echo_handler(sock)
        else:
            body = sock.getpeername()[0].encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % len(body) + body)
    return handler


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    return make_cert(d, ips=("127.0.0.1",))


REVERSE = {"nginx": Nginx, "haproxy": Haproxy}


def tls_request(sock, ca, request):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # the cert names 127.0.0.1; in a namespace we dial 10.x
    s = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    s.settimeout(5)
    s.sendall(request)
    return s


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_reverse_proxy_on_loopback_forwards_client_address(tmp_path, cert, kind):
    require(kind)
    seen = []
    be = Server(report_backend(seen))
    try:
        with REVERSE[kind](tmp_path, be.port, cert[0], cert[1], source="127.0.0.9") as rp:
            raw = socket.create_connection((rp.addr, rp.port), timeout=5,
                                           source_address=("127.0.0.7", 0))
            s = tls_request(raw, cert[0], b"GET /x HTTP/1.1\r\nHost: relay.test\r\n"
                                          b"Connection: close\r\n\r\n")
            status, head = read_head(s)
            assert status == 200, head
            assert recv_exactly(s, len("127.0.0.9")) == b"127.0.0.9"
            s.close()
            peer, line, hdrs = seen[-1]
            assert peer == "127.0.0.9"  # proxy_bind / source
            assert line == "GET /x HTTP/1.1"
            assert hdrs["x-forwarded-for"] == "127.0.0.7"
            assert hdrs["x-forwarded-proto"] == "https"

            # a WebSocket upgrade passes through and then carries raw bytes both ways
            raw = socket.create_connection((rp.addr, rp.port), timeout=5)
            s = tls_request(raw, cert[0], b"GET /ws HTTP/1.1\r\nHost: relay.test\r\n"
                            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            b"Sec-WebSocket-Version: 13\r\n"
                            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            status, head = read_head(s)
            assert status == 101, head
            assert seen[-1][2]["connection"].lower() == "upgrade"
            assert echoes(s, os.urandom(100 * 1024))
            s.close()
        assert_stopped(rp)
    finally:
        be.close()


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_reverse_proxy_in_namespace(world, cert, kind):
    require(kind)
    t = world.topo
    seen = []
    be = t.server("pub", report_backend(seen), bind="127.0.0.1")
    port = {"nginx": 8443, "haproxy": 8444}[kind]
    with REVERSE[kind](world.tmp, be.port, cert[0], cert[1], topo=t, host="pub",
                       port=port) as rp:
        assert rp.addr == t.ip("pub")
        s = tls_request(t.connect("out", "pub", port), cert[0],
                        b"GET / HTTP/1.1\r\nHost: relay.test\r\nConnection: close\r\n\r\n")
        status, head = read_head(s)
        assert status == 200, head
        s.close()
    assert_stopped(rp)
    peer, _, hdrs = seen[-1]
    assert peer == "127.0.0.9"
    assert hdrs["x-forwarded-for"] == t.ip("out")
