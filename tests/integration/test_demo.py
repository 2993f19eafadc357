"""`make demo` runs scripts/demo.sh: the same script, run once end to end."""
import os
import subprocess

from conftest import BIN, ROOT


def test_demo_script_reaches_the_sample_service(env):
    e = dict(env)
    e["UNDERPASS_DEMO_ONESHOT"] = "1"
    r = subprocess.run([str(ROOT / "scripts" / "demo.sh"), BIN], env=e, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: the page came back through the relay." in r.stdout
    assert "curl http://127.0.0.1:" in r.stdout
