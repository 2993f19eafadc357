"""The promise of the product on a real network: the private side opens no inbound port and
gets out only through an authenticating HTTP proxy, yet a client outside reaches its service.

               <p>-net: bridge (black-hole rules cut the wire here)
        +--------------+--------------+--------------+
   <p>-priv        <p>-proxy       <p>-pub        <p>-out
   .2 firewalled   .3 squid :3128  .4 relay :8080  .5 client
   agent, service  tinyproxy :8888     relay :8443 (wss)
   :7001

nftables in priv drops every inbound new connection and every outbound one except to the
proxies. The agent finds its proxy in the conventional variables (http_proxy for ws://,
HTTPS_PROXY for wss://), as it would on a locked-down host.
"""
import hashlib
import json
import os
import shutil
import socket
import threading
import time
from types import SimpleNamespace

import pytest

import netns
from conftest import BIN, clean_env, mint
from harness import digest_handler, echo_handler, settled_nfds as settled, wait_until
from proxies import SQUID_AUTH_HELPER, Squid, Tinyproxy, make_cert, require

netns.skip_unless_available()

SVC_PORT = 7001
WS_PORT = 8080
WSS_PORT = 8443
SQUID_PORT = 3128
TINY_PORT = 8888
HTTPS_PROXY_PORT = 3129  # haproxy terminating TLS in front of squid: an https:// proxy
# squid gets an "@" in the password (percent-encoded in the URL); tinyproxy's config only
# takes [A-Za-z0-9._-] there.
PASSWORDS = {"squid": "s3cret@pass", "tinyproxy": "s3cret.pass"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("topology")
    with netns.topology(tmp) as t:
        w = SimpleNamespace(topo=t, tmp=tmp, env=clean_env())
        w.svc = t.server("priv", digest_handler, port=SVC_PORT)
        t.firewall(SQUID_PORT, dest="proxy", host="priv",
                   also=[("proxy", TINY_PORT), ("proxy", HTTPS_PROXY_PORT)])
        cert, key, _ = make_cert(tmp, ips=(t.ip("pub"),), dns=("relay.test",))
        w.ca = cert
        w.relay = t.proc("pub", [BIN, "relay", "--listen", f"0.0.0.0:{WS_PORT}",
                                 "--ping-interval", "1s", "--ping-misses", "2"],
                         env=w.env, log_path=tmp / "relay.log")
        w.relay.wait_log("relay ready on", 10)
        w.relay_tls = t.proc("pub", [BIN, "relay", "--listen", f"0.0.0.0:{WSS_PORT}",
                                     "--tls-cert", str(cert), "--tls-key", str(key)],
                             env=w.env, log_path=tmp / "relay-tls.log")
        w.relay_tls.wait_log("relay ready on", 10)
        require("squid", SQUID_AUTH_HELPER)
        w.squid = Squid(tmp, users={"agent": PASSWORDS["squid"]}, topo=t, host="proxy", port=SQUID_PORT)
        w.tiny = None
        if shutil.which("tinyproxy"):
            w.tiny = Tinyproxy(tmp, users={"agent": PASSWORDS["tinyproxy"]}, connect_ports=[WS_PORT, WSS_PORT], topo=t,
                               host="proxy", port=TINY_PORT)
        w.https_proxy = None
        if shutil.which("haproxy"):
            w.proxy_ca, _, pem = make_cert(tmp, ips=(t.ip("proxy"),), dns=(), name="proxy")
            cfg = tmp / "haproxy-tls.cfg"
            cfg.write_text(f"""\
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend tls
    bind 0.0.0.0:{HTTPS_PROXY_PORT} ssl crt {pem}
    default_backend squid
backend squid
    server s 127.0.0.1:{SQUID_PORT}
""")
            w.https_proxy = t.proc("proxy", ["haproxy", "-db", "-f", str(cfg)],
                                   log_path=tmp / "haproxy-tls.log", name="haproxy-tls")
            t.wait_port("proxy", "proxy", HTTPS_PROXY_PORT, 10, proc=w.https_proxy)
        yield w


def proxy_url(w, kind, user="agent", password=None):
    password = password or PASSWORDS[kind]
    port = SQUID_PORT if kind == "squid" else TINY_PORT
    enc = password.replace("%", "%25").replace("@", "%40")
    return f"http://{user}:{enc}@{w.topo.ip('proxy')}:{port}"


def relay_url(w, tls):
    return (f"wss://{w.topo.ip('pub')}:{WSS_PORT}" if tls
            else f"ws://{w.topo.ip('pub')}:{WS_PORT}")


def start_agent(w, name, tls=False, env_extra=None, extra=(), wait=True, services="svc"):
    env = dict(w.env, **(env_extra or {}))
    args = [BIN, "agent", "--relay", relay_url(w, tls), "--token",
            mint(w.env, "agent", services), "--service", f"svc=tcp://127.0.0.1:{SVC_PORT}",
            "--dial-timeout", "3s", "--backoff-max", "2s", *extra]
    if tls:
        args += ["--ca", str(w.ca)]
    p = w.topo.proc("priv", args, env=env, log_path=w.tmp / f"{name}.log", name=name)
    if wait:
        p.wait_log("connected to relay", 15)
    return p


def start_connect(w, name, tls=False, extra=(), service="svc", host="out"):
    port = 9000 + (hash(name) % 900)
    args = [BIN, "connect", "--relay", relay_url(w, tls), "--token",
            mint(w.env, "client", service), service, "--listen", f"127.0.0.1:{port}",
            "--ping-interval", "1s", "--ping-misses", "2", *extra]
    if tls:
        args += ["--ca", str(w.ca)]
    p = w.topo.proc(host, args, env=w.env, log_path=w.tmp / f"{name}.log", name=name)
    p.wait_log("connected to relay", 15)
    p.port = port
    return p


def exchange_in(w, host, port, data, timeout=60):
    """Send data to 127.0.0.1:port inside host while reading the reply until EOF."""
    s = w.topo.connect(host, "127.0.0.1", port, timeout=timeout)
    got = []
    t = threading.Thread(target=lambda: got.append(_read_all(s)), daemon=True)
    t.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    t.join(timeout)
    s.close()
    assert not t.is_alive(), "reply did not end in time"
    return got[0]


def _read_all(s):
    out = []
    while True:
        b = s.recv(1 << 20)
        if not b:
            return b"".join(out)
        out.append(b)


def expect_digest(reply, data):
    assert reply.decode().split() == [hashlib.sha256(data).hexdigest(), str(len(data))]


def stats(w, port=WS_PORT):
    s = w.topo.connect("pub", "127.0.0.1", port)
    s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
    body = _read_all(s).split(b"\r\n\r\n", 1)[1]
    s.close()
    return json.loads(body)


def stop(p):
    p.stop()


def test_the_firewall_is_real(world):
    t = world.topo
    # Outside cannot reach the private service directly, nor can the private side reach the
    # relay directly; both can reach what they are allowed to.
    assert not t.can_connect("out", "priv", SVC_PORT, 1.0)
    assert not t.can_connect("priv", "pub", WS_PORT, 1.0)
    assert t.can_connect("out", "pub", WS_PORT, 2.0)
    assert t.can_connect("priv", "proxy", SQUID_PORT, 2.0)
    # An agent without its proxy does not get out.
    a = start_agent(world, "agent-direct", wait=False)
    a.wait_log("relay link down: timed out connecting to", 10)
    assert "going out through proxy" not in a.text()
    stop(a)


@pytest.mark.parametrize("kind", ["squid", "tinyproxy"])
@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_client_outside_reaches_the_private_service_through_proxy_and_relay(world, kind, tls):
    if kind == "tinyproxy" and world.tiny is None:
        pytest.skip("tinyproxy is not installed (scripts/deps.sh installs it)")
    var = "HTTPS_PROXY" if tls else "http_proxy"
    a = start_agent(world, f"agent-{kind}-{tls}", tls=tls,
                    env_extra={var: proxy_url(world, kind)})
    assert f"(from {var})" in a.text()
    c = start_connect(world, f"connect-{kind}-{tls}", tls=tls)
    data = os.urandom(8 << 20)
    expect_digest(exchange_in(world, "out", c.port, data), data)
    # The relay saw the agent come from the proxy's address, not the private host's.
    relay = world.relay_tls if tls else world.relay
    assert f"from {world.topo.ip('proxy')}:" in relay.text()
    stop(c)
    stop(a)


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_through_an_https_proxy(world, tls):
    """A proxy reached over TLS (haproxy terminating TLS in front of squid): for wss:// the
    relay's TLS runs inside the proxy's."""
    if world.https_proxy is None:
        pytest.skip("haproxy is not installed (scripts/deps.sh installs it)")
    url = proxy_url(world, "squid").replace("http://", "https://").replace(
        f":{SQUID_PORT}", f":{HTTPS_PROXY_PORT}")
    var = "HTTPS_PROXY" if tls else "HTTP_PROXY"
    a = start_agent(world, f"agent-httpsproxy-{tls}", tls=tls, env_extra={var: url},
                    extra=("--proxy-ca", str(world.proxy_ca)))
    assert "going out through proxy https://" in a.text()
    c = start_connect(world, f"connect-httpsproxy-{tls}", tls=tls)
    data = os.urandom(8 << 20)
    expect_digest(exchange_in(world, "out", c.port, data), data)
    stop(c)
    stop(a)


@pytest.mark.parametrize("kind", ["squid", "tinyproxy"])
def test_wrong_proxy_credentials_say_so(world, kind):
    if kind == "tinyproxy" and world.tiny is None:
        pytest.skip("tinyproxy is not installed (scripts/deps.sh installs it)")
    a = start_agent(world, f"agent-badcreds-{kind}",
                    env_extra={"http_proxy": proxy_url(world, kind, password="wrong")},
                    wait=False)
    a.wait_log("relay link down: ", 10)
    port = SQUID_PORT if kind == "squid" else TINY_PORT
    line = [ln for ln in a.text().splitlines() if "relay link down:" in ln][0]
    assert f"proxy {world.topo.ip('proxy')}:{port} refused the credentials (40" in line, line
    assert "check the user and password in the proxy URL" in line
    if kind == "squid":
        assert "(407 Proxy Authentication Required)" in line
    assert "wrong" not in a.text()
    stop(a)


def test_no_proxy_excludes_the_relay(world):
    a = start_agent(world, "agent-noproxy", wait=False,
                    env_extra={"http_proxy": proxy_url(world, "squid"),
                               "NO_PROXY": f"{world.topo.net}.0/24"})
    a.wait_log("relay link down: timed out connecting to", 10)
    assert "going out through proxy" not in a.text()
    stop(a)


def fds(p):
    return len(os.listdir(f"/proc/{p.pid}/fd"))


class Victim:
    """A stream kept busy (sending without pause) through a connect in host, until its socket
    is closed under it; records when that happened."""

    def __init__(self, topo, host, port):
        self.s = topo.connect(host, "127.0.0.1", port)
        self.closed_at = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        chunk = os.urandom(1 << 16)
        try:
            self.s.settimeout(30)
            while True:
                self.s.sendall(chunk)
        except OSError:
            pass
        # The send side may block on a full window: the close shows on the read side.
        try:
            while self.s.recv(65536):
                pass
        except OSError:
            pass
        self.closed_at = time.monotonic()

    def close(self):
        self.s.close()


class Survivor:
    """A stream to an echo service that keeps flowing for `seconds` (paced sends, echo read at
    the same time); ok() tells whether every byte came back, in order."""

    def __init__(self, topo, host, port, total=16 << 20, seconds=5.0):
        self.data = os.urandom(total)
        self.s = topo.connect(host, "127.0.0.1", port, timeout=60)
        self.got = hashlib.sha256()
        self.n = 0
        self.seconds = seconds
        self.tr = threading.Thread(target=self._read, daemon=True)
        self.tw = threading.Thread(target=self._write, daemon=True)
        self.tr.start()
        self.tw.start()

    def _write(self):
        step = 1 << 16
        pause = self.seconds / (len(self.data) / step)
        for i in range(0, len(self.data), step):
            self.s.sendall(self.data[i:i + step])
            time.sleep(pause)
        self.s.shutdown(socket.SHUT_WR)

    def _read(self):
        while True:
            b = self.s.recv(1 << 20)
            if not b:
                return
            self.got.update(b)
            self.n += len(b)

    def ok(self, timeout=60):
        self.tw.join(timeout)
        self.tr.join(timeout)
        self.s.close()
        return (self.n, self.got.hexdigest()) == (len(self.data),
                                                  hashlib.sha256(self.data).hexdigest())


def flowing(world, sv):
    """Wait until both streams move bytes: the survivor's echo comes back and the relay
    forwards at least another MiB (the victim's sender never pauses)."""
    b0 = stats(world)["bytes_relayed"]
    wait_until(lambda: sv.n > 0 and stats(world)["bytes_relayed"] > b0 + (1 << 20), 5,
               "both streams flowing")


def first_time(pred, timeout, what):
    """Wait until pred() holds; return the monotonic time it was first seen."""
    wait_until(pred, timeout, what, interval=0.01)
    return time.monotonic()


def test_a_black_holed_client_link_is_detected_and_every_hop_cleans_up(world):
    """The client's link goes silent mid-transfer (no FIN, no RST) while another client's
    stream keeps flowing: connect and the relay both notice within ping interval x misses, the
    client's socket and the agent's backend socket are closed, the other stream arrives
    byte-exact, nothing leaks, and everything works again once the wire heals."""
    t = world.topo
    echo = t.server("priv", echo_handler)
    a = start_agent(world, "agent-bh", env_extra={"http_proxy": proxy_url(world, "squid")},
                    extra=("--ping-interval", "1s", "--ping-misses", "2",
                           "--service", f"echo=tcp://127.0.0.1:{echo.port}"),
                    services="svc,echo")
    c = start_connect(world, "connect-bh")
    # The survivor's client sits in another namespace, on a path the rule does not cut.
    c2 = start_connect(world, "connect-bh-survivor", service="echo", host="proxy")
    base = {"relay": settled(world.relay), "agent": settled(a), "connect": settled(c),
            "connect2": settled(c2)}
    handled0 = world.svc.handled
    v = Victim(t, "out", c.port)
    sv = Survivor(t, "proxy", c2.port)
    wait_until(lambda: stats(world)["streams_active"] == 2, 5, "both streams bridged")
    flowing(world, sv)
    rule = t.blackhole(a="out", b="pub")
    t0 = time.monotonic()
    wait_until(lambda: v.closed_at is not None, 8, "the client's socket closed")
    t_relay = first_time(lambda: stats(world)["streams_active"] == 1, 8, "relay reset it")
    t_agent = first_time(lambda: world.svc.handled > handled0, 8, "agent closed the backend")
    # 2 misses x 1 s, plus up to a ping period of phase and scheduling slack.
    for what, at in (("client socket", v.closed_at), ("relay", t_relay), ("backend", t_agent)):
        assert at - t0 < 4.5, f"{what} closed {at - t0:.1f}s after the link went silent"
    c.wait_log("relay link down", 5)
    assert sv.ok(), "the stream on the other link lost bytes"
    v.close()
    rule.remove()
    c.wait_log("connected to relay", 15, count=2)
    data = os.urandom(1 << 20)
    expect_digest(exchange_in(world, "out", c.port, data), data)
    wait_until(lambda: (lambda st: st["streams_active"] == 0 and st["link_streams"] == 0)(
        stats(world)), 5, "no stream left on the relay")
    now = {"relay": world.relay, "agent": a, "connect": c, "connect2": c2}
    wait_until(lambda: {k: fds(p) for k, p in now.items()} == base, 5,
               f"fds back at {base}")
    stop(c2)
    stop(c)
    stop(a)


def test_a_black_holed_agent_link_is_detected_by_both_ends(world):
    """The agent's way out goes silent (proxy to relay) mid-transfer while another agent's
    stream keeps flowing: the relay drops the agent's link and resets the client's stream, the
    agent notices too and closes its backend socket, the other stream arrives byte-exact,
    nothing leaks, and the agent comes back through the proxy once the wire heals."""
    t = world.topo
    echo = t.server("pub", echo_handler)
    a = start_agent(world, "agent-bh2", env_extra={"http_proxy": proxy_url(world, "squid")},
                    extra=("--ping-interval", "1s", "--ping-misses", "2"))
    # A second agent, beside the relay, serving another name: its link is not cut.
    a2 = t.proc("pub", [BIN, "agent", "--relay", f"ws://127.0.0.1:{WS_PORT}", "--token",
                        mint(world.env, "agent", "echo2"), "--service",
                        f"echo2=tcp://127.0.0.1:{echo.port}"], env=world.env,
                log_path=world.tmp / "agent-bh2-other.log", name="agent-bh2-other")
    a2.wait_log("connected to relay", 10)
    c = start_connect(world, "connect-bh2")
    c2 = start_connect(world, "connect-bh2-survivor", service="echo2")
    base = {"relay": settled(world.relay), "agent2": settled(a2), "connect": settled(c),
            "connect2": settled(c2)}
    handled0 = world.svc.handled
    v = Victim(t, "out", c.port)
    sv = Survivor(t, "out", c2.port)
    wait_until(lambda: stats(world)["streams_active"] == 2, 5, "both streams bridged")
    flowing(world, sv)
    n0 = world.relay.text().count("agent link from")
    n1 = a.text().count("relay link down")
    rule = t.blackhole(a="proxy", b="pub")
    t0 = time.monotonic()
    wait_until(lambda: v.closed_at is not None, 8, "the client's socket closed")
    t_relay = first_time(lambda: world.relay.text().count("agent link from") > n0, 8,
                         "relay dropped the agent's link")
    t_agent = first_time(lambda: a.text().count("relay link down") > n1, 8,
                         "agent noticed")
    t_backend = first_time(lambda: world.svc.handled > handled0, 8, "agent closed the backend")
    for what, at in (("client socket", v.closed_at), ("relay", t_relay), ("agent", t_agent),
                     ("backend", t_backend)):
        assert at - t0 < 4.5, f"{what} closed {at - t0:.1f}s after the link went silent"
    assert sv.ok(), "the stream through the other agent lost bytes"
    v.close()
    rule.remove()
    a.wait_log("connected to relay", 15, count=2)
    data = os.urandom(1 << 20)
    expect_digest(exchange_in(world, "out", c.port, data), data)
    wait_until(lambda: (lambda st: st["streams_active"] == 0 and st["link_streams"] == 0)(
        stats(world)), 5, "no stream left on the relay")
    now = {"relay": world.relay, "agent2": a2, "connect": c, "connect2": c2}
    wait_until(lambda: {k: fds(p) for k, p in now.items()} == base, 5,
               f"fds back at {base}")
    stop(c2)
    stop(c)
    stop(a2)
    stop(a)
