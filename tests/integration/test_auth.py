"""Tokens: bad, expired, wrong-role and wrong-service tokens are refused with a clear reason
and counted; alg=none and foreign keys are refused; authorisation is per stream."""
import base64
import hashlib
import hmac
import json
import socket
import subprocess
import time

import pytest

from conftest import BIN, SECRET, mint
from harness import Server, echo_handler, exchange


def b64(d):
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


def forge(claims, key=SECRET.encode(), alg="HS256"):
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    if alg == "none":
        return f"{head}.{body}."
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


@pytest.fixture
def echo():
    s = Server(echo_handler)
    yield s
    s.close()


def run_connect_stdio(stack, token, service="echo", timeout=10):
    return subprocess.run([BIN, "connect", "--relay", stack.relay_url, "--token", token,
                           service, "--stdio"], env=stack.env, input=b"", capture_output=True,
                          timeout=timeout)


CASES = {
    "bad-signature": (lambda now: forge({"role": "client", "services": ["echo"],
                                         "exp": now + 600}, key=b"k" * 40), 401,
                      "bad signature"),
    "expired": (lambda now: forge({"role": "client", "services": ["echo"], "exp": now - 3600}),
                401, "expired"),
    "not-yet-valid": (lambda now: forge({"role": "client", "services": ["echo"],
                                         "exp": now + 7200, "nbf": now + 3600}), 401,
                      "not yet valid"),
    "alg-none": (lambda now: forge({"role": "client", "services": ["echo"], "exp": now + 600},
                                   alg="none"), 401, "alg"),
    "garbage": (lambda now: "not-a-token", 401, "invalid token"),
    "wrong-role": (lambda now: forge({"role": "agent", "services": ["echo"], "exp": now + 600}),
                   403, "role"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_client_token_refused_with_reason(stack, echo, case):
    stack.start_relay()
    stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"])
    before = stack.stats()["rejected"]
    make, status, reason = CASES[case]
    r = run_connect_stdio(stack, make(int(time.time())))
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert f"{status}" in err and reason in err, err
    assert stack.stats()["rejected"] == before + 1


def test_wrong_service_stream_refused_per_stream(stack, echo):
    stack.start_relay()
    stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}", f"other=tcp://127.0.0.1:{echo.port}"])
    before = stack.stats()["rejected"]
    # A client allowed only 'echo' asks for 'other': the link is fine, the stream is refused.
    r = run_connect_stdio(stack, mint(stack.env, "client", "echo"), service="other")
    err = r.stderr.decode()
    assert r.returncode == 1
    assert "forbidden" in err and "does not allow service 'other'" in err, err
    assert stack.stats()["rejected"] == before + 1
    # The allowed one works.
    c = stack.start_connect("echo", token=mint(stack.env, "client", "echo"))
    assert exchange(c.port, b"hi") == b"hi"


def test_unknown_service_gets_no_service(stack, echo):
    stack.start_relay()
    stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"])
    r = run_connect_stdio(stack, mint(stack.env, "client", "*"), service="nothere")
    assert r.returncode == 1
    assert "no agent online for service 'nothere'" in r.stderr.decode()


@pytest.mark.parametrize("case", ["wrong-service", "client-token", "expired"])
def test_agent_token_refused(stack, echo, case):
    stack.start_relay()
    now = int(time.time())
    token = {
        "wrong-service": forge({"role": "agent", "services": ["web"], "exp": now + 600}),
        "client-token": forge({"role": "client", "services": ["echo"], "exp": now + 600}),
        "expired": forge({"role": "agent", "services": ["echo"], "exp": now - 3600}),
    }[case]
    before = stack.stats()["rejected"]
    a = stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}"], token=token, wait=False)
    a.wait_log("relay refused this agent", 10)
    text = a.text()
    want = {"wrong-service": "403", "client-token": "403", "expired": "401"}[case]
    assert want in text, text
    assert stack.stats()["rejected"] >= before + 1
    assert stack.stats()["agents"] == 0


def test_missing_token_is_401(stack):
    stack.start_relay()
    s = socket.create_connection(("127.0.0.1", stack.relay_port), timeout=5)
    s.sendall(b"GET /v1/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    resp = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        resp += b
    assert resp.startswith(b"HTTP/1.1 401 "), resp
    assert b"missing bearer token" in resp
