"""IPv6 on every hop: relay on [::1], agent and connect dialing ws://[::1]:PORT, a service on
[::1]."""
import socket
import socketserver
import subprocess
import threading

from conftest import BIN, mint
from harness import Proc, exchange, free_port


class V6Echo(socketserver.ThreadingMixIn, socketserver.TCPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True


class H(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            b = self.request.recv(65536)
            if not b:
                return
            self.request.sendall(b)


def test_everything_over_ipv6(env, tmp_path, procs):
    srv = V6Echo(("::1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        port = s.getsockname()[1]
        s.close()
        relay = Proc([BIN, "relay", "--listen", f"[::1]:{port}"], env, tmp_path / "relay.log")
        procs.append(relay)
        relay.wait_log("relay ready on ws://[::1]:", 10)
        url = f"ws://[::1]:{port}"
        agent = Proc([BIN, "agent", "--relay", url, "--token", mint(env, "agent", "v6"),
                      "--service", f"v6=tcp://[::1]:{srv.server_address[1]}"], env,
                     tmp_path / "agent.log")
        procs.append(agent)
        agent.wait_log("connected to relay", 10)
        lport = free_port()
        c = Proc([BIN, "connect", "--relay", url, "--token", mint(env, "client", "v6"), "v6",
                  "--listen", f"127.0.0.1:{lport}"], env, tmp_path / "connect.log")
        procs.append(c)
        c.wait_log("connected to relay", 10)
        assert exchange(lport, b"over ipv6" * 1000) == b"over ipv6" * 1000
        assert "[::1]:" in relay.text()  # peers logged with brackets
    finally:
        srv.shutdown()
        srv.server_close()
