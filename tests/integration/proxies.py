"""Real proxies for integration tests: squid and tinyproxy (forward proxies with Basic auth,
CONNECT), nginx and haproxy (TLS-terminating reverse proxies with WebSocket pass-through).

Each launcher writes its config in a temporary directory, runs the proxy in the foreground as a
harness.Proc (inside a Topology namespace when given topo= and host=, else on this machine's
loopback), returns only once the proxy accepts TCP connections, and is stopped by stop(), by
leaving a with-block, or by the Topology's teardown. stop() also kills whatever the proxy forked
(auth helpers, worker processes: same process group) and removes its files outside tmp.

    forward (agent side)                      reverse (relay side)

    priv --CONNECT relay:port--> squid        client --TLS--> nginx / haproxy --plain HTTP-->
         Proxy-Authorization: Basic ...   |            (X-Forwarded-For, X-Forwarded-Proto;
    priv --CONNECT relay:port--> tinyproxy|             source address = `source`, default
                                          |             127.0.0.9)                  backend

Known quirk: tinyproxy 1.11.1 (Debian 12) answers a CONNECT carrying *wrong* credentials with
401 Unauthorized instead of 407 (tinyproxy/tinyproxy#532, fixed upstream by PR #549); without
credentials it answers 407.
"""
import base64
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from harness import Proc, free_port, wait_until

SQUID_AUTH_HELPER = "/usr/lib/squid/basic_ncsa_auth"
_n = [0]


def missing(*binaries):
    """Names among binaries that are not installed (a path counts if it is executable)."""
    out = []
    for b in binaries:
        if os.path.sep in b:
            if not os.access(b, os.X_OK):
                out.append(b)
        elif not shutil.which(b):
            out.append(b)
    return out


def require(*binaries):
    """pytest.skip the current test unless every binary is installed."""
    m = missing(*binaries)
    if m:
        pytest.skip(f"{', '.join(m)} not installed (scripts/deps.sh installs it)")


def basic_auth(user, password):
    """The value of a Proxy-Authorization / Authorization header for Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def read_head(sock, limit=65536):
    """Read an HTTP response head (through the blank line) byte by byte, so that nothing after
    it is consumed; return (status, head text). status is 0 if the peer closed first."""
    buf = b""
    while not buf.endswith(b"\r\n\r\n"):
        b = sock.recv(1)
        if not b:
            break
        buf += b
        if len(buf) > limit:
            raise ValueError("response head too long")
    head = buf.decode("latin-1")
    try:
        status = int(head.split(" ", 2)[1])
    except (IndexError, ValueError):
        status = 0
    return status, head


def http_connect(sock, host, port, user=None, password=None, timeout=5):
    """Send `CONNECT host:port` (with Basic credentials if user is given) on a socket already
    connected to a proxy; return (status, head). On 200 the socket is the tunnel."""
    req = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if user is not None:
        req += f"Proxy-Authorization: {basic_auth(user, password)}\r\n"
    sock.settimeout(timeout)
    sock.sendall((req + "\r\n").encode())
    return read_head(sock)


def make_cert(directory, ips=("127.0.0.1",), dns=("localhost",), name="cert"):
    """A self-signed EC certificate (it is its own CA). Returns (cert, key, pem) paths; pem is
    cert+key in one file, as haproxy wants."""
    directory = str(directory)
    cert = os.path.join(directory, f"{name}.pem")
    key = os.path.join(directory, f"{name}.key")
    pem = os.path.join(directory, f"{name}+key.pem")
    san = ",".join([f"IP:{i}" for i in ips] + [f"DNS:{d}" for d in dns])
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    f"/CN={ips[0] if ips else dns[0]}", "-addext", f"subjectAltName={san}",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=30)
    with open(pem, "w") as f:
        f.write(open(cert).read() + open(key).read())
    return cert, key, pem


def htpasswd(path, users):
    """Write an htpasswd file (apr1 hashes, via openssl) for {user: password}; world-readable
    so that squid's helper, running as user proxy, can read it."""
    lines = []
    for user, password in users.items():
        h = subprocess.run(["openssl", "passwd", "-apr1", "-stdin"], input=password,
                           capture_output=True, text=True, check=True, timeout=10).stdout
        lines.append(f"{user}:{h.strip()}\n")
    with open(path, "w") as f:
        f.writelines(lines)
    os.chmod(path, 0o644)
    return path


class Launched:
    """Base of the launchers: a proxy process, where it listens, and how to stop it."""

    name = "proxy"
    default_port = 8080  # in a namespace; on loopback a free port is picked

    def __init__(self, tmp, topo=None, host=None, port=None, listen=None):
        if (topo is None) != (host is None):
            raise ValueError("give both topo and host, or neither")
        self.tmp = str(tmp)
        self.topo, self.host = topo, host
        self.port = port or (free_port() if topo is None else self.default_port)
        self.listen = listen or ("127.0.0.1" if topo is None else "0.0.0.0")
        # the address clients dial
        self.addr = topo.ip(host) if topo is not None and self.listen == "0.0.0.0" \
            else self.listen
        self.proc = None
        self._stopped = False
        _n[0] += 1
        self.tag = f"up{os.getpid()}x{_n[0]}"

    def _start(self, args, timeout):
        log = os.path.join(self.tmp, f"{self.name}-{self.tag}.log")
        try:
            if self.topo is not None:
                self.topo.on_close(self.stop)
                self.proc = self.topo.proc(self.host, args, log_path=log, name=self.name)
            else:
                self.proc = Proc(args, dict(os.environ), log)
                self.proc.ns = None
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout):
        p = self.proc
        if self.topo is not None:
            self.topo.wait_port(self.host, self.addr, self.port, timeout, proc=p)
            return

        def ok():
            if not p.alive():
                raise AssertionError(f"{self.name} exited ({p.p.returncode}) before listening "
                                     f"on {self.addr}:{self.port}:\n{p.text()}")
            try:
                socket.create_connection((self.addr, self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until(ok, timeout, f"{self.name} accepting on {self.addr}:{self.port}", 0.05)

    def connect(self, from_host=None, timeout=5):
        """A TCP connection to the proxy: from from_host of the topology if given, else from
        here (which only reaches a proxy on loopback)."""
        if from_host is not None:
            return self.topo.connect(from_host, self.addr, self.port, timeout)
        return socket.create_connection((self.addr, self.port), timeout=timeout)

    def text(self):
        """The proxy's stdout+stderr so far."""
        return self.proc.text() if self.proc else ""

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def stop(self):
        """Stop the proxy and everything in its process group; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc is not None:
            pid = self.proc.pid
            self.proc.stop(timeout=3)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self._cleanup()

    def _cleanup(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Squid(Launched):
    """squid -N with Basic auth (basic_ncsa_auth + generated htpasswd); CONNECT to any port is
    allowed for authenticated users, everything else gets 407/403. No cache. Squid drops to user
    `proxy`, so its files live in a world-readable mkdtemp directory (not pytest's 0700 tmp);
    stop() copies its cache.log/access.log into tmp and removes that directory."""

    name = "squid"
    default_port = 3128

    def __init__(self, tmp, users=None, topo=None, host=None, port=None, listen=None,
                 timeout=15):
        super().__init__(tmp, topo, host, port, listen)
        self.users = dict(users or {"alice": "secret"})
        self.user, self.password = next(iter(self.users.items()))
        self.workdir = tempfile.mkdtemp(prefix=f"{self.tag}-squid-", dir="/tmp")
        os.chmod(self.workdir, 0o755)
        try:
            runas = pwd.getpwnam("proxy")
        except KeyError:
            runas = pwd.getpwnam("nobody")
        try:
            os.chown(self.workdir, runas.pw_uid, runas.pw_gid)
            conf = self._configure(runas.pw_name)
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        # -n: service name, which squid also uses for its /dev/shm segments
        self._start(["squid", "-N", "-n", self.tag, "-f", conf], timeout)

    def _configure(self, runas):
        w = self.workdir
        passwd = htpasswd(os.path.join(w, "htpasswd"), self.users)
        conf = os.path.join(w, "squid.conf")
        with open(conf, "w") as f:
            f.write(f"""\
http_port {self.listen}:{self.port}
pid_filename none
cache_log {w}/cache.log
access_log stdio:{w}/access.log
cache_store_log none
cache deny all
cache_mem 8 MB
coredump_dir {w}
netdb_filename none
visible_hostname underpass-test
dns_nameservers 127.0.0.1
shutdown_lifetime 0 seconds
cache_effective_user {runas}
pinger_enable off
logfile_rotate 0
auth_param basic program {SQUID_AUTH_HELPER} {passwd}
auth_param basic children 2 startup=1 idle=1
auth_param basic realm underpass-test
auth_param basic credentialsttl 1 second
acl authed proxy_auth REQUIRED
http_access deny !authed
http_access allow authed
http_access deny all
""")
        os.chmod(conf, 0o644)
        return conf

    def _cleanup(self):
        for log in ("cache.log", "access.log"):
            src = os.path.join(self.workdir, log)
            if os.path.exists(src):
                with contextlib.suppress(OSError):
                    shutil.copy(src, os.path.join(self.tmp, f"squid-{self.tag}-{log}"))
        shutil.rmtree(self.workdir, ignore_errors=True)
        for seg in glob.glob(f"/dev/shm/{self.tag}-*"):
            with contextlib.suppress(OSError):
                os.unlink(seg)


class Tinyproxy(Launched):
    """tinyproxy -d with BasicAuth for every user in users; CONNECT only to connect_ports (all
    ports if empty). Runs as the current user (root), logging to its Proc log."""

    name = "tinyproxy"
    default_port = 8888

    def __init__(self, tmp, users=None, connect_ports=(), topo=None, host=None, port=None,
                 listen=None, timeout=10):
        super().__init__(tmp, topo, host, port, listen)
        self.users = dict(users or {"alice": "secret"})
        self.user, self.password = next(iter(self.users.items()))
        conf = os.path.join(self.tmp, f"tinyproxy-{self.tag}.conf")
        lines = [f"Port {self.port}", f"Listen {self.listen}", "Timeout 600",
                 "MaxClients 200", "LogLevel Info", "DisableViaHeader Yes"]
        lines += [f"BasicAuth {u} {p}" for u, p in self.users.items()]
        lines += [f"ConnectPort {p}" for p in connect_ports]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._start(["tinyproxy", "-d", "-c", conf], timeout)


class _Reverse(Launched):
    """Common arguments of the TLS-terminating reverse proxies."""

    default_port = 8443

    def __init__(self, tmp, backend_port, cert, key, backend_addr="127.0.0.1",
                 source="127.0.0.9", topo=None, host=None, port=None, listen=None):
        super().__init__(tmp, topo, host, port, listen)
        self.backend = (backend_addr, backend_port)
        self.cert, self.key = str(cert), str(key)
        self.source = source
        self.workdir = os.path.join(self.tmp, f"{self.name}-{self.tag}")
        os.makedirs(self.workdir)


class Nginx(_Reverse):
    """nginx terminating TLS on listen:port and proxying to backend_addr:backend_port over
    plain HTTP/1.1 with WebSocket upgrade pass-through, X-Forwarded-For
    ($proxy_add_x_forwarded_for), X-Forwarded-Proto, hour-long read/send timeouts, no
    buffering, and proxy_bind `source` (None: no proxy_bind)."""

    name = "nginx"

    def __init__(self, tmp, backend_port, cert, key, backend_addr="127.0.0.1",
                 source="127.0.0.9", topo=None, host=None, port=None, listen=None, timeout=10):
        super().__init__(tmp, backend_port, cert, key, backend_addr, source, topo, host, port,
                         listen)
        w = self.workdir
        bind = f"proxy_bind {source};" if source else ""
        conf = os.path.join(w, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {w}/nginx.pid;
error_log {w}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {w}/access.log;
    client_body_temp_path {w}/client_body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen {self.listen}:{self.port} ssl;
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key};
        location / {{
            proxy_pass http://{backend_addr}:{backend_port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffering off;
            proxy_request_buffering off;
            {bind}
        }}
    }}
}}
""")
        self._start(["nginx", "-p", w, "-e", f"{w}/error.log", "-c", conf], timeout)


class Haproxy(_Reverse):
    """haproxy (mode http) terminating TLS on listen:port with cert+key in one PEM, forwarding
    to backend_addr:backend_port with option forwardfor, X-Forwarded-Proto https, `source` on
    the server line (None: none), timeout tunnel 1h for upgraded (WebSocket) connections."""

    name = "haproxy"

    def __init__(self, tmp, backend_port, cert, key, backend_addr="127.0.0.1",
                 source="127.0.0.9", topo=None, host=None, port=None, listen=None, timeout=10):
        super().__init__(tmp, backend_port, cert, key, backend_addr, source, topo, host, port,
                         listen)
        w = self.workdir
        pem = os.path.join(w, "cert+key.pem")
        with open(pem, "w") as f:
            f.write(open(self.cert).read() + open(self.key).read())
        src = f" source {source}" if source else ""
        conf = os.path.join(w, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(f"""\
global
    log stderr format raw local0 info
    maxconn 1000
    nbthread 1

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h

frontend fe
    bind {self.listen}:{self.port} ssl crt {pem}
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend be

backend be
    server s1 {backend_addr}:{backend_port}{src}
""")
        self._start(["haproxy", "-db", "-f", conf], timeout)
