"""Going out through HTTP proxies, on loopback: CONNECT with and without credentials, wss
inside the tunnel, an https:// proxy, and the one-line errors a user gets when the way out is
blocked (407, 403, nothing listening, a proxy that speaks TLS, an intercepting proxy, a
captive portal, a proxy that strips Upgrade).

Real squid and tinyproxy are used where they can give the answer; a small proxy written here
stands in where we need an answer they would not give (a 403 on demand, TLS garbage, a
captive portal). The namespace topology test (test_topology.py) repeats the main path with a
real firewall."""
import base64
import hashlib
import os
import socket
import ssl
import subprocess
import threading

import pytest

from conftest import BIN, mint
from harness import Proc, Server, digest_handler, echo_handler, exchange, free_port, wait_until


def _read_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = sock.recv(4096)
        if not b:
            return None, b""
        buf += b
        if len(buf) > 65536:
            return None, b""
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def _pipe(a, b):
    def one(src, dst):
        try:
            while True:
                d = src.recv(1 << 16)
                if not d:
                    break
                dst.sendall(d)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=one, args=(b, a), daemon=True)
    t.start()
    one(a, b)
    t.join(30)


class FakeProxy:
    """A CONNECT proxy for answers real proxies will not give on demand.

    mode "tunnel": a working CONNECT proxy (Basic auth checked when user is set), counting
    the CONNECTs it served; "status": answer every CONNECT with `status`; "tls": answer with
    TLS-looking bytes; "tls_tunnel": a working proxy reached over TLS (an https:// proxy)."""

    def __init__(self, mode="tunnel", status="403 Forbidden", user=None, password=None,
                 tls=None):
        self.mode, self.status, self.user, self.password = mode, status, user, password
        self.connects = []
        self.tls_ctx = None
        if tls:
            self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self.srv = Server(self.handle)
        self.port = self.srv.port

    def handle(self, sock):
        if self.tls_ctx:
            sock = self.tls_ctx.wrap_socket(sock, server_side=True)
        head, rest = _read_head(sock)
        if head is None:
            return
        line = head.split("\r\n")[0]
        if self.mode == "tls":
            sock.sendall(b"\x15\x03\x03\x00\x02\x02\x28")
            return
        if self.mode == "status":
            sock.sendall(f"HTTP/1.1 {self.status}\r\nContent-Length: 0\r\n\r\n".encode())
            return
        method, target, _ = line.split(" ", 2)
        assert method == "CONNECT"
        if self.user is not None:
            want = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            auth = [h.split(":", 1)[1].strip() for h in head.split("\r\n")[1:]
                    if h.lower().startswith("proxy-authorization:")]
            if auth != [want]:
                sock.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n")
                return
        host, port = target.rsplit(":", 1)
        self.connects.append(target)
        up = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        up.settimeout(None)
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            up.sendall(rest)
        _pipe(sock, up)
        up.close()

    def close(self):
        self.srv.close()


@pytest.fixture
def fakes():
    made = []
    yield made
    for f in made:
        f.close()


def agent_args(stack, svc_port, *extra, token=None):
    token = token or mint(stack.env, "agent", "echo")
    return [BIN, "agent", "--relay", stack.relay_url, "--token", token, *stack.tls_args(),
            "--service", f"echo=tcp://127.0.0.1:{svc_port}", *extra]


def start_agent(stack, svc_port, *extra, name="agent", wait="connected to relay"):
    p = Proc(agent_args(stack, svc_port, *extra), stack.env, stack.tmp / f"{name}.log")
    stack.procs.append(p)
    if wait:
        p.wait_log(wait, 10)
    return p


def test_agent_and_connect_through_a_connect_proxy_with_credentials(stack, fakes):
    svc = Server(digest_handler)
    stack.start_relay()
    px = FakeProxy(user="al ice", password="p@ss:w%rd")
    fakes.append(px)
    # Credentials are percent-encoded in the URL and decoded before Basic auth.
    url = f"http://al%20ice:p%40ss%3Aw%25rd@127.0.0.1:{px.port}"
    a = start_agent(stack, svc.port, "--proxy", url)
    assert "going out through proxy http://127.0.0.1:" in a.text()
    assert "p@ss" not in a.text() and "w%25rd" not in a.text()
    c = stack.start_connect("echo", "--proxy", url)
    data = os.urandom(4 << 20)
    reply = exchange(c.port, data)
    assert reply.decode().split() == [hashlib.sha256(data).hexdigest(), str(len(data))]
    assert px.connects.count(f"127.0.0.1:{stack.relay_port}") == 2
    svc.close()


def test_wss_inside_the_tunnel_checks_the_relays_name(stack, tls_files, fakes):
    svc = Server(echo_handler)
    stack.start_relay(tls=tls_files)
    px = FakeProxy()
    fakes.append(px)
    start_agent(stack, svc.port, "--proxy", f"http://127.0.0.1:{px.port}")
    c = stack.start_connect("echo", "--proxy", f"http://127.0.0.1:{px.port}")
    data = os.urandom(1 << 20)
    assert exchange(c.port, data) == data
    svc.close()


def test_https_proxy_with_wss_relay_is_tls_inside_tls(stack, tls_files, fakes):
    svc = Server(echo_handler)
    stack.start_relay(tls=tls_files)
    px = FakeProxy(tls=tls_files)
    fakes.append(px)
    url = f"https://127.0.0.1:{px.port}"
    ca = str(tls_files[0])
    start_agent(stack, svc.port, "--proxy", url, "--proxy-ca", ca)
    c = stack.start_connect("echo", "--proxy", url, "--proxy-ca", ca)
    data = os.urandom(2 << 20)
    assert exchange(c.port, data) == data
    assert len(px.connects) == 2
    svc.close()


def test_https_proxy_with_plain_ws_relay(stack, tls_files, fakes):
    svc = Server(echo_handler)
    stack.start_relay()
    px = FakeProxy(tls=tls_files)
    fakes.append(px)
    url = f"https://127.0.0.1:{px.port}"
    start_agent(stack, svc.port, "--proxy", url, "--proxy-ca", str(tls_files[0]))
    c = stack.start_connect("echo", "--proxy", url, "--proxy-ca", str(tls_files[0]))
    data = os.urandom(1 << 20)
    assert exchange(c.port, data) == data
    svc.close()


@pytest.mark.parametrize("proxy_kw,url_creds,expect", [
    ({"user": "u", "password": "right"}, "u:wrong@",
     "refused the credentials (407 Proxy Authentication Required)"),
    ({"user": "u", "password": "right"}, "",
     "requires authentication (407 Proxy Authentication Required): put them in the proxy URL"),
    ({"mode": "status", "status": "403 Forbidden"}, "",
     "(403 Forbidden): its policy does not allow this destination or port"),
    ({"mode": "status", "status": "502 Bad Gateway"}, "", "could not connect to 127.0.0.1:"),
    ({"mode": "tls"}, "", "it speaks TLS: use https:// in the proxy URL"),
])
def test_proxy_failures_are_one_clear_line(stack, fakes, proxy_kw, url_creds, expect):
    stack.start_relay()
    px = FakeProxy(**proxy_kw)
    fakes.append(px)
    a = start_agent(stack, 1, "--proxy", f"http://{url_creds}127.0.0.1:{px.port}", wait=None)
    a.wait_log("relay link down: ", 10)
    line = [ln for ln in a.text().splitlines() if "relay link down:" in ln][0]
    assert f"proxy 127.0.0.1:{px.port}" in line and expect in line, line
    assert "wrong" not in line and "right" not in line


def test_proxy_not_listening(stack):
    stack.start_relay()
    dead = free_port()
    a = start_agent(stack, 1, "--proxy", f"http://127.0.0.1:{dead}", wait=None)
    a.wait_log("relay link down: ", 10)
    assert (f"cannot connect to proxy 127.0.0.1:{dead}: Connection refused "
            "(is the proxy running and reachable?)") in a.text()


def test_connect_stdio_reports_a_proxy_refusal(stack, env, fakes):
    stack.start_relay()
    px = FakeProxy(user="u", password="p")
    fakes.append(px)
    tok = mint(env, "client", "echo")
    r = subprocess.run([BIN, "connect", "--relay", stack.relay_url, "--token", tok, "echo",
                        "--stdio", "--proxy", f"http://127.0.0.1:{px.port}"],
                       env=env, capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert "requires authentication (407" in r.stderr, r.stderr


def test_intercepting_proxy_is_named_when_the_relay_certificate_is_foreign(stack, tls_files,
                                                                           tmp, fakes):
    # The relay's certificate comes from a CA the agent does not trust: what a TLS-inspecting
    # proxy looks like from the inside.
    other = tmp / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=Some Other CA", "-keyout", str(tmp / "other.key"), "-out", str(other)],
                   check=True, capture_output=True, timeout=30)
    stack.start_relay(tls=tls_files)
    stack.ca = other
    px = FakeProxy()
    fakes.append(px)
    a = start_agent(stack, 1, "--proxy", f"http://127.0.0.1:{px.port}", wait=None)
    a.wait_log("relay link down: ", 10)
    line = [ln for ln in a.text().splitlines() if "relay link down:" in ln][0]
    assert "is not trusted: certificate verification failed" in line, line
    assert "issued by CN = 127.0.0.1" in line or "issued by CN=127.0.0.1" in line, line
    assert "intercepting, TLS-inspecting proxy may be in the way" in line, line


def test_captive_portal_answer_is_shown(stack, env):
    def portal(sock):
        _read_head(sock)
        body = b"<html><title>Welcome to Hotel WiFi</title></html>"
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)

    srv = Server(portal)
    tok = mint(env, "agent", "echo")
    a = Proc([BIN, "agent", "--relay", f"ws://127.0.0.1:{srv.port}", "--token", tok,
              "--service", "echo=tcp://127.0.0.1:1"], env, stack.tmp / "agent.log")
    stack.procs.append(a)
    a.wait_log("relay link down: ", 10)
    assert ("relay answered 200 OK without upgrading to WebSocket: a captive portal or a proxy "
            "that strips Upgrade may be in the way; first bytes: \"<html><title>Welcome"
            ) in a.text(), a.text()
    srv.close()


def test_a_front_proxy_that_strips_upgrade_is_suspected(stack, env):
    stack.start_relay()
    relay_port = stack.relay_port

    def stripper(sock):
        head, rest = _read_head(sock)
        lines = [ln for ln in head.split("\r\n")
                 if not ln.lower().startswith(("upgrade:", "connection:"))]
        up = socket.create_connection(("127.0.0.1", relay_port), timeout=10)
        up.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + rest)
        _pipe(sock, up)
        up.close()

    front = Server(stripper)
    tok = mint(env, "agent", "echo")
    a = Proc([BIN, "agent", "--relay", f"ws://127.0.0.1:{front.port}", "--token", tok,
              "--service", "echo=tcp://127.0.0.1:1"], env, stack.tmp / "agent.log")
    stack.procs.append(a)
    a.wait_log("relay link down: ", 10)
    assert "relay refused the upgrade: 400 Bad Request: ws: no Upgrade: websocket" in a.text()
    assert "(a proxy on the way may strip the Upgrade header)" in a.text()
    front.close()


def test_bad_proxy_settings_are_refused_at_start(env):
    for args, msg in [
        (["--proxy", "socks5://127.0.0.1:1080"], "socks5"),
        (["--proxy", "http://127.0.0.1:99999"], "--proxy"),
        (["--proxy-ca", "/nonexistent"], "no proxy is in use"),
    ]:
        r = subprocess.run([BIN, "agent", "--relay", "ws://127.0.0.1:9", "--token", "t",
                            "--service", "a=tcp://127.0.0.1:1", *args], env=env,
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)
    e = dict(env, HTTP_PROXY="ftp://nope")
    r = subprocess.run([BIN, "agent", "--relay", "ws://relay.invalid:9", "--token", "t",
                        "--service", "a=tcp://127.0.0.1:1"], env=e, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and "HTTP_PROXY" in r.stderr, r.stderr


def test_env_proxy_is_used_and_no_proxy_and_none_bypass_it(stack, fakes):
    """http_proxy applies to a ws:// relay named by host; NO_PROXY and --proxy none bypass
    it. The relay is reached as "localhost" here, which env proxies skip (loopback is never
    behind a proxy), so these checks use the explicit flag plus NO_PROXY."""
    svc = Server(echo_handler)
    stack.start_relay()
    px = FakeProxy()
    fakes.append(px)
    env = dict(stack.env, NO_PROXY="127.0.0.1")
    a = Proc(agent_args(stack, svc.port, "--proxy", f"http://127.0.0.1:{px.port}"), env,
             stack.tmp / "a1.log")
    stack.procs.append(a)
    a.wait_log("connected to relay", 10)
    assert px.connects == []
    # An env proxy pointing nowhere is not used for a loopback relay.
    env = dict(stack.env, http_proxy=f"http://127.0.0.1:{free_port()}")
    b = Proc(agent_args(stack, svc.port), env, stack.tmp / "a2.log")
    stack.procs.append(b)
    b.wait_log("connected to relay", 10)
    assert "going out through proxy" not in b.text()
    svc.close()
