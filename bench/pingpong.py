#!/usr/bin/env python3
"""1-byte ping-pong latency probe.

Connects to HOST:PORT (TCP_NODELAY), then N times: send 1 byte, wait for
1 byte back, and times each round trip with a monotonic clock. The first
--warmup rounds are not counted. Prints one JSON object on stdout:
{"n":..., "p50_us":..., "p90_us":..., "p99_us":..., "mean_us":..., "min_us":..., "max_us":...}
Exits non-zero (with a message on stderr) if the peer does not echo.
"""
import argparse
import json
import math
import socket
import sys
import time


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        raise ValueError("no samples")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("-n", "--rounds", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="seconds to wait for any single reply")
    args = ap.parse_args()

    s = socket.create_connection((args.host, args.port), timeout=args.timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(args.timeout)
    ping = b"x"
    send, recv = s.send, s.recv
    clock = time.perf_counter_ns
    samples = []
    try:
        for i in range(args.warmup + args.rounds):
            t0 = clock()
            send(ping)
            got = recv(1)
            t1 = clock()
            if got != ping:
                print(f"pingpong: round {i}: expected {ping!r}, got {got!r}"
                      f" ({'connection closed' if not got else 'wrong byte'})", file=sys.stderr)
                return 1
            if i >= args.warmup:
                samples.append(t1 - t0)
    except (socket.timeout, OSError) as e:
        print(f"pingpong: round {len(samples)}: {e}", file=sys.stderr)
        return 1
    finally:
        s.close()

    samples.sort()
    us = lambda ns: round(ns / 1000.0, 1)
    print(json.dumps({
        "n": len(samples),
        "p50_us": us(percentile(samples, 50)),
        "p90_us": us(percentile(samples, 90)),
        "p99_us": us(percentile(samples, 99)),
        "mean_us": us(sum(samples) / len(samples)),
        "min_us": us(samples[0]),
        "max_us": us(samples[-1]),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
