"""libunderpass as an application links it: `make install DESTDIR=...` puts the library, its
headers and underpass.pc in a tree; a C program (tests/embed/pc_echo.c) is compiled with
nothing but what `pkg-config underpass` says, and runs an agent on a thread of its own
(in-process echo) plus a connect on its own loop through a real relay: 8 MiB byte for byte.

      test_pkg_config_build_runs_agent_thread_and_connect
  the same program linked against the static archive
      test_static_archive_links_alone
  the shared library exports its API and nothing else
      test_shared_library_exports_only_the_api
"""
import os
import pathlib
import subprocess

import pytest

from conftest import BIN, ROOT, mint

BUILD = pathlib.Path(BIN).parent
# The sanitizer build's library needs its runtime in the program too.
EXTRA = os.environ.get("UNDERPASS_TEST_CFLAGS", "").split()
SRC = ROOT / "tests" / "embed" / "pc_echo.c"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    out = subprocess.run(["make", "-s", "-C", str(ROOT), "install", f"BUILD={BUILD}",
                          f"DESTDIR={dest}", "PREFIX=/usr/local"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    pcs = list(dest.glob("usr/local/lib*/**/underpass.pc"))
    assert len(pcs) == 1, f"underpass.pc not installed: {list(dest.rglob('*'))}"
    assert (dest / "usr/local/include/underpass/underpass.h").exists()
    assert (dest / "usr/local/bin/underpass").exists()
    env = dict(os.environ, PKG_CONFIG_PATH=str(pcs[0].parent), PKG_CONFIG_SYSROOT_DIR=str(dest))
    return dest, env


def pkg_config(env, *args):
    out = subprocess.run(["pkg-config", *args, "underpass"], env=env, capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def run_echo(stack, exe, env):
    stack.start_relay()
    agent_tok = mint(stack.env, "agent", "echo")
    client_tok = mint(stack.env, "client", "echo")
    out = subprocess.run([str(exe), stack.relay_url, agent_tok, client_tok, str(8 << 20)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{8 << 20} bytes echoed" in out.stdout
    assert "libunderpass 0.1.0 (abi 0)" in out.stdout
    # The library writes nothing itself (no log callback was set): only the program's lines.
    stray = [line for line in out.stderr.splitlines() if not line.startswith("pc_echo:")]
    assert not stray, f"the library wrote to stderr: {stray}"


def test_pkg_config_build_runs_agent_thread_and_connect(stack, installed, tmp):
    dest, env = installed
    libs = pkg_config(env, "--libs")
    assert "-lunderpass" in libs, libs
    libdir = [a[2:] for a in libs if a.startswith("-L")][0]
    exe = tmp / "pc_echo"
    cc = ["cc", *EXTRA, "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", str(SRC),
          *pkg_config(env, "--cflags"), *libs, f"-Wl,-rpath,{libdir}", "-o", str(exe)]
    out = subprocess.run(cc, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, " ".join(cc) + "\n" + out.stderr
    ldd = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, timeout=10).stdout
    assert f"{libdir}/libunderpass.so.0" in ldd, ldd
    run_echo(stack, exe, env)


def test_static_archive_links_alone(stack, installed, tmp):
    dest, env = installed
    libs = pkg_config(env, "--static", "--libs")
    libdir = [a[2:] for a in libs if a.startswith("-L")][0]
    exe = tmp / "pc_echo_static"
    rest = [a for a in libs if a != "-lunderpass"]
    cc = ["cc", *EXTRA, "-std=c11", "-D_GNU_SOURCE", str(SRC), *pkg_config(env, "--cflags"),
          f"{libdir}/libunderpass.a", *rest, "-o", str(exe)]
    out = subprocess.run(cc, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, " ".join(cc) + "\n" + out.stderr
    ldd = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, timeout=10).stdout
    assert "libunderpass" not in ldd, ldd
    run_echo(stack, exe, env)


def test_shared_library_exports_only_the_api(installed):
    dest, _ = installed
    so = next(dest.glob("usr/local/lib*/**/libunderpass.so.0"))
    out = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True,
                         timeout=10)
    names = [line.split()[-1] for line in out.stdout.splitlines() if line.strip()]
    assert "up_agent_new" in names and "up_connect_open" in names, names
    header = (ROOT / "include/underpass/underpass.h").read_text()
    stray = [n for n in names if f" {n}(" not in header and f"*{n}(" not in header]
    assert not stray, f"exported but not in the public header: {stray}"
    soname = subprocess.run(["objdump", "-p", str(so)], capture_output=True, text=True,
                            timeout=10).stdout
    assert "SONAME               libunderpass.so.0" in soname
