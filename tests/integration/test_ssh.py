"""A real ssh session to a real sshd through `underpass connect --stdio` as ProxyCommand."""
import os
import shutil
import subprocess

import pytest

from conftest import BIN, mint
from harness import Proc, free_port, wait_until

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@pytest.fixture
def sshd(tmp_path, procs):
    if os.geteuid() != 0:
        pytest.fail("this test runs sshd and logs in as the current user; it needs root here")
    d = tmp_path / "ssh"
    d.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host")],
                   check=True, timeout=30)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client")],
                   check=True, timeout=30)
    shutil.copy(d / "client.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host
AuthorizedKeysFile {d}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin yes
PidFile {d}/sshd.pid
""")
    os.makedirs("/run/sshd", exist_ok=True)
    p = Proc([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], dict(os.environ),
             tmp_path / "sshd.log")
    procs.append(p)
    p.wait_log("Server listening", 10)
    return port, d


def test_ssh_session_through_stdio_proxycommand(stack, sshd):
    port, d = sshd
    stack.start_relay()
    stack.start_agent([f"ssh=tcp://127.0.0.1:{port}"])
    token = mint(stack.env, "client", "ssh")
    proxy = f"{BIN} connect --relay {stack.relay_url} --token {token} ssh --stdio"
    r = subprocess.run(["ssh", "-F", "/dev/null", "-i", str(d / "client"),
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "BatchMode=yes", "-o", f"ProxyCommand={proxy}",
                        "root@underpass-target", "echo through-underpass; head -c 1000000 /dev/zero | sha256sum"],
                       capture_output=True, text=True, timeout=60, env=stack.env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "through-underpass"
    import hashlib
    assert lines[1].split()[0] == hashlib.sha256(b"\0" * 1000000).hexdigest()
    # The stream is gone once ssh exits.
    wait_until(lambda: stack.stats()["streams_active"] == 0, 5, "stream released")
