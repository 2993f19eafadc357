"""Backends for the http-service tests: a threaded HTTP/1.1 server in Python and a WebSocket
server (python websockets), both on 127.0.0.1 port 0, both recording what they saw."""
import asyncio
import hashlib
import http.server
import json
import socketserver
import threading
import time


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer says its length or is chunked

    def log_message(self, *a):
        pass

    def _record(self):
        b = self.server.backend
        with b.lock:
            b.requests.append({"method": self.command, "path": self.path,
                               "headers": {k.lower(): v for k, v in self.headers.items()},
                               "conn": self.client_address})
            b.conns.add(self.client_address)

    def _send(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._record()
        b = self.server.backend
        if self.path.startswith("/echo-headers") or self.path.startswith("/api"):
            body = json.dumps({"path": self.path,
                               "headers": {k.lower(): v for k, v in self.headers.items()},
                               "all": [[k.lower(), v] for k, v in self.headers.items()]}).encode()
            self._send(200, body)
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(100):
                self._chunk(b"line %d\n" % i)
            self.wfile.write(b"0\r\nX-Trailer: done\r\n\r\n")
        elif self.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                self._chunk(b"data: event %d\n\n" % i)
                # The next event only after the client has seen this one: proves the relay
                # does not hold the body back.
                if not b.sse_gate[i].wait(15):
                    break
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/slow":
            b.slow_gate.wait(20)
            self._send(200, b"late\n", "text/plain")
        elif self.path == "/big":
            n = 8 << 20
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = bytes(range(256)) * 256
            for _ in range(n // len(block)):
                self.wfile.write(block)
        else:
            self._send(200, b"hello from the backend\n", "text/plain")

    def do_POST(self):
        self._record()
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    d = self.rfile.read(min(left, 1 << 16))
                    h.update(d)
                    n += len(d)
                    left -= len(d)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                d = self.rfile.read(min(left, 1 << 16))
                if not d:
                    break
                h.update(d)
                n += len(d)
                left -= len(d)
        self._send(200, json.dumps({"sha256": h.hexdigest(), "len": n}).encode())


class _Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a reset from the relay (504, a client gone) is part of the tests


class HttpBackend:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.conns = set()
        self.sse_gate = [threading.Event() for _ in range(3)]
        self.slow_gate = threading.Event()
        self.srv = _Threaded(("127.0.0.1", 0), _Handler)
        self.srv.backend = self
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.slow_gate.set()
        for g in self.sse_gate:
            g.set()
        self.srv.shutdown()
        self.srv.server_close()


class WsBackend:
    """python websockets server: echoes text as text and binary as binary, picks sub-protocol
    chat.v2 when offered, answers "bye" by closing with 4001 "see you"."""

    def __init__(self):
        import websockets.asyncio.server as wss
        self.seen = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = None

        async def handler(ws):
            self.seen.append({"subprotocol": ws.subprotocol,
                              "headers": {k.lower(): v for k, v in ws.request.headers.raw_items()}})
            async for msg in ws:
                if msg == "bye":
                    await ws.close(4001, "see you")
                    return
                await ws.send(msg)

        async def main():
            self.stop = asyncio.Event()
            async with wss.serve(handler, "127.0.0.1", 0, subprotocols=["chat.v2"],
                                 max_size=1 << 24) as server:
                self.port = server.sockets[0].getsockname()[1]
                self.ready.set()
                await self.stop.wait()

        self.t = threading.Thread(target=lambda: self.loop.run_until_complete(main()), daemon=True)
        self.t.start()
        if not self.ready.wait(10):
            raise RuntimeError("websocket backend did not start")

    def close(self):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.t.join(10)


def wait_event(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


class StaticBackend:
    """A threaded HTTP/1.1 server on 127.0.0.1 port 0 serving a dict path -> (type, bytes);
    404 with an empty body for anything else (browsers ask for /favicon.ico)."""

    def __init__(self, files):
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                ctype, body = files.get(self.path.split("?")[0], ("text/plain", b""))
                try:
                    self.send_response(200 if body else 404)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # a browser that closed mid-reply

        self.srv = _Threaded(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.t.join(5)
