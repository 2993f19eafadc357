#!/usr/bin/env bash
# Throughput and latency benchmark for underpass, against baselines, on 127.0.0.1.
#
#   bench/bench.sh [--smoke] [--bin PATH] [--baseline PATH] [--out DIR]
#   (--bin defaults to $UNDERPASS_BENCH_BIN, else build/underpass)
#
# With --baseline OLD (another underpass binary, e.g. built from the last release or from
# main before a change) the run ends with an A/B section: ws and wss throughput and the ws
# ping-pong, measured for OLD and for the new binary in alternation (old, new, new, old ...;
# 2 rounds each, 1 in smoke mode), on the same ports and services. It prints new/old ratios
# of the medians; `make bench BASELINE=OLD` passes it on.
#
# Measures in one run (iperf3, one stream, receiver's bits/s):
#   direct loopback          iperf3 -c -> iperf3 -s
#   socat chain              iperf3 -c -> socat A -> socat B -> socat C -> iperf3 -s
#                            (the same 4 TCP hops as underpass)
#   ssh -R aes128-gcm        iperf3 -c -> sshd (remote forward) -> ssh -> iperf3 -s
#   underpass ws             iperf3 -c -> connect -> relay <- agent -> iperf3 -s
#   underpass ws reverse     the same with iperf3 -R (server sends)
#   underpass wss            the same over TLS (relay --tls-cert, --ca on both ends)
# and 1-byte ping-pong round trips (bench/pingpong.py) against bench/echo.py:
# directly, through underpass ws, and through a socat chain (3 relays with
# TCP_NODELAY: what three user-space hops cost on this host, for reference).
#
# Prints a table with the ratios the project tracks and their targets, and
# writes bench/out/results.json (raw iperf3 output in bench/out/raw, process
# logs in bench/out/logs). Missed targets are reported, not gated: the exit
# status is 0 whenever every measurement was made, 1 if one could not be made,
# 2 for a usage error or a missing tool.
#
# Every process it starts is killed on exit; every wait is for a condition
# (a port listening, a log line, a process exiting) with a deadline.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BIN=${UNDERPASS_BENCH_BIN:-$ROOT/build/underpass}
OUT=$HERE/out
SMOKE=0
BASE_BIN=

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
while (($#)); do
    case $1 in
        --smoke) SMOKE=1 ;;
        --bin) BIN=${2:?--bin needs a path}; shift ;;
        --baseline) BASE_BIN=${2:?--baseline needs a path}; shift ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if ((SMOKE)); then
    MODE=smoke DUR=3 ROUNDS=2000 WARMUP=100
else
    MODE=full DUR=10 ROUNDS=20000 WARMUP=500
fi
READY_S=15 # deadline for any process to become ready

say() { printf 'bench: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- prerequisites

missing=()
for t in iperf3 socat sshd ssh ssh-keygen openssl python3 timeout awk; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if ((${#missing[@]})); then
    say "error: missing tool(s): ${missing[*]} (scripts/deps.sh installs them)"
    exit 2
fi
if [[ ! -x $BIN ]]; then
    say "error: underpass binary not found at $BIN; build it first:"
    say "  cmake -S $ROOT -B $ROOT/build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo && ninja -C $ROOT/build"
    exit 2
fi
if [[ -n $BASE_BIN && ! -x $BASE_BIN ]]; then
    say "error: --baseline $BASE_BIN is not an executable underpass binary"
    exit 2
fi
if [[ ! -r /proc/net/tcp ]]; then
    say "error: /proc/net/tcp is not readable (needed to see when a port listens)"
    exit 2
fi
SSHD=$(command -v sshd)
if [[ $SSHD != /* ]]; then SSHD=$(readlink -f "$SSHD"); fi
SSH_USER=$(id -un)
if [[ $(id -u) -eq 0 && ! -d /run/sshd ]]; then
    # sshd running as root refuses to start without its privilege-separation dir.
    mkdir -p -m 0755 /run/sshd
fi

# Only our own settings reach underpass.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^UNDERPASS_' || true)

W=$(mktemp -d "${TMPDIR:-/tmp}/underpass-bench.XXXXXX")
LOG=$W/logs
RES=$OUT/raw
mkdir -p "$LOG" "$W/ssh" "$W/tls" "$OUT"
rm -rf "$RES" "$OUT/logs" "$OUT/results.json"
mkdir -p "$RES"

# ---------------------------------------------------------------- processes

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

listening() { # PORT: something listens on TCP PORT (v4 or v6)
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" 'substr($2, length($2) - 4) == p && $4 == "0A" { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}



wait_exit() { # NAME SECONDS: wait for NAME to exit on its own; then stop it anyway
    local name=$1 end pid=${PID[$1]:-}
    [[ -n $pid ]] || return 0
    end=$((${EPOCHREALTIME/./} + $2 * 1000000))
    while alive "$pid" && ((${EPOCHREALTIME/./} < end)); do sleep 0.02; done
    stop "$name"
}

# ---------------------------------------------------------------- measurements

lib() { python3 "$HERE/benchlib.py" "$@"; }

iperf_server() { # NAME PORT: a one-shot iperf3 server (waits for the previous NAME to finish)
    wait_exit "$1" 10
    start "$1" iperf3 -s -1 -B 127.0.0.1 -p "$2"
    wait_until "iperf3 server to listen on :$2" "$1" listening "$2"
}

# run_iperf KEY PORT SERVER_NAME [-R] [LABEL=NAME...]
# iperf3 client to PORT; CPU of each NAME's process tree is recorded as LABEL.
run_iperf() {
    local key=$1 port=$2 server=$3 pair gbps
    shift 3
    local -a extra=() cpu=()
    if [[ ${1:-} == -R ]]; then extra=(-R); shift; fi
    for pair in "$@"; do cpu+=("${pair%%=*}=${PID[${pair#*=}]}"); done
    say "measuring $key (iperf3 -t $DUR${extra[*]:+ ${extra[*]}})"
    lib cpu-snap "$RES/$key.cpu0.json" "${cpu[@]}"
    if ! run_tracked "iperf-client-$key" "$RES/$key.iperf.json" "$LOG/iperf-client-$key.log" \
        timeout $((DUR + 30)) iperf3 -c 127.0.0.1 -p "$port" -t "$DUR" -J --connect-timeout 5000 \
        "${extra[@]}"; then
        local why
        why=$(lib iperf "$RES/$key.iperf.json" 2>&1 >/dev/null || true)
        fail "iperf3 for $key failed: ${why:-see iperf-client-$key.log}" "iperf-client-$key" "$server" "${@##*=}"
    fi
    lib cpu-snap "$RES/$key.cpu1.json" "${cpu[@]}"
    gbps=$(lib iperf "$RES/$key.iperf.json" 2>&1) || fail "$key: $gbps" "$server"
    say "  $key: $gbps Gbit/s"
}

run_pingpong() { # KEY PORT [LOGNAMES...]
    local key=$1 port=$2
    shift 2
    say "measuring latency_$key ($ROUNDS round trips)"
    if ! run_tracked "pingpong-$key" "$RES/latency_$key.json" "$LOG/pingpong-$key.log" \
        timeout $((30 + ROUNDS / 100)) python3 "$HERE/pingpong.py" -n "$ROUNDS" --warmup "$WARMUP" \
        127.0.0.1 "$port"; then
        fail "ping-pong for $key failed (timed out or no echo)" "pingpong-$key" "$@"
    fi
    say "  $(cat "$RES/latency_$key.json")"
}

read -r P_IPERF_DIRECT P_IPERF_SOCAT P_SOCAT_A P_SOCAT_B P_SOCAT_C P_IPERF_SSH P_SSHD P_SSH_R \
    P_IPERF_WS P_RELAY_WS P_CONN_WS P_ECHO P_CONN_WS_ECHO P_IPERF_WSS P_RELAY_WSS P_CONN_WSS \
    P_ESOCAT_A P_ESOCAT_B P_ESOCAT_C < <(lib ports 19) || true
[[ -n ${P_ESOCAT_C:-} ]] || { say "error: could not pick free ports"; exit 1; }

UP_VERSION=$("$BIN" version 2>&1 | head -n 1) || fail "'$BIN version' failed"
say "$MODE run: $UP_VERSION ($BIN), $(nproc) CPUs, logs in $OUT/logs"

# 1. direct loopback
iperf_server iperf-direct "$P_IPERF_DIRECT"
run_iperf direct "$P_IPERF_DIRECT" iperf-direct
wait_exit iperf-direct 10

# socat_chain PREFIX TARGET_PORT PORT_A PORT_B PORT_C [ADDRESS_OPTS]
# Three socat relays PREFIX-a -> PREFIX-b -> PREFIX-c -> TARGET_PORT (4 TCP hops in all).
socat_chain() {
    local pre=$1 target=$2 pa=$3 pb=$4 pc=$5 o=${6:-} s
    start "$pre-c" socat -b 262144 "TCP-LISTEN:$pc,bind=127.0.0.1,reuseaddr,fork$o" "TCP:127.0.0.1:$target$o"
    start "$pre-b" socat -b 262144 "TCP-LISTEN:$pb,bind=127.0.0.1,reuseaddr,fork$o" "TCP:127.0.0.1:$pc$o"
    start "$pre-a" socat -b 262144 "TCP-LISTEN:$pa,bind=127.0.0.1,reuseaddr,fork$o" "TCP:127.0.0.1:$pb$o"
    for s in a:$pa b:$pb c:$pc; do
        wait_until "$pre-${s%%:*} to listen on :${s#*:}" "$pre-${s%%:*}" listening "${s#*:}"
    done
}

# 2. socat chain: A -> B -> C -> iperf3 server
iperf_server iperf-socat "$P_IPERF_SOCAT"
socat_chain socat "$P_IPERF_SOCAT" "$P_SOCAT_A" "$P_SOCAT_B" "$P_SOCAT_C"
run_iperf socat_chain "$P_SOCAT_A" iperf-socat socat-a=socat-a socat-b=socat-b socat-c=socat-c
wait_exit iperf-socat 10
stop socat-a socat-b socat-c

# 3. ssh -R with aes128-gcm
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$W/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$W/ssh/client_key"
cp "$W/ssh/client_key.pub" "$W/ssh/authorized_keys"
cat >"$W/ssh/sshd_config" <<EOF
Port $P_SSHD
ListenAddress 127.0.0.1
HostKey $W/ssh/host_key
AuthorizedKeysFile $W/ssh/authorized_keys
PidFile $W/ssh/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding remote
GatewayPorts no
Ciphers aes128-gcm@openssh.com
Compression no
LogLevel INFO
EOF
"$SSHD" -t -f "$W/ssh/sshd_config" >"$LOG/sshd-config-check.log" 2>&1 ||
    fail "sshd rejects the generated config" sshd-config-check
iperf_server iperf-ssh "$P_IPERF_SSH"
start sshd "$SSHD" -D -e -f "$W/ssh/sshd_config"
wait_until "sshd to listen on :$P_SSHD" sshd listening "$P_SSHD"
start ssh ssh -F /dev/null -v -i "$W/ssh/client_key" -p "$P_SSHD" \
    -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ExitOnForwardFailure=yes -o Compression=no -c aes128-gcm@openssh.com \
    -N -R "$P_SSH_R:127.0.0.1:$P_IPERF_SSH" "$SSH_USER@127.0.0.1"
wait_until "ssh -R to listen on :$P_SSH_R" ssh listening "$P_SSH_R"
log_has ssh "cipher: aes128-gcm@openssh.com" || fail "ssh did not negotiate aes128-gcm@openssh.com" ssh
run_iperf ssh_R "$P_SSH_R" iperf-ssh sshd=sshd ssh=ssh
wait_exit iperf-ssh 10
stop ssh sshd

# underpass: one secret, one agent token, one client token
export UNDERPASS_SECRET
UNDERPASS_SECRET=$(openssl rand -hex 32)
AGENT_TOKEN=$("$BIN" token --role agent --services iperf,echo --ttl 2h --sub bench-agent) ||
    fail "could not mint the agent token"
CLIENT_TOKEN=$("$BIN" token --role client --services iperf,echo --ttl 2h --sub bench-client) ||
    fail "could not mint the client token"

# underpass_up TAG SCHEME RELAY_PORT IPERF_PORT [RELAY_OPTS -- PEER_OPTS]
# Starts relay-TAG and agent-TAG (serving iperf and echo) and waits for both.
underpass_up() {
    local tag=$1 scheme=$2 rport=$3 iport=$4
    shift 4
    local -a ropts=() popts=()
    while (($#)) && [[ $1 != -- ]]; do ropts+=("$1"); shift; done
    (($#)) && shift
    popts=("$@")
    start "relay-$tag" "${UP_BIN:-$BIN}" relay --listen "127.0.0.1:$rport" "${ropts[@]}"
    wait_until "relay-$tag to be ready" "relay-$tag" log_has "relay-$tag" "relay ready on $scheme://"
    wait_until "relay-$tag to listen on :$rport" "relay-$tag" listening "$rport"
    start "agent-$tag" "${UP_BIN:-$BIN}" agent --relay "$scheme://127.0.0.1:$rport" --token "$AGENT_TOKEN" \
        --service "iperf=tcp://127.0.0.1:$iport" --service "echo=tcp://127.0.0.1:$P_ECHO" "${popts[@]}"
    wait_until "agent-$tag to connect" "agent-$tag" log_has "agent-$tag" "connected to relay"
}

# connect_up NAME SCHEME RELAY_PORT SERVICE LISTEN_PORT [PEER_OPTS...]
connect_up() {
    local name=$1 scheme=$2 rport=$3 svc=$4 lport=$5
    shift 5
    start "$name" "${UP_BIN:-$BIN}" connect --relay "$scheme://127.0.0.1:$rport" --token "$CLIENT_TOKEN" "$svc" \
        --listen "127.0.0.1:$lport" "$@"
    wait_until "$name to reach service '$svc'" "$name" log_has "$name" "reaches service"
    wait_until "$name to listen on :$lport" "$name" listening "$lport"
}

# 4. underpass ws, both directions
start echo python3 "$HERE/echo.py" --port "$P_ECHO"
wait_until "echo server to listen on :$P_ECHO" echo listening "$P_ECHO"
underpass_up ws ws "$P_RELAY_WS" "$P_IPERF_WS"
connect_up connect-ws ws "$P_RELAY_WS" iperf "$P_CONN_WS"
UP_WS_CPU=(connect=connect-ws relay=relay-ws agent=agent-ws)
iperf_server iperf-ws "$P_IPERF_WS"
run_iperf underpass_ws "$P_CONN_WS" iperf-ws "${UP_WS_CPU[@]}"
iperf_server iperf-ws "$P_IPERF_WS"
run_iperf underpass_ws_reverse "$P_CONN_WS" iperf-ws -R "${UP_WS_CPU[@]}"
wait_exit iperf-ws 10

# 5. latency: direct, through underpass ws, and (for reference: the cost of three
# user-space relays on this host) through a socat chain with TCP_NODELAY.
connect_up connect-ws-echo ws "$P_RELAY_WS" echo "$P_CONN_WS_ECHO"
socat_chain esocat "$P_ECHO" "$P_ESOCAT_A" "$P_ESOCAT_B" "$P_ESOCAT_C" ,nodelay
run_pingpong direct "$P_ECHO" echo
run_pingpong underpass_ws "$P_CONN_WS_ECHO" connect-ws-echo relay-ws agent-ws echo
run_pingpong socat_chain "$P_ESOCAT_A" esocat-a esocat-b esocat-c echo
stop esocat-a esocat-b esocat-c

# 6. fairness: interactive round trips while iperf3 saturates the same agent link (the
# interactive stream comes from another connect, so only the relay→agent link is shared).
iperf_server iperf-ws "$P_IPERF_WS"
start iperf-bulk timeout $((DUR + 30)) iperf3 -c 127.0.0.1 -p "$P_CONN_WS" -t "$DUR" \
    --connect-timeout 5000
bulk_running() {
    python3 - "$P_RELAY_WS" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/stats", timeout=2) as r:
    sys.exit(0 if json.load(r)["bytes_relayed"] > (256 << 20) else 1)
PY
}
wait_until "the bulk stream to run" iperf-bulk bulk_running
SAVED_ROUNDS=$ROUNDS SAVED_WARMUP=$WARMUP
ROUNDS=$((DUR * 100)) WARMUP=20 # fits well inside the bulk run at a few ms per round
run_pingpong underpass_ws_under_bulk "$P_CONN_WS_ECHO" connect-ws-echo relay-ws agent-ws echo
ROUNDS=$SAVED_ROUNDS WARMUP=$SAVED_WARMUP
wait_exit iperf-bulk $((DUR + 30))
wait_exit iperf-ws 10
stop connect-ws-echo connect-ws agent-ws relay-ws

# 6. underpass wss
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$W/tls/key.pem" -out "$W/tls/cert.pem" >"$LOG/openssl.log" 2>&1 ||
    fail "could not make a self-signed certificate" openssl
underpass_up wss wss "$P_RELAY_WSS" "$P_IPERF_WSS" \
    --tls-cert "$W/tls/cert.pem" --tls-key "$W/tls/key.pem" -- --ca "$W/tls/cert.pem"
connect_up connect-wss wss "$P_RELAY_WSS" iperf "$P_CONN_WSS" --ca "$W/tls/cert.pem"
iperf_server iperf-wss "$P_IPERF_WSS"
run_iperf underpass_wss "$P_CONN_WSS" iperf-wss connect=connect-wss relay=relay-wss agent=agent-wss
wait_exit iperf-wss 10
stop connect-wss agent-wss relay-wss

# 7. A/B against a baseline binary: the same ws/wss/latency runs, old and new alternating.
# ab_round WHICH ROUND: WHICH is "base" or "new".
ab_round() {
    local which=$1 r=$2
    UP_BIN=$BIN
    [[ $which == base ]] && UP_BIN=$BASE_BIN
    underpass_up ws ws "$P_RELAY_WS" "$P_IPERF_WS"
    connect_up connect-ws ws "$P_RELAY_WS" iperf "$P_CONN_WS"
    connect_up connect-ws-echo ws "$P_RELAY_WS" echo "$P_CONN_WS_ECHO"
    iperf_server iperf-ws "$P_IPERF_WS"
    run_iperf "ab_${which}_ws_$r" "$P_CONN_WS" iperf-ws
    wait_exit iperf-ws 10
    run_pingpong "ab_${which}_$r" "$P_CONN_WS_ECHO" connect-ws-echo relay-ws agent-ws echo
    stop connect-ws-echo connect-ws agent-ws relay-ws
    underpass_up wss wss "$P_RELAY_WSS" "$P_IPERF_WSS" \
        --tls-cert "$W/tls/cert.pem" --tls-key "$W/tls/key.pem" -- --ca "$W/tls/cert.pem"
    connect_up connect-wss wss "$P_RELAY_WSS" iperf "$P_CONN_WSS" --ca "$W/tls/cert.pem"
    iperf_server iperf-wss "$P_IPERF_WSS"
    run_iperf "ab_${which}_wss_$r" "$P_CONN_WSS" iperf-wss
    wait_exit iperf-wss 10
    stop connect-wss agent-wss relay-wss
    UP_BIN=
}
if [[ -n $BASE_BIN ]]; then
    say "A/B: baseline $("$BASE_BIN" version 2>&1 | head -n 1) ($BASE_BIN) against $BIN"
    ab_round base 1
    ab_round new 1
    if ((!SMOKE)); then
        ab_round new 2
        ab_round base 2
    fi
fi
stop echo

# ---------------------------------------------------------------- report

python3 - "$RES/meta.json" <<EOF
import json, sys
json.dump({
    "mode": "$MODE",
    "iperf_seconds": $DUR,
    "pingpong_rounds": $ROUNDS,
    "pingpong_warmup": $WARMUP,
    "cpus": $(nproc),
    "kernel": "$(uname -sr)",
    "date_utc": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
    "underpass_binary": "$BIN",
    "underpass_version": "$UP_VERSION",
    "git": "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)",
    "iperf3": "$(iperf3 --version | head -n 1)",
    "socat": "$(socat -V | awk '/socat version/ {print $3; exit}')",
    "ssh": "$(ssh -V 2>&1 | cut -d, -f1)",
}, open(sys.argv[1], "w"), indent=2)
EOF
lib report "$RES" "$OUT/results.json" || fail "could not build the report"
if [[ -n $BASE_BIN ]]; then
    lib ab-report "$RES" "$OUT/ab.json" || fail "could not build the A/B report"
fi
