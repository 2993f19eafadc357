"""Browsers' WebSockets on the relay, with python websockets as the browser:

    websockets --ws /s/<service> (token: Bearer, ?token=, or Sec-WebSocket-Protocol)--> relay
        --stream--> agent --> tcp echo / digest backend
    websockets --ws /pair/<token>--> relay <--ws /pair/<token>?side=host-- websockets (host)

and the pairing rules: minted by an admin over POST /api/pairings, single use per side,
expiry (a waiting side is closed), data before pairing refused, either side closing closes
the other."""
import hashlib
import os
import socket
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import mint
from harness import Server, echo_handler, wait_until

MiB = 1 << 20


def ws(stack, path, **kw):
    kw.setdefault("open_timeout", 10)
    kw.setdefault("max_size", None)
    return connect(f"ws://127.0.0.1:{stack.relay_port}{path}", proxy=None, **kw)


@pytest.fixture
def echo():
    s = Server(echo_handler)
    yield s
    s.close()


@pytest.fixture
def s_stack(stack, echo):
    stack.start_relay()
    stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"])
    return stack


def status_of(fn):
    with pytest.raises(InvalidStatus) as e:
        fn()
    return e.value.response.status_code, e.value.response.body.decode(errors="replace")


# ---- /s/<service> ----

def test_s_token_forms_and_echo(s_stack):
    tok = mint(s_stack.env, "client", "echo")
    data = os.urandom(2 * MiB)
    for kw, path in (({"additional_headers": {"Authorization": f"Bearer {tok}"}}, "/s/echo"),
                     ({}, f"/s/echo?token={tok}"),
                     ({"subprotocols": ["binary", f"bearer.{tok}"]}, "/s/echo")):
        with ws(s_stack, path, **kw) as c:
            if "subprotocols" in kw:
                assert c.subprotocol == "binary"  # websockify's; the token is not echoed
            c.send(data)
            got = b""
            while len(got) < len(data):
                got += c.recv(timeout=20)
            assert got == data
            c.send("text is bytes too")
            assert c.recv(timeout=10) == b"text is bytes too"
    s_stack.wait_streams(0, 0)
    # The token never reaches the logs.
    assert tok not in s_stack.relay_proc.text()


def test_s_refusals(s_stack, echo):
    other = mint(s_stack.env, "client", "other")
    agent = mint(s_stack.env, "agent", "echo")
    assert status_of(lambda: ws(s_stack, "/s/echo"))[0] == 401
    assert status_of(lambda: ws(s_stack, "/s/echo?token=garbage"))[0] == 401
    assert status_of(lambda: ws(s_stack, f"/s/echo?token={other}"))[0] == 403
    assert status_of(lambda: ws(s_stack, f"/s/echo?token={agent}"))[0] == 403
    tok = mint(s_stack.env, "client", "*")
    code, body = status_of(lambda: ws(s_stack, f"/s/nothing?token={tok}"))
    assert code == 404 and "no such service" in body


def hello_handler(sock):
    sock.sendall(b"hello, then goodbye\n")
    sock.shutdown(socket.SHUT_WR)
    sock.recv(1)


def test_s_backend_closes(stack):
    """The service ends the connection: the browser gets its bytes, then a close frame
    (1000); a refused backend gives 1014 with the reason."""
    hello = Server(hello_handler)
    try:
        stack.start_relay()
        stack.start_agent([f"hello=tcp://127.0.0.1:{hello.port}", "dead=tcp://127.0.0.1:1"])
        tok = mint(stack.env, "client", "hello,dead")
        with ws(stack, f"/s/hello?token={tok}") as c:
            assert c.recv(timeout=10) == b"hello, then goodbye\n"
            with pytest.raises(ConnectionClosed) as e:
                c.recv(timeout=10)
            assert e.value.rcvd.code == 1000
        with ws(stack, f"/s/dead?token={tok}") as c:
            with pytest.raises(ConnectionClosed) as e:
                c.recv(timeout=10)
            assert e.value.rcvd.code == 1014 and "refused" in e.value.rcvd.reason
    finally:
        hello.close()
    stack.wait_streams(0, 0)


# ---- pairing ----

def api(stack, token, body=None, timeout=10):
    return requests.post(f"http://127.0.0.1:{stack.relay_port}/api/pairings", json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=timeout,
                         proxies={"http": None, "https": None})


@pytest.fixture
def admin(stack):
    return mint(stack.env, "admin", "*")


def test_pairing_rendezvous(stack, admin):
    stack.start_relay()
    r = api(stack, admin)
    assert r.status_code == 201, r.text
    p = r.json()
    tok = p["token"]
    assert len(tok) >= 22 and p["expires_in"] == 60
    assert p["url"] == f"ws://127.0.0.1:{stack.relay_port}/pair/{tok}"
    assert p["host_url"] == p["url"] + "?side=host"
    assert stack.stats()["pairings_waiting"] == 1
    with ws(stack, f"/pair/{tok}?side=host") as host:
        with pytest.raises(TimeoutError):
            host.recv(timeout=0.3)  # nothing until the browser comes
        with ws(stack, f"/pair/{tok}") as browser:
            assert host.recv(timeout=10) == "paired"
            assert browser.recv(timeout=10) == "paired"
            up, down = os.urandom(3 * MiB), os.urandom(3 * MiB)
            host.send(down)
            browser.send(up)
            got_b = got_h = b""
            while len(got_b) < len(down):
                got_b += browser.recv(timeout=20)
            while len(got_h) < len(up):
                got_h += host.recv(timeout=20)
            assert hashlib.sha256(got_b).digest() == hashlib.sha256(down).digest()
            assert hashlib.sha256(got_h).digest() == hashlib.sha256(up).digest()
            # Second use of either side fails.
            assert status_of(lambda: ws(stack, f"/pair/{tok}"))[0] == 409
            assert status_of(lambda: ws(stack, f"/pair/{tok}?side=host"))[0] == 409
            browser.close()
        # Either side closing closes the other.
        with pytest.raises(ConnectionClosed) as e:
            host.recv(timeout=10)
        assert e.value.rcvd.code == 1000


def test_pairing_refusals(stack, admin):
    stack.start_relay()
    assert api(stack, mint(stack.env, "client", "*")).status_code == 403
    assert api(stack, "nonsense").status_code == 401
    assert api(stack, admin, {"ttl": 0}).status_code == 400
    assert api(stack, admin, {"service": "nope"}).status_code == 404  # no agent serves it
    assert requests.get(f"http://127.0.0.1:{stack.relay_port}/api/pairings",
                        timeout=10).status_code == 405
    assert status_of(lambda: ws(stack, "/pair/" + "A" * 32))[0] == 404
    big = requests.post(f"http://127.0.0.1:{stack.relay_port}/api/pairings",
                        data=b"{" + b" " * 9000 + b"}", timeout=10,
                        headers={"Authorization": f"Bearer {admin}"},
                        proxies={"http": None, "https": None})
    assert big.status_code == 413
    assert api(stack, admin, {"ttl": "soon"}).status_code == 400
    # Data before pairing is refused.
    tok = api(stack, admin).json()["token"]
    with ws(stack, f"/pair/{tok}?side=host") as host:
        host.send(b"too early")
        with pytest.raises(ConnectionClosed) as e:
            host.recv(timeout=10)
        assert e.value.rcvd.code == 1008 and e.value.rcvd.reason == "data before pairing"


def test_pairing_expiry(stack, admin):
    stack.start_relay()
    # Never used: gone after its lifetime.
    t1 = api(stack, admin, {"ttl": 1}).json()["token"]
    # Half used: the waiting side is closed at expiry.
    t2 = api(stack, admin, {"ttl": 1}).json()["token"]
    t0 = time.monotonic()
    with ws(stack, f"/pair/{t2}?side=host") as host:
        with pytest.raises(ConnectionClosed) as e:
            host.recv(timeout=10)
        assert e.value.rcvd.code == 1008 and e.value.rcvd.reason == "pairing expired"
    assert 0.9 < time.monotonic() - t0 < 3
    wait_until(lambda: time.monotonic() - t0 > 1.3, 5)
    for t in (t1, t2):
        code, body = status_of(lambda: ws(stack, f"/pair/{t}"))
        assert code in (404, 410) and ("expired" in body)


def test_pairing_service(stack, admin, echo):
    stack.start_relay()
    stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"])
    p = api(stack, admin, {"service": "echo", "ttl": 30}).json()
    assert p["service"] == "echo" and "host_url" not in p
    assert status_of(lambda: ws(stack, f"/pair/{p['token']}?side=host"))[0] == 400
    with ws(stack, f"/pair/{p['token']}") as b:
        assert b.recv(timeout=10) == "paired"
        b.send(b"ping through the pairing")
        assert b.recv(timeout=10) == b"ping through the pairing"
        assert status_of(lambda: ws(stack, f"/pair/{p['token']}"))[0] == 409
    stack.wait_streams(0, 0)
