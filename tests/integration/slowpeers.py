"""Processes for the slow-reader tests (test_slow_readers.py), each run on its own so that
nothing but the tunnel shares a CPU budget with what is measured. Loopback only.

  slowpeers.py serve --mode flood|sink|echo|http PORTFILE
      flood: write to every accepted connection as fast as it takes, never read
      sink:  accept, shrink the receive buffer, never read
      gulp:  read the first 4 MiB of each connection at once, then never read again
      echo:  1-byte (or any) echo
      http:  HTTP/1.1 server whose every GET answers with an endless-looking 1 GiB body
  slowpeers.py hold --port P --n N --mode read|write [--http]
      open N connections to P; `read`: a 4 KiB receive buffer and never read (the stall
      is toward the client); `write`: write to each until it blocks, again every 50 ms
      (the stall is toward the service); --http HOST: send one GET for HOST first and
      never read the answer. Closing resets the connections (clients that went away). Prints "opened N <monotonic>" once all are open, holds them until stdin closes.
  slowpeers.py ping --port P --out FILE
      1-byte round trips one after another until stdin closes; FILE gets one line per round
      trip: "<monotonic start> <seconds>".
"""
import argparse
import os
import select
import socket
import struct
import sys
import threading
import time

CHUNK = b"x" * 65536
# The send buffer of the test's own writers (flood, http, hold --mode write). Left to the
# kernel, a loopback socket's send buffer autotunes to 4 MiB at once (its 64 KiB MSS sizes it),
# so a thousand writers that nobody reads park 4 GiB in the kernel: past tcp_mem, which stalls
# every TCP connection on the host, and seconds of the writers' own CPU. Across a network
# (1448-byte MSS) the kernel starts a writer near 100 KiB; this is that, fixed.
SNDBUF = 64 * 1024
GULP = 4 << 20  # what a gulp service reads of each connection before it stops reading


def stdin_closed_event():
    ev = threading.Event()

    def watch():
        try:
            while sys.stdin.buffer.read(1):
                pass
        finally:
            ev.set()
    threading.Thread(target=watch, daemon=True).start()
    return ev


def serve(args):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)
    ls.setblocking(False)
    tmp = args.portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(tmp, args.portfile)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    http_head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                 b"Content-Length: 1073741824\r\n\r\n")
    conns = {}  # fd -> [socket, mode, request bytes]
    stop = stdin_closed_event()

    def drop(fd):
        ep.unregister(fd)
        conns.pop(fd)[0].close()

    while not stop.is_set():
        for fd, ev in ep.poll(0.5):
            if fd == ls.fileno():
                while True:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    mode = args.mode
                    if mode == "gulp":
                        # Read the first GULP bytes as fast as they come, then never again.
                        ep.register(c.fileno(), select.EPOLLIN)
                    elif mode == "sink":
                        # Never read; only notice the peer going away.
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                        ep.register(c.fileno(), select.EPOLLRDHUP)
                    elif mode == "flood":
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
                        ep.register(c.fileno(), select.EPOLLOUT | select.EPOLLIN)
                    else:  # echo, http
                        if mode == "http":
                            c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
                        ep.register(c.fileno(), select.EPOLLIN)
                    conns[c.fileno()] = [c, mode, b"", 0]
                continue
            c, mode, req, _ = conns[fd]
            try:
                if ev & (select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR) and mode == "sink":
                    drop(fd)
                elif mode == "gulp":
                    d = c.recv(65536)
                    if not d:
                        drop(fd)
                        continue
                    conns[fd][3] += len(d)
                    if conns[fd][3] >= GULP:
                        conns[fd][1] = "sink"
                        ep.modify(fd, select.EPOLLRDHUP)
                elif mode == "echo":
                    d = c.recv(65536)
                    if not d:
                        drop(fd)
                        continue
                    c.send(d)
                elif mode == "flood":
                    if ev & select.EPOLLIN and not c.recv(65536):
                        drop(fd)
                        continue
                    if ev & select.EPOLLOUT:
                        while c.send(CHUNK) == len(CHUNK):
                            pass
                elif mode == "http":
                    d = c.recv(4096)
                    if not d:
                        drop(fd)
                        continue
                    conns[fd][2] = req + d
                    if b"\r\n\r\n" in conns[fd][2]:
                        c.send(http_head)
                        conns[fd][1] = "flood"
                        ep.modify(fd, select.EPOLLOUT | select.EPOLLIN)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                drop(fd)


def hold(args):
    socks = []
    for _ in range(args.n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if args.mode == "write":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.sndbuf)
        s.connect(("127.0.0.1", args.port))
        s.setblocking(False)
        if args.http:
            s.send(b"GET /big HTTP/1.1\r\nHost: %s\r\n\r\n" % args.http.encode())
        socks.append(s)
    print(f"opened {len(socks)} {time.monotonic():.6f}", flush=True)
    stop = stdin_closed_event()
    while not stop.wait(0.05):
        if args.mode != "write":
            continue
        for s in socks:
            try:
                while s.send(CHUNK) > 0:
                    pass
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                pass
    for s in socks:
        # Gone, not finished: a reset, as when a client is killed or its network drops. (A
        # FIN would wait, as it should, behind the bytes the service never read.)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def ping(args):
    s = socket.create_connection(("127.0.0.1", args.port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stop = stdin_closed_event()
    with open(args.out, "w", buffering=1) as f:
        while not stop.is_set():
            t0 = time.monotonic()
            s.sendall(b"p")
            if s.recv(1) != b"p":
                f.write("lost\n")
                return
            f.write(f"{t0:.6f} {time.monotonic() - t0:.6f}\n")
            time.sleep(0.002)


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    raise_nofile()
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--mode", choices=("flood", "sink", "gulp", "echo", "http"), required=True)
    p.add_argument("portfile")
    p = sub.add_parser("hold")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--mode", choices=("read", "write"), default="read")
    p.add_argument("--http", metavar="HOST", help="send one GET with this Host first")
    p.add_argument("--sndbuf", type=int, default=SNDBUF, help="send buffer (--mode write)")
    p = sub.add_parser("ping")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    a = ap.parse_args()
    {"serve": serve, "hold": hold, "ping": ping}[a.cmd](a)


if __name__ == "__main__":
    main()
