#!/usr/bin/env python3
"""Helpers for bench/bench.sh (no third-party modules).

  benchlib.py ports N
      print N distinct TCP ports that are free on 127.0.0.1, chosen below
      the kernel's ephemeral range so outgoing connections cannot take them.
  benchlib.py cpu-snap OUT LABEL=PID...
      write CPU ticks used so far by each PID's process tree (the process,
      its live descendants, and the children it has reaped) plus the
      system-wide /proc/stat counters, as JSON.
  benchlib.py iperf FILE
      check an `iperf3 -J` result; print the receiver's Gbit/s, or a
      message on stderr and exit 1 if the run failed.
  benchlib.py report RESULTS_DIR OUT_JSON
      print the results table and write OUT_JSON.
"""
import json
import os
import random
import socket
import sys
import time

# --------------------------------------------------------------------------- ports


def cmd_ports(n: str) -> int:
    want = int(n)
    lo = 20000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
    except OSError:
        eph_lo = 32768
    hi = max(lo + 1000, eph_lo - 1)
    got, held = [], []
    for _ in range(10000):
        if len(got) == want:
            break
        p = random.randint(lo, hi)
        if p in got:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            s.close()
            continue
        held.append(s)
        got.append(p)
    for s in held:
        s.close()
    if len(got) != want:
        print(f"benchlib: could not find {want} free ports", file=sys.stderr)
        return 1
    print(" ".join(map(str, got)))
    return 0


# --------------------------------------------------------------------------- cpu


def _stat(pid: int):
    """(ppid, utime+stime+cutime+cstime) of pid, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            line = f.read()
    except OSError:
        return None
    rest = line[line.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime is field 14 -> rest[11].
    ppid = int(rest[1])
    ticks = sum(int(x) for x in rest[11:15])
    return ppid, ticks


def _all_procs():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                out[int(d)] = st
    return out


def _tree_ticks(root: int, procs) -> int:
    if root not in procs:
        return 0
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += procs[p][1]
        todo.extend(children.get(p, ()))
    return total


def cmd_cpu_snap(out: str, *pairs: str) -> int:
    procs = _all_procs()
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0)
    snap = {
        "t": time.monotonic(),
        "hz": os.sysconf("SC_CLK_TCK"),
        "sys_total": sum(cpu[:8]),
        "sys_busy": sum(cpu[:8]) - idle,
        "procs": {},
    }
    for pair in pairs:
        label, pid = pair.split("=", 1)
        snap["procs"][label] = _tree_ticks(int(pid), procs)
    with open(out, "w") as f:
        json.dump(snap, f)
    return 0


# --------------------------------------------------------------------------- iperf


def _iperf_load(path: str):
    with open(path) as f:
        text = f.read()
    if not text.strip():
        raise ValueError("iperf3 produced no output")
    d = json.loads(text)
    if d.get("error"):
        raise ValueError(f"iperf3: {d['error']}")
    bps = d["end"]["sum_received"]["bits_per_second"]
    if not bps or bps <= 0:
        raise ValueError("iperf3 reported 0 bits/s received")
    return d, bps


def cmd_iperf(path: str) -> int:
    try:
        _, bps = _iperf_load(path)
    except (OSError, ValueError, KeyError) as e:
        print(f"{e}", file=sys.stderr)
        return 1
    print(f"{bps / 1e9:.2f}")
    return 0


# --------------------------------------------------------------------------- report

THROUGHPUT = [
    ("direct", "direct loopback"),
    ("socat_chain", "socat chain (4 TCP hops)"),
    ("ssh_R", "ssh -R aes128-gcm"),
    ("underpass_ws", "underpass ws"),
    ("underpass_ws_reverse", "underpass ws, reverse (-R)"),
    ("underpass_wss", "underpass wss (TLS)"),
]

# (name, numerator, denominator, minimum or None)
RATIOS = [
    ("underpass_ws / ssh_R", "underpass_ws", "ssh_R", 1.5),
    ("underpass_ws / socat_chain", "underpass_ws", "socat_chain", 0.80),
    ("underpass_wss / ssh_R", "underpass_wss", "ssh_R", 1.2),
    ("underpass_ws / direct", "underpass_ws", "direct", None),
]

LATENCY_TARGETS = {"p50_us": 50.0, "p99_us": 200.0}


def _cpu_usage(res: str, name: str, d):
    """Per-process CPU % (of one core) during an iperf run, or None."""
    try:
        with open(os.path.join(res, f"{name}.cpu0.json")) as f:
            a = json.load(f)
        with open(os.path.join(res, f"{name}.cpu1.json")) as f:
            b = json.load(f)
    except OSError:
        return None
    wall = b["t"] - a["t"]
    hz = a["hz"]
    ncpu = os.cpu_count() or 1
    procs = {}
    cu = d["end"].get("cpu_utilization_percent", {})
    if "host_total" in cu:
        procs["iperf3-client"] = round(cu["host_total"], 1)
    for label, t0 in a["procs"].items():
        t1 = b["procs"].get(label, t0)
        procs[label] = round(100.0 * (t1 - t0) / hz / wall, 1)
    if "remote_total" in cu:
        procs["iperf3-server"] = round(cu["remote_total"], 1)
    dt = b["sys_total"] - a["sys_total"]
    busy = 100.0 * ncpu * (b["sys_busy"] - a["sys_busy"]) / dt if dt else 0.0
    # What the benchmark's own processes did not use: other load on the host
    # (plus kernel work not charged to any process). High values mean noise.
    others = max(0.0, busy - sum(procs.values()))
    return {"procs_pct_of_core": procs, "system_busy_pct": round(busy, 1),
            "others_pct": round(others, 1),
            "system_capacity_pct": 100 * ncpu, "wall_s": round(wall, 2)}


def cmd_report(res: str, out_json: str) -> int:
    with open(os.path.join(res, "meta.json")) as f:
        meta = json.load(f)
    gbps, cpu, retrans = {}, {}, {}
    for key, _ in THROUGHPUT:
        p = os.path.join(res, f"{key}.iperf.json")
        if not os.path.exists(p):
            continue
        d, bps = _iperf_load(p)
        gbps[key] = round(bps / 1e9, 3)
        retrans[key] = d["end"].get("sum_sent", {}).get("retransmits")
        c = _cpu_usage(res, key, d)
        if c:
            cpu[key] = c

    ratios = {}
    for name, num, den, target in RATIOS:
        if num in gbps and den in gbps and gbps[den] > 0:
            v = gbps[num] / gbps[den]
            ratios[name] = {"value": round(v, 3), "target_min": target,
                            "met": None if target is None else v >= target}

    lat = {}
    for key in ("direct", "underpass_ws", "socat_chain", "underpass_ws_under_bulk"):
        p = os.path.join(res, f"latency_{key}.json")
        if os.path.exists(p):
            with open(p) as f:
                lat[key] = json.load(f)
    added, added_socat = {}, {}
    if "direct" in lat and "underpass_ws" in lat:
        for k, tmax in LATENCY_TARGETS.items():
            v = lat["underpass_ws"][k] - lat["direct"][k]
            added[k] = {"value": round(v, 1), "target_max": tmax, "met": v <= tmax}
    if "direct" in lat and "socat_chain" in lat:
        for k in LATENCY_TARGETS:
            added_socat[k] = round(lat["socat_chain"][k] - lat["direct"][k], 1)
    lat["added"] = added
    lat["added_socat_chain"] = added_socat

    under_bulk = {}
    if "underpass_ws_under_bulk" in lat:
        v = lat["underpass_ws_under_bulk"]["p99_us"]
        under_bulk = {"p99_us": {"value": v, "target_max": 2000.0, "met": v <= 2000.0}}
    lat["under_bulk"] = under_bulk
    met = [r["met"] for r in ratios.values() if r["met"] is not None]
    met += [a["met"] for a in added.values()]
    met += [a["met"] for a in under_bulk.values()]
    result = {
        "meta": meta,
        "throughput_gbps": gbps,
        "retransmits": retrans,
        "ratios": ratios,
        "latency_us": lat,
        "cpu": cpu,
        "all_targets_met": all(met) if met else None,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
    with open(out_json, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    ok = lambda m: "ok" if m else "MISSED"
    w = print
    w("")
    w(f"underpass bench ({meta['mode']}): iperf3 1 stream -t {meta['iperf_seconds']}, "
      f"ping-pong {meta['pingpong_rounds']} rounds; {meta['cpus']} CPUs, {meta['kernel']}")
    w(f"{meta['underpass_version']} (git {meta.get('git', '?')}), {meta['iperf3']}, "
      f"socat {meta.get('socat', '?')}, {meta['ssh']}")
    w("")
    w(f"{'throughput (receiver)':<32}{'Gbit/s':>8}  {'host CPU':>9} {'others':>7}   "
      "bench processes (% of a core)")
    noisy = 0.0
    for key, label in THROUGHPUT:
        if key not in gbps:
            continue
        c = cpu.get(key)
        busy = f"{c['system_busy_pct']:.0f}/{c['system_capacity_pct']}%" if c else ""
        oth = f"{c['others_pct']:.0f}%" if c else ""
        top = ""
        if c:
            noisy = max(noisy, c["others_pct"])
            items = sorted(c["procs_pct_of_core"].items(), key=lambda kv: -kv[1])
            top = ", ".join(f"{k} {v:.0f}" for k, v in items[:5])
        w(f"  {label:<30}{gbps[key]:>8.2f}  {busy:>9} {oth:>7}   {top}")
    if noisy >= 25:
        w(f"  warning: up to {noisy:.0f}% of a core went to processes outside the benchmark"
          " during a run; the host was not idle and the numbers are noisy")
    w("")
    w(f"{'ratio':<32}{'value':>8}   {'target':>13}")
    for name, num, den, target in RATIOS:
        if name not in ratios:
            continue
        r = ratios[name]
        tgt = f">= {target:.2f}" if target is not None else "(info)"
        st = "" if r["met"] is None else ok(r["met"])
        w(f"  {name:<30}{r['value']:>8.2f}   {tgt:>13}   {st}")
    w("")
    w(f"{'latency, 1-byte RTT (us)':<32}{'p50':>8}{'p99':>10}")
    for key, label in (("direct", "direct (echo)"), ("underpass_ws", "underpass ws")):
        if key in lat:
            w(f"  {label:<30}{lat[key]['p50_us']:>8.1f}{lat[key]['p99_us']:>10.1f}")
    if "socat_chain" in lat:
        w(f"  {'socat chain (reference)':<30}{lat['socat_chain']['p50_us']:>8.1f}"
          f"{lat['socat_chain']['p99_us']:>10.1f}")
    if added:
        a50, a99 = added["p50_us"], added["p99_us"]
        w(f"  {'added by underpass':<30}{a50['value']:>8.1f}{a99['value']:>10.1f}"
          f"   target p50 <= {a50['target_max']:.0f} {ok(a50['met'])}, "
          f"p99 <= {a99['target_max']:.0f} {ok(a99['met'])}")
    if added_socat:
        w(f"  {'added by socat chain':<30}{added_socat['p50_us']:>8.1f}"
          f"{added_socat['p99_us']:>10.1f}   (info: 3 user-space hops on this host)")
    if under_bulk:
        ub = lat["underpass_ws_under_bulk"]
        w(f"  {'underpass ws beside a bulk':<30}{ub['p50_us']:>8.1f}{ub['p99_us']:>10.1f}"
          f"   target p99 <= 2000 {ok(under_bulk['p99_us']['met'])} (same agent link, "
          f"iperf3 saturating)")
    w("")
    if result["all_targets_met"] is not None:
        w("all targets met" if result["all_targets_met"] else "some targets MISSED (reported, not gated)")
    w(f"results: {out_json}")
    return 0


def cmd_ab_report(res: str, out_json: str) -> int:
    """The A/B section: medians of each binary's ws/wss Gbit/s and ws round trips (added over
    the direct echo measured earlier in the run), and new/old ratios."""
    import statistics
    direct = {}
    p = os.path.join(res, "latency_direct.json")
    if os.path.exists(p):
        with open(p) as f:
            direct = json.load(f)
    med = {}
    for which in ("base", "new"):
        m = {}
        for kind in ("ws", "wss"):
            vals = []
            for r in (1, 2):
                q = os.path.join(res, f"ab_{which}_{kind}_{r}.iperf.json")
                if os.path.exists(q):
                    vals.append(_iperf_load(q)[1] / 1e9)
            if vals:
                m[f"{kind}_gbps"] = round(statistics.median(vals), 3)
        for k in ("p50_us", "p99_us"):
            vals = []
            for r in (1, 2):
                q = os.path.join(res, f"latency_ab_{which}_{r}.json")
                if os.path.exists(q):
                    with open(q) as f:
                        vals.append(json.load(f)[k] - direct.get(k, 0.0))
            if vals:
                m[f"added_{k}"] = round(statistics.median(vals), 1)
        med[which] = m
    ratios = {k: round(med["new"][k] / med["base"][k], 3)
              for k in med["new"] if k in med["base"] and med["base"][k] > 0}
    with open(out_json, "w") as f:
        json.dump({"median": med, "new_over_base": ratios}, f, indent=2)
        f.write("\n")
    w = print
    w("")
    w("A/B against the baseline binary (medians; new / old; throughput: higher is better,")
    w("added latency: lower is better)")
    w(f"{'':<26}{'old':>10}{'new':>10}{'new/old':>10}")
    for k, label in (("ws_gbps", "ws Gbit/s"), ("wss_gbps", "wss Gbit/s"),
                     ("added_p50_us", "ws added p50 (us)"), ("added_p99_us", "ws added p99 (us)")):
        if k in ratios:
            w(f"  {label:<24}{med['base'][k]:>10.2f}{med['new'][k]:>10.2f}{ratios[k]:>10.3f}")
    w(f"A/B results: {out_json}")
    return 0


def main(argv) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    fn = {"ports": cmd_ports, "cpu-snap": cmd_cpu_snap, "iperf": cmd_iperf,
          "ab-report": cmd_ab_report,
          "report": cmd_report}.get(cmd)
    if fn is None:
        print(__doc__, file=sys.stderr)
        return 2
    return fn(*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
