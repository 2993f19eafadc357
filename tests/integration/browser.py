"""A tiny driver for headless Chromium over the Chrome DevTools Protocol (CDP).

Only the standard library and `websockets.sync.client`; no playwright, selenium or pyppeteer.

    with Chromium(tmp_path) as b:
        b.navigate(f"http://127.0.0.1:{port}/")
        value = b.wait_for("window.result")          # polls until truthy, returns the value
        b.evaluate("fetch('/x').then(r => r.status)")  # awaits promises by default
        b.screenshot(tmp_path / "page.png")
        print(b.console)                              # console.* messages of the page

Chromium is started in its own process group with --remote-debugging-port=0; the port it
picked is read from <profile>/DevToolsActivePort. One connection to the page target carries
every command; responses are matched by id and events are buffered in arrival order, so an
event that arrives while we wait for a response is not lost. Every wait has a deadline, and
on exit the whole process group is closed (Browser.close, then SIGTERM, then SIGKILL).

Quirks of Chromium handled here: --no-sandbox is required when running as root; the crash
handler (chrome_crashpad_handler) double-forks out of the process group and writes to
~/.config/chromium unless XDG_CONFIG_HOME points elsewhere (we point it into tmpdir); a page
served from a non-loopback address may not open ws://127.0.0.1 (Local Network Access, Chrome
142+: net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS) unless LocalNetworkAccessChecks is
disabled, which we do; /json/list also lists "browser_ui" targets besides the page.
Values come back by value (JSON): NaN/Infinity inside arrays or objects become None and DOM
nodes {}; return plain data from the expression."""
import base64
import collections
import itertools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time
import urllib.request

from websockets.sync.client import connect as _ws_connect
from websockets.exceptions import ConnectionClosed

_PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "ftp_proxy", "auto_proxy")
_MAX_EVENTS = 2000  # buffered, not yet consumed events kept (oldest dropped first)


class CDPError(RuntimeError):
    """A CDP command failed, timed out, or the browser went away."""


class JSError(CDPError):
    """Runtime.evaluate threw; the message carries the JavaScript exception text."""


class NavigationError(CDPError):
    """Page.navigate reported an error (e.g. net::ERR_CONNECTION_REFUSED)."""


def find_binary():
    """The chromium executable, or None: $CHROMIUM, then `chromium` on PATH, then
    /usr/bin/chromium."""
    for cand in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def skip_reason():
    """A reason string for pytest.skip when chromium is not installed, else None."""
    if find_binary() is None:
        return ("chromium is not installed (apt-get install --no-install-recommends chromium, "
                "or set CHROMIUM to its path)")
    return None


def _merge_disable_features(ours, extra_args):
    """extra_args with our --disable-features merged into theirs: Chromium keeps only the last
    --disable-features switch, so two of them would silently drop one list."""
    feats = list(ours)
    rest = []
    for a in extra_args:
        if a.startswith("--disable-features="):
            feats += [f for f in a.split("=", 1)[1].split(",") if f and f not in feats]
        else:
            rest.append(a)
    return [f"--disable-features={','.join(feats)}", *rest]


def _no_proxy_opener():
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def chromium_pids(pgid, marker=None):
    """Live (non-zombie) processes in process group `pgid`, plus chromium processes (comm
    starting "chrom") whose command line contains `marker` (a str): Chromium's crash handler
    double-forks into a session of its own and so leaves the group. Read from /proc."""
    marker = marker.encode() if marker else None
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc: only the group can be checked
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except (ProcessLookupError, PermissionError):
            return []
    pids = []
    for e in entries:
        if not e.isdigit() or int(e) == os.getpid():
            continue
        try:
            with open(f"/proc/{e}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) < 3 or fields[0] in ("Z", "X"):
            continue
        if int(fields[2]) == pgid:
            pids.append(int(e))
        elif marker and comm.startswith("chrom"):
            try:
                with open(f"/proc/{e}/cmdline", "rb") as f:
                    if marker in f.read():
                        pids.append(int(e))
            except OSError:
                pass
    return pids


class Chromium:
    """Headless Chromium with one page, driven over CDP. Use as a context manager."""

    def __init__(self, tmpdir, extra_args=(), env=None, binary=None):
        self.tmpdir = pathlib.Path(tmpdir).resolve()
        self.extra_args = list(extra_args)
        self.binary = binary or find_binary()
        if env is None:
            # As in conftest: the machine's proxy settings must not leak into a test. (Chromium
            # on Linux without a desktop session takes its proxy from these variables.)
            env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
        env = dict(env)
        # Chromium keeps crash reports (and some caches) under $XDG_CONFIG_HOME/chromium and
        # $XDG_CACHE_HOME/chromium, i.e. in ~/.config and ~/.cache: keep them in tmpdir, which
        # also puts tmpdir on the command line of the crash handler (see chromium_pids).
        env.setdefault("XDG_CONFIG_HOME", str(self.tmpdir / "config"))
        env.setdefault("XDG_CACHE_HOME", str(self.tmpdir / "cache"))
        self.env = env
        self.profile = self.tmpdir / "profile"
        self.log_path = self.tmpdir / "chromium.log"
        self.proc = None
        self.port = None
        self.browser_ws_path = None
        self.ws = None
        self._ws_cm = None
        self.console = _Console(self)
        self.exceptions = []        # uncaught page exceptions (Runtime.exceptionThrown)
        self._log = None
        self._ids = itertools.count(1)
        self._pending = set()
        self._responses = {}
        self._events = collections.deque()
        self._seq = itertools.count(1)
        self._frame_id = None

    # ---- lifecycle ----

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self, timeout=20):
        if self.binary is None:
            raise CDPError(skip_reason())
        self.profile.mkdir(parents=True, exist_ok=True)
        port_file = self.profile / "DevToolsActivePort"
        try:
            port_file.unlink()  # a stale one from an earlier run in the same tmpdir
        except FileNotFoundError:
            pass
        args = [self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                # /dev/shm in containers is often tiny (64 MiB in docker); Debian's wrapper
                # means to add this flag itself but its check is broken when findmnt prints
                # two lines.
                "--disable-dev-shm-usage",
                *_merge_disable_features(["LocalNetworkAccessChecks"], self.extra_args),
                "about:blank"]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        # DevToolsActivePort holds "<port>\n/devtools/browser/<id>"; wait until both lines are
        # there (it may be seen half-written).
        while True:
            try:
                lines = port_file.read_text().splitlines()
            except (FileNotFoundError, UnicodeDecodeError):
                lines = []
            if len(lines) >= 2 and lines[0].strip().isdigit():
                self.port = int(lines[0])
                self.browser_ws_path = lines[1].strip()
                break
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited ({self.proc.returncode}) before listening:\n"
                               f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise CDPError(f"no {port_file} within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)
        ws_url = self._page_ws_url(deadline)
        # Entered as a context manager: websockets 17 warns about a bare connect() (and a
        # legacy=True flag would not exist on older versions).
        self._ws_cm = _ws_connect(ws_url, max_size=None, compression=None, proxy=None,
                                  ping_interval=None, close_timeout=2,
                                  open_timeout=max(1.0, deadline - time.monotonic()))
        self.ws = self._ws_cm.__enter__()
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Log.enable")  # browser-side messages: failed loads, blocked requests, ...
        self.send("Page.setLifecycleEventsEnabled", {"enabled": True})
        self._frame_id = self.send("Page.getFrameTree")["frameTree"]["frame"]["id"]
        return self

    def _page_ws_url(self, deadline):
        opener = _no_proxy_opener()
        last = None
        while True:
            try:
                with opener.open(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as r:
                    targets = json.loads(r.read())
                # Besides our page, the list holds "browser_ui" targets (omnibox popups).
                pages = [t for t in targets if t.get("type") == "page"
                         and t.get("webSocketDebuggerUrl")]
                if pages:
                    blank = [t for t in pages if t.get("url") == "about:blank"]
                    return (blank or pages)[0]["webSocketDebuggerUrl"]
                last = f"no page target in {targets}"
            except OSError as e:
                last = e
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited ({self.proc.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise CDPError(f"no page target on port {self.port}: {last}")
            time.sleep(0.02)

    def close(self, timeout=5):
        """Close the browser and make sure nothing of its process group survives."""
        if self.ws is not None:
            try:
                self._ws_cm.__exit__(None, None, None)  # bounded by close_timeout
            except Exception:
                pass
            self.ws = self._ws_cm = None
        if self.proc is not None and self.proc.poll() is None and self.port:
            self._browser_close()
        if self.proc is not None:
            pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
            # After Browser.close the browser exits on its own, and its helpers follow it
            # (the crash handler too); then signals, to the group and to any stray.
            for sig, wait in ((None, timeout), (signal.SIGTERM, 3), (signal.SIGKILL, 5)):
                if self.proc.poll() is None or self.pids():
                    if sig is not None:
                        try:
                            os.killpg(pgid, sig)
                        except (ProcessLookupError, PermissionError):
                            pass
                        for pid in self.pids():  # members of the group and strays
                            try:
                                os.kill(pid, sig)
                            except (ProcessLookupError, PermissionError):
                                pass
                    deadline = time.monotonic() + wait
                    while time.monotonic() < deadline:
                        if self.proc.poll() is not None and not self.pids():
                            break
                        time.sleep(0.02)
            try:
                self.proc.wait(1)
            except subprocess.TimeoutExpired:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def _browser_close(self):
        """Browser.close goes to the browser target (a page session does not have it)."""
        try:
            with _ws_connect(f"ws://127.0.0.1:{self.port}{self.browser_ws_path}",
                             max_size=None, compression=None, proxy=None, ping_interval=None,
                             open_timeout=3, close_timeout=1) as bws:
                bws.send(json.dumps({"id": 1, "method": "Browser.close"}))
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:
                    if json.loads(bws.recv(timeout=max(0.0, deadline - time.monotonic()))
                                  ).get("id") == 1:
                        break
        except (OSError, ConnectionClosed, TimeoutError, ValueError):
            pass  # the browser may drop the connection while exiting; close() goes on

    def pids(self):
        """Live chromium processes of this browser: its process group and the crash handler
        that leaves it (empty once closed)."""
        if self.proc is None:
            return []
        return chromium_pids(self.proc.pid, str(self.tmpdir))

    def log_tail(self, n=4000):
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # ---- protocol ----

    def send(self, method, params=None, timeout=20):
        """Send one CDP command and return its result; events seen meanwhile are buffered."""
        if self.ws is None:
            raise CDPError("not connected")
        cid = next(self._ids)
        self._pending.add(cid)
        try:
            self.ws.send(json.dumps({"id": cid, "method": method, "params": params or {}}))
            deadline = time.monotonic() + timeout
            while cid not in self._responses:
                self._recv_one(deadline, f"the reply to {method}")
            msg = self._responses.pop(cid)
        finally:
            self._pending.discard(cid)
        if "error" in msg:
            e = msg["error"]
            raise CDPError(f"{method} failed: {e.get('message')} {e.get('data', '')}".rstrip())
        return msg.get("result", {})

    def wait_event(self, method, pred=None, timeout=20, after=0):
        """Take (and return the params of) the first buffered or future event `method` with
        sequence number > after for which pred(params) holds."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (seq, m, p) in enumerate(self._events):
                if seq > after and m == method and (pred is None or pred(p)):
                    del self._events[i]
                    return p
            self._recv_one(deadline, f"event {method}")

    def _recv_one(self, deadline, what):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out waiting for {what}")
        try:
            raw = self.ws.recv(timeout=remaining)
        except TimeoutError:
            raise TimeoutError(f"timed out waiting for {what}") from None
        except ConnectionClosed as e:
            raise CDPError(f"DevTools connection closed ({e}) waiting for {what}:\n"
                           f"{self.log_tail()}") from None
        self._dispatch(json.loads(raw))

    def _dispatch(self, msg):
        if "id" in msg:
            if msg["id"] in self._pending:
                self._responses[msg["id"]] = msg
            return  # a late reply to a command that timed out
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            self.console.append(_console_text(params))
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            url = f" ({e['url']})" if e.get("url") else ""
            self.console.append(f"{e.get('source', 'other')} {e.get('level', 'info')}: "
                                f"{e.get('text', '')}{url}")
        elif method == "Runtime.exceptionThrown":
            text = _exception_text(params.get("exceptionDetails", {}))
            self.exceptions.append(text)
            self.console.append(f"uncaught: {text}")
        elif method == "Inspector.targetCrashed":
            raise CDPError(f"the page crashed:\n{self.log_tail()}")
        self._events.append((next(self._seq), method, params))
        if len(self._events) > _MAX_EVENTS:
            self._events.popleft()

    def pump(self):
        """Process the messages that have already arrived, without waiting."""
        if self.ws is None:
            return
        while True:
            try:
                raw = self.ws.recv(timeout=0)
            except (TimeoutError, ConnectionClosed):
                return
            self._dispatch(json.loads(raw))

    # ---- page API ----

    def navigate(self, url, timeout=20):
        """Load url in the page and wait for its load event; return the frame's loaderId."""
        deadline = time.monotonic() + timeout
        res = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if res.get("errorText"):
            raise NavigationError(f"navigating to {url}: {res['errorText']}")
        loader = res.get("loaderId")
        if loader is None:
            return None  # a same-document navigation (only the fragment changed): no load
        # The load event of this very document: Page.lifecycleEvent "load" carries the
        # loaderId that Page.navigate returned, so neither the load event of the previous
        # document nor that of a subframe can be mistaken for it (a bare Page.loadEventFired
        # can be either, and may arrive before or after the reply to Page.navigate).
        frame = res.get("frameId", self._frame_id)
        try:
            self.wait_event("Page.lifecycleEvent",
                            lambda p: p.get("name") == "load" and p.get("loaderId") == loader
                            and p.get("frameId") == frame,
                            timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise TimeoutError(f"{url} did not finish loading within {timeout}s; console: "
                               f"{self.console[-10:]}") from None
        return loader

    def evaluate(self, expr, await_promise=True, timeout=20):
        """Evaluate a JavaScript expression in the page and return its value (JSON-like:
        dict, list, str, int/float, bool, None; undefined is None)."""
        res = self.send("Runtime.evaluate",
                        {"expression": expr, "returnByValue": True,
                         "awaitPromise": await_promise, "userGesture": True,
                         "timeout": int(timeout * 1000)}, timeout=timeout)
        if "exceptionDetails" in res:
            raise JSError(f"{expr!r} threw: {_exception_text(res['exceptionDetails'])}")
        return _value(res.get("result", {}))

    def wait_for(self, expr, timeout=20, interval=0.03):
        """Poll a JavaScript expression until it is truthy and return its value. An
        expression that throws counts as not yet true (the page may still be loading); the
        last error is in the timeout message."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            remaining = deadline - time.monotonic()
            try:
                v = self.evaluate(expr, timeout=max(0.5, remaining))
                if v:
                    return v
                last = f"value {v!r}"
            except JSError as e:
                last = str(e)
            except TimeoutError as e:
                last = str(e)
            if time.monotonic() + interval > deadline:
                raise TimeoutError(f"{expr!r} not truthy within {timeout}s (last: {last}); "
                                   f"console: {self.console[-10:]}; "
                                   f"exceptions: {self.exceptions[-5:]}")
            time.sleep(interval)

    def screenshot(self, path, timeout=20):
        """Write a PNG of the page's viewport to path; return the path."""
        data = self.send("Page.captureScreenshot", {"format": "png"}, timeout=timeout)["data"]
        path = pathlib.Path(path)
        path.write_bytes(base64.b64decode(data))
        return path


class _Console(list):
    """The page's console messages as "level: text" strings. Reading it first takes in the
    messages that have already arrived, so it is current without another command."""

    def __init__(self, browser):
        super().__init__()
        self._browser = browser

    def _fresh(self):
        self._browser.pump()

    def __iter__(self):
        self._fresh()
        return super().__iter__()

    def __len__(self):
        self._fresh()
        return super().__len__()

    def __getitem__(self, i):
        self._fresh()
        return super().__getitem__(i)

    def __contains__(self, x):
        self._fresh()
        return super().__contains__(x)

    def __repr__(self):
        self._fresh()
        return super().__repr__()

    def text(self):
        """All messages, one a line."""
        return "\n".join(self)


def _value(obj):
    if "value" in obj:
        return obj["value"]
    u = obj.get("unserializableValue")
    if u is not None:
        if u.endswith("n"):
            return int(u[:-1])  # BigInt
        return float(u)  # NaN, Infinity, -Infinity, -0
    return None  # undefined (or an object that cannot be returned by value)


def _arg_text(a):
    if "value" in a:
        v = a["value"]
        return v if isinstance(v, str) else json.dumps(v)
    pv = a.get("preview")
    if pv and pv.get("subtype") not in ("error", "node") and "properties" in pv:
        # Objects come as a preview ("Object" alone says little): {x: 1, y: "s"} or [1, 2].
        props = pv["properties"]
        if pv.get("subtype") == "array":
            inner = ", ".join(_preview_value(p) for p in props)
            return f"[{inner}{', ...' if pv.get('overflow') else ''}]"
        inner = ", ".join(f"{p.get('name')}: {_preview_value(p)}" for p in props)
        return f"{{{inner}{', ...' if pv.get('overflow') else ''}}}"
    return a.get("unserializableValue") or a.get("description") or a.get("type", "?")


def _preview_value(p):
    v = p.get("value", p.get("type", "?"))
    return json.dumps(v) if p.get("type") == "string" else str(v)


def _console_text(params):
    return f"{params.get('type', 'log')}: " + " ".join(_arg_text(a)
                                                       for a in params.get("args", []))


def _exception_text(d):
    exc = d.get("exception") or {}
    text = exc.get("description") or (exc.get("value") if "value" in exc else None)
    return str(text or d.get("text") or "unknown exception")
