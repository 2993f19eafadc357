"""The command line: help for every subcommand, clear errors, env vars, precedence, health."""
import subprocess
import urllib.request

import pytest

from conftest import BIN, SECRET, mint
from harness import Server, echo_handler, exchange


def run(args, env, timeout=10, **kw):
    return subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          **kw)


@pytest.mark.parametrize("cmd", ["relay", "agent", "connect", "token"])
def test_help_lists_every_option_with_env(env, cmd):
    r = run([cmd, "--help"], env)
    assert r.returncode == 0
    assert "Usage: underpass " + cmd in r.stdout
    assert "UNDERPASS_" in r.stdout
    assert "Examples:" in r.stdout


def test_no_args_prints_usage_and_fails(env):
    r = run([], env)
    assert r.returncode == 2 and "Commands:" in r.stderr


@pytest.mark.parametrize("args,msg", [
    (["relay", "--listen", "nonsense"], "is not IP:PORT"),
    (["relay", "--bogus"], "unknown option '--bogus'"),
    (["relay", "--listen"], "needs a value"),
    (["relay", "--head-timeout", "soon"], "is not a duration"),
    (["agent", "--relay", "http://x"], "ws://"),
    (["agent", "--relay", "ws://127.0.0.1:1", "--token", "t"], "--service"),
    (["agent", "--relay", "ws://127.0.0.1:1", "--token", "t", "--service", "bad"], "NAME=tcp://"),
    (["connect", "--relay", "ws://127.0.0.1:1", "--token", "t", "svc"], "--listen"),
    (["connect", "--relay", "ws://127.0.0.1:1", "--token", "t"], "SERVICE"),
    (["token", "--role", "root", "--services", "a"], "agent, client or admin"),
    (["token", "--role", "agent", "--services", "bad name"], "not a valid service name"),
])
def test_bad_input_gets_a_clear_error(env, args, msg):
    r = run(args, env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert msg in r.stderr, r.stderr


def test_relay_refuses_to_start_without_a_strong_secret(env):
    e = dict(env)
    del e["UNDERPASS_SECRET"]
    r = run(["relay", "--listen", "127.0.0.1:0"], e)
    assert r.returncode == 2 and "--secret is required" in r.stderr
    e["UNDERPASS_SECRET"] = "short"
    r = run(["relay", "--listen", "127.0.0.1:0"], e)
    assert r.returncode == 2 and "at least 32 bytes" in r.stderr


def test_secret_file_and_token_file(env, tmp_path):
    sf = tmp_path / "secret"
    sf.write_text(SECRET + "\n")
    e = dict(env)
    del e["UNDERPASS_SECRET"]
    r = run(["token", "--secret-file", str(sf), "--role", "client", "--services", "a"], e)
    assert r.returncode == 0 and r.stdout.count(".") == 2
    e["UNDERPASS_SECRET_FILE"] = str(sf)
    r2 = run(["token", "--role", "client", "--services", "a"], e)
    assert r2.returncode == 0


def test_env_vars_configure_everything_and_flags_win(stack):
    srv = Server(echo_handler)
    try:
        stack.start_relay()
        e = dict(stack.env)
        e["UNDERPASS_RELAY"] = stack.relay_url
        e["UNDERPASS_TOKEN"] = mint(stack.env, "agent", "echo")
        e["UNDERPASS_SERVICE"] = f"echo=tcp://127.0.0.1:{srv.port}"
        from harness import Proc
        a = Proc([BIN, "agent"], e, stack.tmp / "agent-env.log")
        stack.procs.append(a)
        a.wait_log("connected to relay", 10)
        # A wrong token in the environment, the right one as a flag: the flag wins.
        e2 = dict(stack.env)
        e2["UNDERPASS_TOKEN"] = "wrong"
        good = mint(stack.env, "client", "echo")
        from harness import free_port
        port = free_port()
        c = Proc([BIN, "connect", "--relay", stack.relay_url, "--token", good, "echo", "--listen",
                  f"127.0.0.1:{port}"], e2, stack.tmp / "connect-env.log")
        stack.procs.append(c)
        c.wait_log("connected to relay", 10)
        assert exchange(port, b"env") == b"env"
    finally:
        srv.close()


def test_healthz_and_stats(stack):
    stack.start_relay()
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.relay_port}/healthz", timeout=5) as r:
        assert r.status == 200 and r.read() == b"ok\n"
    st = stack.stats()
    for k in ("agents", "clients", "streams_active", "rejected", "bytes_relayed"):
        assert k in st
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{stack.relay_port}/nope", timeout=5)
        assert False, "expected 404"
    except urllib.error.HTTPError as e:
        assert e.code == 404


def test_wss_requires_trust_unless_insecure(stack, tls_files):
    stack.start_relay(tls=tls_files)
    token = mint(stack.env, "client", "x")
    # No --ca: the self-signed certificate is not trusted.
    r = run(["connect", "--relay", stack.relay_url, "--token", token, "x", "--stdio"],
            stack.env, input="")
    assert r.returncode == 1
    assert "certificate verification failed" in r.stderr, r.stderr
    # --insecure: the TLS handshake passes (the stream then fails: no agent for 'x').
    r = run(["connect", "--relay", stack.relay_url, "--token", token, "x", "--stdio",
             "--insecure"], stack.env, input="")
    assert "no agent online for service 'x'" in r.stderr, r.stderr
