"""Fixtures that start real underpass processes on loopback and tear them down.

Every process binds 127.0.0.1 port 0 (or a port the test picked) and is read for its ready
line; every wait has a deadline; every process is killed and reaped at the end of the test,
also when it fails."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Proc, free_port, wait_until  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("UNDERPASS_BIN") or str(ROOT / "build" / "underpass")
SECRET = "s3cret-for-tests-" + "x" * 32


@pytest.fixture
def bin_path():
    assert os.path.exists(BIN), f"build the binary first: {BIN}"
    return BIN


def clean_env():
    """The test's environment without our own settings or the machine's proxy variables (a
    test that wants a proxy sets them itself), plus the relay secret the tests mint with."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("UNDERPASS_") and k.lower() not in
         ("http_proxy", "https_proxy", "no_proxy", "all_proxy")}
    e["UNDERPASS_SECRET"] = SECRET
    return e


@pytest.fixture
def env():
    return clean_env()


def mint(env, role, services, ttl="1h", extra=()):
    out = subprocess.run([BIN, "token", "--role", role, "--services", services, "--ttl", ttl,
                          *extra], env=env, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.fixture
def tls_files(tmp_path):
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=30)
    return cert, key


class Stack:
    """A relay, agents and connects for one test."""

    def __init__(self, procs, env, tmp):
        self.procs = procs
        self.env = env
        self.tmp = tmp
        self.relay_port = None
        self.scheme = "ws"
        self.ca = None
        self.relay_proc = None

    def start_relay(self, *extra, port=None, tls=None, name="relay"):
        port = port or free_port()
        args = [BIN, "relay", "--listen", f"127.0.0.1:{port}", *extra]
        if tls:
            args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
            self.scheme = "wss"
            self.ca = tls[0]
        p = Proc(args, self.env, self.tmp / f"{name}.log")
        self.procs.append(p)
        p.wait_log("relay ready on", 10)
        self.relay_port = port
        self.relay_proc = p
        return p

    @property
    def relay_url(self):
        return f"{self.scheme}://127.0.0.1:{self.relay_port}"

    def tls_args(self):
        return ["--ca", str(self.ca)] if self.ca else []

    def start_agent(self, services, *extra, token=None, name="agent", wait=True):
        token = token or mint(self.env, "agent", ",".join(s.split("=")[0] for s in services))
        args = [BIN, "agent", "--relay", self.relay_url, "--token", token, *self.tls_args()]
        for s in services:
            args += ["--service", s]
        args += list(extra)
        p = Proc(args, self.env, self.tmp / f"{name}.log")
        self.procs.append(p)
        if wait:
            p.wait_log("connected to relay", 10)
        return p

    def start_connect(self, service, *extra, token=None, name="connect", wait=True):
        token = token or mint(self.env, "client", service)
        port = free_port()
        args = [BIN, "connect", "--relay", self.relay_url, "--token", token, *self.tls_args(),
                service, "--listen", f"127.0.0.1:{port}", *extra]
        p = Proc(args, self.env, self.tmp / f"{name}.log")
        self.procs.append(p)
        if wait:
            p.wait_log("connected to relay", 10)
        p.port = port
        return p

    def stats(self):
        import json
        import ssl
        import urllib.request
        if self.ca:
            ctx = ssl.create_default_context(cafile=str(self.ca))
            url = f"https://127.0.0.1:{self.relay_port}/stats"
        else:
            ctx, url = None, f"http://127.0.0.1:{self.relay_port}/stats"
        with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
            return json.loads(r.read())

    def wait_streams(self, active=0, link=None, timeout=5):
        """Wait (bounded) until the relay's /stats shows `active` bridged streams and `link`
        streams on its links (default: two per bridged stream, one on each side), over ws or
        wss alike; on timeout, fail with what it showed."""
        link = 2 * active if link is None else link
        last = {}

        def ok():
            last.update(self.stats())
            return last["streams_active"] == active and last["link_streams"] == link
        try:
            wait_until(ok, timeout, "relay stream counts", interval=0.05)
        except TimeoutError:
            raise AssertionError(f"relay streams_active={last.get('streams_active')} "
                                 f"link_streams={last.get('link_streams')}, expected "
                                 f"{active} and {link}")


@pytest.fixture
def stack(procs, env, tmp):
    return Stack(procs, env, tmp)


def pytest_configure(config):
    for tool in ("openssl",):
        if not shutil.which(tool):
            raise pytest.UsageError(f"{tool} is required (scripts/deps.sh installs it)")
