"""A real browser through the relay: headless Chromium (Debian's, driven over the DevTools
protocol by browser.py) loads a page that the relay serves from an http service, and the
page's script uses the relay's WebSocket endpoints:

    chromium --http, Host page.test.local--> relay --> agent --> static page backend
    page script --ws /s/echo (token as a Sec-WebSocket-Protocol entry)--> relay --> echo
    page script --ws /pair/<token>--> relay <--ws /pair/<token>?side=host-- underpass pair
                                                           --> tcp echo (the host's target)

The test asserts what arrived on both ends and saves a screenshot under the test's output."""
import pathlib
import shutil

import pytest
import requests

import browser
from browser import Chromium
from conftest import BIN, mint
from harness import Proc, Server, echo_handler
from http_backends import StaticBackend

pytestmark = pytest.mark.skipif(browser.skip_reason() is not None,
                                reason=browser.skip_reason() or "")

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "integration" / "out"

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>underpass from a browser</title>
<style>body{font:16px sans-serif;margin:2em} pre{background:#eee;padding:1em}</style></head>
<body><h1>underpass: browser test</h1><pre id="log">running...</pre>
<script src="/app.js"></script></body></html>
"""

APP = b"""
const q = new URLSearchParams(location.search);
const relay = q.get("relay"), tok = q.get("token"), pair = q.get("pair");
const log = (s) => { document.getElementById("log").textContent += "\\n" + s; };

function open(url, protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("websocket error: " + url));
  });
}

function collect(ws, n) {
  // Resolve with the first n bytes of binary messages.
  return new Promise((resolve) => {
    const got = [];
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") got.push(...new Uint8Array(e.data));
      if (got.length >= n) resolve(got.slice(0, n));
    };
  });
}

function text(ws) {
  return new Promise((resolve) => { ws.onmessage = (e) => resolve(e.data); });
}

function closed(ws) {
  return new Promise((resolve) => { ws.onclose = (e) => resolve([e.code, e.reason]); });
}

async function main() {
  const res = {};
  // 1. /s/echo: websockify-style bytes, the token as a sub-protocol entry.
  const s = await open(`ws://${relay}/s/echo`, ["binary", "bearer." + tok]);
  res.s_protocol = s.protocol;
  const bytes = new Uint8Array(65536).map((_, i) => (i * 7) & 255);
  const echoed = collect(s, bytes.length);
  s.send(bytes);
  const back = await echoed;
  res.s_ok = back.every((b, i) => b === bytes[i]);
  res.s_len = back.length;
  log(`/s/echo: ${back.length} bytes echoed, protocol ${s.protocol}`);
  s.close(1000, "done");
  // 2. /pair/<token>: wait for "paired", then bytes to the host's target and back.
  const p = await open(`ws://${relay}/pair/${pair}`);
  res.paired = await text(p);
  log(`/pair: ${res.paired}`);
  const msg = new TextEncoder().encode("hello host, from the browser\\n");
  const answer = collect(p, msg.length);
  p.send(msg);
  res.pair_echo = new TextDecoder().decode(new Uint8Array(await answer));
  log(`/pair echo: ${res.pair_echo.trim()}`);
  const c = closed(p);
  p.close(1000, "bye");
  res.pair_close = await c;
  window.result = res;
  document.title = "done";
}
main().catch((e) => { window.result = {error: String(e)}; log("error: " + e); });
"""


@pytest.fixture
def echo():
    s = Server(echo_handler)
    yield s
    s.close()


@pytest.fixture
def page():
    b = StaticBackend({"/": ("text/html; charset=utf-8", PAGE),
                       "/app.js": ("text/javascript", APP)})
    yield b
    b.close()


def test_browser_s_and_pair(stack, procs, tmp_path, echo, page):
    stack.start_relay("--domain", "test.local")
    stack.start_agent([f"echo=tcp://127.0.0.1:{echo.port}", f"page=http://127.0.0.1:{page.port}"])
    relay = f"127.0.0.1:{stack.relay_port}"
    admin = mint(stack.env, "admin", "*")
    r = requests.post(f"http://{relay}/api/pairings", json={"ttl": 60},
                      headers={"Authorization": f"Bearer {admin}"}, timeout=10,
                      proxies={"http": None, "https": None})
    assert r.status_code == 201, r.text
    pair_tok = r.json()["token"]
    host = Proc([BIN, "pair", "--relay", f"ws://{relay}", "--token", pair_tok, "--target",
                 f"tcp://127.0.0.1:{echo.port}"], stack.env, tmp_path / "pair.log")
    procs.append(host)
    client_tok = mint(stack.env, "client", "echo")
    url = (f"http://page.test.local:{stack.relay_port}/?relay={relay}&token={client_tok}"
           f"&pair={pair_tok}")
    with Chromium(tmp_path, extra_args=["--host-resolver-rules=MAP *.test.local 127.0.0.1"]) as b:
        b.navigate(url)
        res = b.wait_for("window.result", timeout=30)
        shot = b.screenshot(tmp_path / "browser.png")
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, OUT / "chromium-relay.png")
    assert "error" not in res, (res, b.console)
    assert res["s_protocol"] == "binary"
    assert res["s_ok"] and res["s_len"] == 65536
    assert res["paired"] == "paired"
    assert res["pair_echo"] == "hello host, from the browser\n"
    assert res["pair_close"][0] == 1000
    assert open(shot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # The host side ends when the browser leaves.
    assert host.p.wait(10) == 0
    assert "pairing ended" in host.text()
    stack.wait_streams(0, 0)
