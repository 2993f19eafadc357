#!/usr/bin/env bash
# TURN relay benchmark: `underpass turn` against coturn's turnserver, in one run, on 127.0.0.1.
#
#   bench/turn.sh [--smoke] [--bin PATH] [--out DIR]
#   (--bin defaults to $UNDERPASS_BENCH_BIN, else build/underpass; BENCH_SMOKE=1 = --smoke)
#
# Both servers get the same options (tests/integration/turn_harness.py builds both command
# lines), the same client and the same cases: the pion/turn client (tests/turn/pionclient, built
# here with go) allocates relays, binds a channel to a UDP echo peer of its own and exchanges
# datagrams of 100 and 1000 bytes through the relay, over UDP and over TCP to the server:
#   rate      4 clients, 32 datagrams in flight each: echoed datagrams per second
#             (each is relayed twice: client -> peer and back), and the server's CPU time
#             per echo (on a small machine the client, not the server, may set the rate)
#   latency   1 client, ping-pong: round-trip p50 and p99 in microseconds
# Every datagram is checked byte for byte; any loss fails the case.
#
# Prints a table with the ratios underpass/coturn (rate: higher is better, latency: lower is
# better) and writes DIR/results.json (default bench/out/turn), raw client output in DIR/raw
# and process logs in DIR/logs. While `underpass turn --help` does not exit 0 the underpass
# column is skipped, with a message. Exit status: 0 when every measurement was made, 1 if one
# could not be made, 2 for a usage error or a missing tool.
#
# Every process it starts is killed on exit; every wait has a deadline.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BIN=${UNDERPASS_BENCH_BIN:-$ROOT/build/underpass}
OUT=$HERE/out/turn
SMOKE=${BENCH_SMOKE:-0}
[[ $SMOKE == 1 ]] || SMOKE=0

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
while (($#)); do
    case $1 in
        --smoke) SMOKE=1 ;;
        --bin) BIN=${2:?--bin needs a path}; shift ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if ((SMOKE)); then
    MODE=smoke DUR=3
else
    MODE=full DUR=10
fi
SIZES=(100 1000)
TRANSPORTS=(udp tcp)
RATE_CLIENTS=4 RATE_WINDOW=32
READY_S=15 # deadline for any process to become ready
TURN_USER=bench TURN_PASS=$(openssl rand -hex 12 2>/dev/null || echo bench-pass)

say() { printf 'bench: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- prerequisites

missing=()
for t in turnserver go python3 openssl timeout awk pgrep; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if ((${#missing[@]})); then
    say "error: missing tool(s): ${missing[*]} (scripts/deps.sh installs coturn; go is needed for the pion client)"
    exit 2
fi
HARNESS=$ROOT/tests/integration/turn_harness.py
UNDERPASS=0
UNDERPASS_WHY=""
if [[ ! -x $BIN ]]; then
    UNDERPASS_WHY="no underpass binary at $BIN"
elif ! timeout 10 "$BIN" turn --help >/dev/null 2>&1; then
    UNDERPASS_WHY="'$BIN turn --help' does not exit 0: \`underpass turn\` is not available yet"
else
    UNDERPASS=1
fi

# Only our own settings reach underpass.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^UNDERPASS_' || true)

W=$(mktemp -d "${TMPDIR:-/tmp}/underpass-turn-bench.XXXXXX")
LOG=$W/logs
RES=$OUT/raw
mkdir -p "$LOG" "$W/state" "$OUT"
rm -rf "$RES" "$OUT/logs" "$OUT/results.json"
mkdir -p "$RES"

# ---------------------------------------------------------------- processes

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

stun_answers() { python3 "$HARNESS" stun "$1" 0.3 >/dev/null 2>&1; } # PORT


lib() { python3 "$HERE/benchlib.py" "$@"; }

# ---------------------------------------------------------------- the client

say "building the pion/turn client (go -C tests/turn/pionclient build)"
if ! timeout 600 go -C "$ROOT/tests/turn/pionclient" build -o "$W/pionclient" . >"$LOG/go-build.log" 2>&1; then
    fail "could not build the pion client (the first build needs the Go module proxy or a filled module cache)" go-build
fi
PION=$W/pionclient

# ---------------------------------------------------------------- servers

# server_up KIND: start turn-KIND on a fresh port with the same options for both kinds.
server_up() {
    local kind=$1 port lo hi
    local -a argv=()
    # a server port free for TCP and UDP, and 200 relay ports, below the ephemeral range
    read -r port lo hi < <(python3 - "$ROOT/tests/integration" <<'PY'
import random, socket, sys
sys.path.insert(0, sys.argv[1])
import turn_harness as t
lo, hi = t.relay_port_range(200)
for _ in range(1000):
    p = random.randint(20000, 32000)
    if lo <= p <= hi:
        continue
    ok = True
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        s.close()
    if ok:
        print(p, lo, hi)
        break
PY
    ) || true
    [[ -n ${hi:-} ]] || fail "could not pick free ports"
    mapfile -t argv < <(python3 "$HARNESS" argv "$kind" --bin "$BIN" --port "$port" \
        --min-port "$lo" --max-port "$hi" --dir "$W/state" --user "$TURN_USER:$TURN_PASS" \
        --allow-peer 127.0.0.0/8) || fail "could not build the $kind command line"
    ((${#argv[@]})) || fail "could not build the $kind command line"
    printf '%s\n' "${argv[*]}" >"$LOG/turn-$kind.cmdline"
    start "turn-$kind" "${argv[@]}"
    if [[ $kind == coturn ]]; then
        wait_until "coturn's UDP listener" "turn-$kind" log_has "turn-$kind" "UDP listener opened on: 127.0.0.1:$port"
    else
        wait_until "'turn ready on' from underpass turn" "turn-$kind" log_has "turn-$kind" "turn ready on"
    fi
    wait_until "a STUN answer on :$port" "turn-$kind" stun_answers "$port"
    SERVER_PORT=$port
}

# measure KIND CASE TRANSPORT SIZE CLIENTS WINDOW: one pion run against turn-KIND, with the
# server's CPU around it; results in $RES/KIND.CASE.TRANSPORT.SIZE.{json,cpu0.json,cpu1.json}
measure() {
    local kind=$1 case=$2 tr=$3 size=$4 clients=$5 window=$6
    local key="$kind.$case.$tr.$size"
    local -a extra=()
    [[ $tr == tcp ]] && extra=(-tcp)
    say "  $kind $case $tr ${size} B (${clients} client(s) x window $window, ${DUR}s)"
    lib cpu-snap "$RES/$key.cpu0.json" "server=${PID[turn-$kind]}"
    if ! run_tracked "pion-$key" "$RES/$key.json" "$LOG/pion-$key.log" \
        timeout $((DUR + 60)) "$PION" -server "127.0.0.1:$SERVER_PORT" -user "$TURN_USER" \
        -pass "$TURN_PASS" -realm example.org -size "$size" -clients "$clients" \
        -window "$window" -duration "${DUR}s" -deadline "$((DUR + 45))s" "${extra[@]}"; then
        cp "$RES/$key.json" "$LOG/pion-$key.out" 2>/dev/null || true
        fail "$key: the pion client failed: $(cat "$RES/$key.json" 2>/dev/null | head -c 600)" \
            "pion-$key" "turn-$kind"
    fi
    lib cpu-snap "$RES/$key.cpu1.json" "server=${PID[turn-$kind]}"
}

run_kind() { # KIND: every case against one server
    local kind=$1 tr size
    say "$kind:"
    server_up "$kind"
    for tr in "${TRANSPORTS[@]}"; do
        for size in "${SIZES[@]}"; do
            measure "$kind" rate "$tr" "$size" "$RATE_CLIENTS" "$RATE_WINDOW"
            measure "$kind" latency "$tr" "$size" 1 1
        done
    done
    stop "turn-$kind"
}

COTURN_VERSION=$(turnserver --version 2>&1 | head -n 1 || true)
say "$MODE run: ${DUR}s per case, $(nproc) CPUs, coturn ${COTURN_VERSION:-?}, logs in $OUT/logs"
KINDS=(coturn)
if ((UNDERPASS)); then
    KINDS+=(underpass)
else
    say "underpass column skipped: $UNDERPASS_WHY"
fi
for k in "${KINDS[@]}"; do run_kind "$k"; done

# ---------------------------------------------------------------- report

python3 - "$RES" "$OUT/results.json" "$MODE" "$DUR" "$UNDERPASS_WHY" "$COTURN_VERSION" \
    "${KINDS[*]}" "${TRANSPORTS[*]}" "${SIZES[*]}" "$RATE_CLIENTS" "$RATE_WINDOW" <<'PY' ||
import json, os, sys, time
res, out, mode, dur, why, coturn_v, kinds, trs, sizes, rc, rw = sys.argv[1:]
kinds, trs, sizes = kinds.split(), trs.split(), [int(s) for s in sizes.split()]

def load(kind, case, tr, size):
    key = f"{kind}.{case}.{tr}.{size}"
    with open(os.path.join(res, key + ".json")) as f:
        d = json.loads(f.read().strip().splitlines()[-1])
    c0 = json.load(open(os.path.join(res, key + ".cpu0.json")))
    c1 = json.load(open(os.path.join(res, key + ".cpu1.json")))
    secs = c1["t"] - c0["t"]
    cpu_s = (c1["procs"]["server"] - c0["procs"]["server"]) / c0["hz"]
    d["server_cpu_pct"] = 100.0 * cpu_s / secs
    d["server_cpu_us_per_echo"] = 1e6 * cpu_s / d["received"] if d["received"] else None
    return d

rows, results = [], {}
for tr in trs:
    for size in sizes:
        for case, metric, label, better in (("rate", "msgs_per_s", "echoes/s", "higher"),
                                            ("rate", "server_cpu_us_per_echo", "server CPU us/echo",
                                             "lower"),
                                            ("latency", "p50_us", "p50 us", "lower"),
                                            ("latency", "p99_us", "p99 us", "lower")):
            vals = {}
            for k in kinds:
                d = load(k, case, tr, size)
                results.setdefault(k, {})[f"{case}.{tr}.{size}"] = d
                vals[k] = d[metric]
            rows.append((f"{tr} {size:>4} B  {label}", vals, better))

def fmt(v):
    return "-" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}")

print()
print(f"TURN relay on 127.0.0.1 ({mode}, {dur}s per case; pion/turn client, channel bound; "
      f"rate: {rc} clients x {rw} in flight, latency: 1 client ping-pong)")
hdr = f"{'case':<34} {'coturn':>12} {'underpass':>12} {'underpass/coturn':>22}"
print(hdr)
print("-" * len(hdr))
for name, vals, better in rows:
    c, u = vals.get("coturn"), vals.get("underpass")
    ratio = f"{u / c:.2f} ({better} better)" if (u is not None and c) else "-"
    print(f"{name:<34} {fmt(c):>12} {fmt(u):>12} {ratio:>22}")
if why:
    print(f"\nunderpass column skipped: {why}")
json.dump({"mode": mode, "seconds_per_case": int(dur), "cpus": os.cpu_count(),
           "coturn": coturn_v, "underpass_skipped": why or None,
           "rate_clients": int(rc), "rate_window": int(rw),
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "results": results}, open(out, "w"), indent=2)
print(f"\nresults: {out}")
PY
    fail "could not build the report"
