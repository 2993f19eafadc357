"""Self-test of browser.py: headless Chromium loads a page from a local HTTP server whose script
talks to a local WebSocket echo server, and the test reads the outcome through CDP.

Everything listens on 127.0.0.1 port 0, every wait is bounded, and the servers and the browser
are shut down at the end of each test, also when it fails."""
import pathlib
import sys
import threading

import pytest
from websockets.sync.server import serve as ws_serve

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import browser  # noqa: E402
from browser import Chromium, JSError, NavigationError  # noqa: E402
from harness import free_port  # noqa: E402
from http_backends import StaticBackend  # noqa: E402

pytestmark = pytest.mark.skipif(browser.skip_reason() is not None,
                                reason=browser.skip_reason() or "")

PAYLOAD = bytes([0, 1, 2, 127, 128, 200, 255, 10, 13, 0])
TEXT = "h\u00e9llo \u2713 over ws"

INDEX = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>ws echo</title></head>
<body><h1>underpass browser self-test</h1><script src="/app.js"></script></body></html>
"""

APP = ("""
const port = new URLSearchParams(location.search).get("ws");
const got = [];
const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`);
ws.binaryType = "arraybuffer";
ws.onopen = () => {
  console.log("ws open");
  ws.send(new Uint8Array(%s));
  ws.send(%r);
};
ws.onmessage = (e) => {
  got.push(typeof e.data === "string" ? {text: e.data}
                                      : {bytes: Array.from(new Uint8Array(e.data))});
  if (got.length === 2) { window.result = got; ws.close(); }
};
ws.onerror = () => { window.result = {error: "websocket error"}; };
""" % (list(PAYLOAD), TEXT)).encode()


class EchoServer:
    """A websockets echo server on 127.0.0.1 port 0 that records what it received."""

    def __init__(self):
        self.received = []

        def handler(ws):
            for msg in ws:
                self.received.append(msg)
                ws.send(msg)  # bytes go back as a binary frame, str as a text frame

        self.srv = ws_serve(handler, "127.0.0.1", 0, compression=None)
        self.port = self.srv.socket.getsockname()[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.t.join(5)


@pytest.fixture
def servers():
    made = []
    try:
        web = StaticBackend({"/": ("text/html; charset=utf-8", INDEX),
                            "/app.js": ("text/javascript; charset=utf-8", APP)})
        made.append(web)
        echo = EchoServer()
        made.append(echo)
        yield web, echo
    finally:
        for s in reversed(made):
            s.close()
        for s in made:
            assert not s.t.is_alive(), f"{type(s).__name__} thread did not stop"


def test_page_websocket_echo(servers, tmp_path):
    web, echo = servers
    with Chromium(tmp_path) as b:
        b.navigate(f"http://127.0.0.1:{web.port}/?ws={echo.port}", timeout=20)
        result = b.wait_for("window.result", timeout=10)
        assert result == [{"bytes": list(PAYLOAD)}, {"text": TEXT}], \
            f"{result}; console: {b.console.text()}"
        assert echo.received == [PAYLOAD, TEXT]
        assert b.evaluate("document.title") == "ws echo"
        assert "log: ws open" in b.console
        shot = b.screenshot(tmp_path / "page.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b.pids(), "no chromium processes while the browser is open"
    assert b.pids() == [], "chromium processes left after exit"
    assert b.proc.returncode is not None


def test_evaluate_and_errors(tmp_path):
    with Chromium(tmp_path) as b:
        assert b.evaluate("1 + 2") == 3
        assert b.evaluate("new Promise(r => setTimeout(() => r({a: [1, 'x']}), 50))") == \
            {"a": [1, "x"]}
        assert b.evaluate("undefined") is None
        assert b.evaluate("10n ** 20n") == 10 ** 20
        with pytest.raises(JSError, match="boom"):
            b.evaluate("(() => { throw new Error('boom') })()")
        with pytest.raises(JSError, match="nope"):
            b.evaluate("Promise.reject(new Error('nope'))")
        b.evaluate("setTimeout(() => { window.later = 'yes'; console.warn('set', 7) }, 100)")
        assert b.wait_for("window.later", timeout=5) == "yes"
        assert "warning: set 7" in b.console
        with pytest.raises(TimeoutError):
            b.wait_for("window.never", timeout=0.3)
        with pytest.raises(NavigationError, match="ERR_CONNECTION_REFUSED"):
            b.navigate(f"http://127.0.0.1:{free_port()}/", timeout=10)
    assert b.pids() == [], "chromium processes left after exit"
