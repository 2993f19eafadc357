"""HTTP services through the relay's reverse proxy, with real clients.

    curl / requests / websockets / node ws --HTTP, Host web.test.local--> relay
        --stream on the agent's link--> agent --> python HTTP backend or WebSocket backend

The relay routes by Host (--domain test.local) and by path (--route /api=api); bodies stream
both ways without being held whole; the backend's own WebSocket works end to end; failures are
short HTTP answers that do not disturb other connections."""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time

import pytest
import requests

from conftest import mint
from harness import Server, free_port, wait_until
from http_backends import HttpBackend, WsBackend

MiB = 1 << 20
DOMAIN = "test.local"
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def backend():
    b = HttpBackend()
    yield b
    b.close()


@pytest.fixture
def wsb():
    b = WsBackend()
    yield b
    b.close()


@pytest.fixture
def web(stack, backend):
    """Relay with --domain, an agent serving web (http), api (http, by path) and raw (tcp)."""
    stack.start_relay("--domain", DOMAIN, "--route", "/api=api", "--upstream-timeout", "1s",
                      "--keepalive-timeout", "5s")
    stack.start_agent([f"web=http://127.0.0.1:{backend.port}",
                       f"api=http://127.0.0.1:{backend.port}",
                       f"raw=tcp://127.0.0.1:{backend.port}"])
    return stack


def session(stack):
    """A requests session whose every request goes to the relay whatever the URL's host."""
    s = requests.Session()
    s.trust_env = False
    return s


def url(stack, host, path):
    return f"http://127.0.0.1:{stack.relay_port}{path}", {"Host": f"{host}:{stack.relay_port}"}


def get(stack, host, path, **kw):
    u, h = url(stack, host, path)
    h.update(kw.pop("headers", {}))
    with session(stack) as s:
        return s.get(u, headers=h, timeout=10, **kw)


def raw_request(port, data, timeout=10):
    """Send bytes, read until EOF (the relay closes after an error answer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    finally:
        s.close()


def curl(*args, timeout=60):
    out = subprocess.run(["curl", "-sS", "--noproxy", "*", *args], capture_output=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


# ---- requests and curl ----

def test_get_and_forwarded_headers(web, backend):
    r = get(web, f"web.{DOMAIN}", "/echo-headers?x=1",
            headers={"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6",
                     "X-Forwarded-Proto": "gopher"})
    assert r.status_code == 200, r.text
    seen = r.json()
    h = seen["headers"]
    assert seen["path"] == "/echo-headers?x=1"
    # A client that is not a trusted proxy cannot claim an address or a scheme.
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == f"web.{DOMAIN}:{web.relay_port}"
    assert h["host"] == f"web.{DOMAIN}:{web.relay_port}"
    assert [k for k, _ in seen["all"]].count("x-forwarded-for") == 1
    # curl, by name resolution as a user would do it.
    body = curl("--resolve", f"web.{DOMAIN}:{web.relay_port}:127.0.0.1",
                f"http://web.{DOMAIN}:{web.relay_port}/hello")
    assert body == b"hello from the backend\n"
    # HEAD: headers with the length, no body (the relay must not wait for one).
    r = session(web).head(*url(web, f"web.{DOMAIN}", "/hello")[:1],
                          headers=url(web, f"web.{DOMAIN}", "/")[1], timeout=10)
    assert r.status_code == 200 and r.headers["Content-Length"] == "23" and r.content == b""


def test_trusted_proxy_appends(stack, backend):
    stack.start_relay("--domain", DOMAIN, "--trusted-proxy", "127.0.0.1",
                      "--real-ip-header", "X-Client-Address")
    stack.start_agent([f"web=http://127.0.0.1:{backend.port}"])
    r = get(stack, f"web.{DOMAIN}", "/echo-headers",
            headers={"X-Forwarded-For": "203.0.113.7, 10.1.2.3", "X-Forwarded-Proto": "https",
                     "X-Forwarded-Host": "www.example.com"})
    h = r.json()["headers"]
    # The chain goes on: what the trusted proxy sent, then the proxy itself.
    assert h["x-forwarded-for"] == "203.0.113.7, 10.1.2.3, 127.0.0.1"
    assert h["x-forwarded-proto"] == "https"
    assert h["x-forwarded-host"] == "www.example.com"
    assert h["x-client-address"] == "10.1.2.3"  # the right-most untrusted entry
    assert "x-real-ip" not in h


def test_post_50mib_streamed(web, backend):
    """50 MiB up, chunked (requests with a generator) and with Content-Length (curl); the
    relay's memory shows nothing was held whole."""
    data = os.urandom(MiB)
    digest = hashlib.sha256(data * 50).hexdigest()

    def gen():
        for _ in range(50):
            yield data
    u, h = url(web, f"web.{DOMAIN}", "/upload")
    with session(web) as s:
        r = s.post(u, data=gen(), headers=h, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json() == {"sha256": digest, "len": 50 * MiB}
    assert backend.requests[-1]["headers"]["transfer-encoding"] == "chunked"
    path = web.tmp / "upload.bin"
    with open(path, "wb") as f:
        for _ in range(50):
            f.write(data)
    out = json.loads(curl("--resolve", f"web.{DOMAIN}:{web.relay_port}:127.0.0.1",
                          "--data-binary", f"@{path}", "-H", "Expect: 100-continue",
                          f"http://web.{DOMAIN}:{web.relay_port}/upload", timeout=120))
    assert out == {"sha256": digest, "len": 50 * MiB}
    assert backend.requests[-1]["headers"]["content-length"] == str(50 * MiB)
    assert backend.requests[-1]["headers"]["expect"] == "100-continue"
    hwm = int(open(f"/proc/{web.relay_proc.pid}/status").read().split("VmHWM:")[1].split()[0])
    assert hwm < 40 * 1024, f"relay peak RSS {hwm} KiB: bodies are being buffered"


def test_chunked_response_and_sse(web, backend):
    r = get(web, f"web.{DOMAIN}", "/chunked")
    assert r.status_code == 200
    assert r.text == "".join(f"line {i}\n" for i in range(100))
    # SSE: each event reaches us before the backend sends the next one.
    u, h = url(web, f"web.{DOMAIN}", "/sse")
    with session(web) as s, s.get(u, headers=h, stream=True, timeout=10) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        got = []
        for line in r.iter_lines(chunk_size=1):
            if line:
                got.append(line.decode())
                backend.sse_gate[len(got) - 1].set()
            if len(got) == 3:
                break
    assert got == ["data: event 0", "data: event 1", "data: event 2"]


def test_keepalive_reuse(web, backend):
    """Twenty requests on one client connection: one stream, one backend connection."""
    u, h = url(web, f"web.{DOMAIN}", "/hello")
    before = len(backend.conns)
    with session(web) as s:
        for _ in range(20):
            r = s.get(u, headers=h, timeout=10)
            assert r.status_code == 200 and r.text == "hello from the backend\n"
        big = s.get(url(web, f"web.{DOMAIN}", "/big")[0], headers=h, timeout=30)
        assert len(big.content) == 8 << 20
        r = s.post(url(web, f"web.{DOMAIN}", "/upload")[0], data=b"x" * 1000, headers=h,
                   timeout=10)
        assert r.json()["len"] == 1000
    assert len(backend.conns) - before == 1
    assert web.stats()["http_proxied"] >= 22
    # Pipelined on a raw socket: three requests at once, three answers in order.
    reqs = b"".join(b"GET /echo-headers?n=%d HTTP/1.1\r\nHost: web.%s\r\n\r\n" % (i, DOMAIN.encode())
                    for i in range(3))
    out = raw_request(web.relay_port, reqs + b"GET /hello HTTP/1.1\r\nHost: web." +
                      DOMAIN.encode() + b"\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 4
    assert out.index(b"n=0") < out.index(b"n=1") < out.index(b"n=2")
    assert out.endswith(b"hello from the backend\n")


def test_route_by_path_and_host(web, backend):
    r = get(web, "anything.example", "/api/v1/items")
    assert r.status_code == 200 and r.json()["path"] == "/api/v1/items"
    r = get(web, "anything.example", "/apix")  # not a segment match: the relay's own 404
    assert r.status_code == 404
    # tcp services are not reachable through the reverse proxy.
    r = get(web, f"raw.{DOMAIN}", "/")
    assert r.status_code == 404 and "not an http service" in r.text
    # The relay's own endpoints still answer on its own name.
    r = get(web, "127.0.0.1", "/healthz")
    assert r.status_code == 200


def test_catch_all_route_keeps_relay_endpoints(stack, backend):
    """--route /=web sends every path to web, but agents, clients and /healthz still reach
    the relay (a catch-all route for any host never takes the relay's own endpoints)."""
    stack.start_relay("--route", "/=web")
    stack.start_agent([f"web=http://127.0.0.1:{backend.port}"])
    r = get(stack, "whatever", "/some/page")
    assert r.status_code == 200 and r.text == "hello from the backend\n"
    assert get(stack, "whatever", "/healthz").text == "ok\n"
    assert stack.stats()["agents"] == 1


# ---- errors ----

def test_error_statuses(stack, backend):
    stack.start_relay("--domain", DOMAIN, "--upstream-timeout", "1s", "--max-head", "4k")
    closed = free_port()
    agent = stack.start_agent([f"web=http://127.0.0.1:{backend.port}",
                               f"gone=http://127.0.0.1:{closed}"])
    # An SSE stream stays open through all of the errors below and still works afterwards.
    u, h = url(stack, f"web.{DOMAIN}", "/sse")
    s = session(stack)
    sse = s.get(u, headers=h, stream=True, timeout=10)
    lines = sse.iter_lines(chunk_size=1)
    assert next(lines) == b"data: event 0"

    r = get(stack, f"nope.{DOMAIN}", "/")
    assert r.status_code == 404 and "no such service 'nope'" in r.text
    r = get(stack, f"gone.{DOMAIN}", "/")
    assert r.status_code == 502 and "refused" in r.text.lower(), r.text
    t0 = time.monotonic()
    r = get(stack, f"web.{DOMAIN}", "/slow")
    assert r.status_code == 504 and "did not answer within 1s" in r.text
    assert 0.9 < time.monotonic() - t0 < 5
    backend.slow_gate.set()
    out = raw_request(stack.relay_port, b"GET / HTTP/1.1\r\nHost: web." + DOMAIN.encode() +
                      b"\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out
    out = raw_request(stack.relay_port, b"GET / HTTP/1.1\r\nHost: web." + DOMAIN.encode() +
                      b"\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 "), out
    # A malformed request after a good one on the same connection: the good one is answered,
    # then the 400.
    out = raw_request(stack.relay_port, b"GET /hello HTTP/1.1\r\nHost: web." + DOMAIN.encode() +
                      b"\r\n\r\nGET / HTTP/1.1\r\nHost: web." + DOMAIN.encode() +
                      b"\r\nBad Header: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 400 " in out, out

    backend.sse_gate[0].set()
    assert next(lines) == b""
    assert next(lines) == b"data: event 1"
    backend.sse_gate[1].set()
    sse.close()
    s.close()

    # No agent online for a service the relay has seen: 503 with Retry-After.
    agent.stop()
    wait_until(lambda: stack.stats()["agents"] == 0, 5, "agent gone")
    r = get(stack, f"web.{DOMAIN}", "/hello")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert "no agent online for service 'web'" in r.text
    stack.wait_streams(0, 0)


def test_protect(stack, backend):
    stack.start_relay("--domain", DOMAIN)
    stack.start_agent([f"web=http://127.0.0.1:{backend.port}",
                       f"open=http://127.0.0.1:{backend.port}"], "--protect", "web")
    r = get(stack, f"open.{DOMAIN}", "/echo-headers")
    assert r.status_code == 200
    r = get(stack, f"web.{DOMAIN}", "/echo-headers")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    wrong = mint(stack.env, "client", "open")
    r = get(stack, f"web.{DOMAIN}", "/echo-headers", headers={"Authorization": f"Bearer {wrong}"})
    assert r.status_code == 401
    tok = mint(stack.env, "client", "web")
    r = get(stack, f"web.{DOMAIN}", "/echo-headers", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200
    assert "authorization" not in r.json()["headers"]  # our token is not passed on
    # A browser: ?underpass_token= once, then the cookie.
    r = get(stack, f"web.{DOMAIN}", f"/echo-headers?a=1&underpass_token={tok}",
            allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/echo-headers?a=1"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"underpass_token={tok};") and "HttpOnly" in cookie
    r = get(stack, f"web.{DOMAIN}", "/echo-headers", headers={"Cookie": f"underpass_token={tok}"})
    assert r.status_code == 200


# ---- the backend's own WebSocket ----

def test_websocket_passthrough_python(stack, wsb):
    from websockets.sync.client import connect
    from websockets.exceptions import ConnectionClosed
    stack.start_relay("--domain", DOMAIN)
    stack.start_agent([f"chat=http://127.0.0.1:{wsb.port}"])
    sock = socket.create_connection(("127.0.0.1", stack.relay_port), timeout=10)
    with connect(f"ws://chat.{DOMAIN}:{stack.relay_port}/room", sock=sock,
                 subprotocols=["chat.v1", "chat.v2"], compression="deflate", proxy=None,
                 open_timeout=10, max_size=None) as ws:
        assert ws.subprotocol == "chat.v2"
        ws.send("hello ✓")
        assert ws.recv(timeout=10) == "hello ✓"
        blob = os.urandom(3 * MiB)
        ws.send(blob)
        assert ws.recv(timeout=30) == blob
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=10)
        assert e.value.rcvd.code == 4001 and e.value.rcvd.reason == "see you"
    seen = wsb.seen[-1]
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert "permessage-deflate" in seen["headers"].get("sec-websocket-extensions", "")


def node_ws_dir():
    d = os.path.join(HERE, "node")
    return d if os.path.isdir(os.path.join(d, "node_modules", "ws")) else None


@pytest.mark.skipif(not shutil.which("node") or not node_ws_dir(),
                    reason="node and the ws module (scripts/deps.sh) are needed")
def test_websocket_passthrough_node(stack, wsb):
    stack.start_relay("--domain", DOMAIN)
    stack.start_agent([f"chat=http://127.0.0.1:{wsb.port}"])
    out = subprocess.run(["node", os.path.join(HERE, "node", "ws_client.js"),
                          f"ws://127.0.0.1:{stack.relay_port}/room", f"chat.{DOMAIN}"],
                         capture_output=True, text=True, timeout=30, cwd=node_ws_dir())
    assert out.returncode == 0, out.stdout + out.stderr
    res = json.loads(out.stdout)
    assert res == {"protocol": "chat.v2", "text": "hi from node", "binary": list(range(256)),
                   "code": 4001, "reason": "see you"}


def test_limits_keepalive_and_backend_head(stack, backend):
    """An idle client connection is closed after --keepalive-timeout; a backend whose response
    head is larger than --max-head gets the client a 502."""
    big = Server(lambda sock: (sock.recv(65536),
                               sock.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 6000 +
                                            b"\r\nContent-Length: 0\r\n\r\n")))
    try:
        stack.start_relay("--domain", DOMAIN, "--keepalive-timeout", "1s", "--max-head", "4k")
        stack.start_agent([f"web=http://127.0.0.1:{backend.port}",
                           f"big=http://127.0.0.1:{big.port}"])
        s = socket.create_connection(("127.0.0.1", stack.relay_port), timeout=10)
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: web." + DOMAIN.encode() + b"\r\n\r\n")
        got = b""
        while not got.endswith(b"hello from the backend\n"):
            got += s.recv(65536)
        t0 = time.monotonic()
        assert s.recv(1) == b""  # closed by the relay, not by us
        assert 0.8 < time.monotonic() - t0 < 4
        s.close()
        out = raw_request(stack.relay_port, b"GET / HTTP/1.1\r\nHost: big." + DOMAIN.encode() +
                          b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 502 ") and b"too large" in out, out
    finally:
        big.close()
