"""libunderpass embedded in an application: build/examples/embed_agent serves an in-process
echo service through a real relay, reached with a real `underpass connect`.

  16 MiB echoed byte for byte, then the relay killed and restarted on the same port: the
  example reconnects by itself and serves again.
      test_embedded_echo_survives_a_relay_restart
  wss, with --ca
      test_embedded_echo_over_wss
  the example's errors are values, printed by the application, not by the library
      test_embedded_agent_bad_option
"""
import os
import pathlib
import subprocess
import threading

import pytest

from conftest import BIN, mint
from harness import (Flow, Proc, assert_all_ok, free_port_outside_ephemeral, gated_flows,
                     wait_until)

EXAMPLE = pathlib.Path(os.environ.get("UNDERPASS_EMBED_AGENT")
                       or pathlib.Path(BIN).parent / "examples" / "embed_agent")


@pytest.fixture
def example():
    assert EXAMPLE.exists(), f"build the example first: {EXAMPLE}"
    return str(EXAMPLE)


def start_example(stack, example, name="embed_agent"):
    token = mint(stack.env, "agent", "echo")
    args = [example, "--relay", stack.relay_url, "--token", token]
    if stack.ca:
        args += ["--ca", str(stack.ca)]
    p = Proc(args, stack.env, stack.tmp / f"{name}.log")
    stack.procs.append(p)
    p.wait_log("serving echo", 10)
    return p


def test_embedded_echo_survives_a_relay_restart(stack, example):
    port = free_port_outside_ephemeral()
    stack.start_relay(port=port)
    app = start_example(stack, example)
    c = stack.start_connect("echo", "--backoff-max", "1s")
    assert_all_ok([Flow(c.port, os.urandom(16 << 20))], 60, "16 MiB through the embedded echo")
    assert "embed_agent:" in app.text() and "connected" in app.text()
    # The relay dies under load: the example (which leaves SIGPIPE at its default, fatal
    # disposition) is writing to the dead link and its streams' sockets, and must live on.
    gate = threading.Event()
    doomed = gated_flows(c.port, 4, 16 << 20, gate)
    gate.set()
    wait_until(lambda: stack.stats()["bytes_relayed"] > 8 << 20, 10, "bulk data in flight")
    stack.relay_proc.kill()
    wait_until(lambda: all(f.done for f in doomed), 5, "the cut streams ended")
    assert not any(f.ok for f in doomed)
    app.wait_log("reconnecting", 5)
    assert app.alive(), f"exit status {app.p.returncode}:\n{app.text()}"
    stack.start_relay(port=port, name="relay2")
    app.wait_log("serving echo", 10, count=2)
    c.wait_log("connected to relay", 10, count=2)
    wait_until(lambda: stack.stats()["agents"] == 1, 5, "the example at the new relay")
    assert_all_ok([Flow(c.port, os.urandom(4 << 20)) for _ in range(2)], 60,
                  "echo through the restarted relay")
    # Library log lines come through the application's callback.
    assert "connected to relay" in app.text()
    app.stop()
    assert app.p.returncode == 0, app.text()


def test_embedded_echo_over_wss(stack, example, tls_files):
    stack.start_relay(tls=tls_files)
    start_example(stack, example)
    c = stack.start_connect("echo")
    assert_all_ok([Flow(c.port, os.urandom(4 << 20)) for _ in range(3)], 60,
                  "echo over wss through the embedded agent")


def test_embedded_agent_bad_option(example, env):
    out = subprocess.run([example, "--relay", "ftp://x", "--token", "t"], env=env,
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2
    assert "relay: 'ftp://x': unsupported scheme" in out.stderr, out.stderr
