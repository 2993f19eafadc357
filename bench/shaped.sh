#!/usr/bin/env bash
# Bulk throughput over a bad link: underpass ws next to ssh -R, on the same shaped link.
#
#   bench/shaped.sh [--smoke] [--bin PATH]
#
# Two network namespaces joined by one veth pair; only the agent's (or ssh client's) link to
# the public side crosses it:
#
#   pub  (10.x.y.1): iperf3 -c, connect, relay, sshd
#   priv (10.x.y.2): agent, ssh -R client, iperf3 -s
#
# The link gets netem "delay 50ms loss 1%" in each direction when the kernel has netem;
# otherwise 1 % random loss each way with nftables (numgen) and no added delay, and the
# report says so. Segments are kept wire-sized (gso_max_size 1500) so "1 %" means 1 % of
# packets. Needs root (ip netns). Prints one table and writes bench/out/shaped.json.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BIN=${UNDERPASS_BENCH_BIN:-$ROOT/build/underpass}
OUT=$HERE/out
DUR=10
while (($#)); do
    case $1 in
        --smoke) DUR=3 ;;
        --bin) BIN=${2:?--bin needs a path}; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "shaped: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
say() { printf 'shaped: %s\n' "$*" >&2; }

for t in ip nft iperf3 sshd ssh ssh-keygen python3 timeout; do
    command -v "$t" >/dev/null 2>&1 || { say "skipped: missing $t (scripts/deps.sh installs it)"; exit 0; }
done
if [[ $(id -u) -ne 0 ]]; then
    say "skipped: needs root to create network namespaces"
    exit 0
fi

TAG=upsh$$
A=$TAG-pub B=$TAG-priv
NET=10.$((200 + RANDOM % 50)).$((RANDOM % 250))
W=$(mktemp -d "/tmp/$TAG.XXXXXX")
mkdir -p "$OUT"
PIDS=()
cleanup() {
    local p
    # One redirection around it all: bash reports a killed job ("Killed") at whichever
    # command comes next, not only at wait.
    {
        for p in "${PIDS[@]}"; do kill -TERM "$p" || true; done
        for ns in "$A" "$B"; do
            for p in $(ip netns pids "$ns"); do kill -KILL "$p" || true; done
            ip netns del "$ns" || true
        done
        wait || true
        rm -rf "$W"
    } 2>/dev/null
}
trap cleanup EXIT

inA() { ip netns exec "$A" "$@"; }
inB() { ip netns exec "$B" "$@"; }
bg() { # LOGNAME NS CMD...
    local log=$1 ns=$2
    shift 2
    ip netns exec "$ns" "$@" >"$W/$log.log" 2>&1 &
    PIDS+=($!)
}
listening() { # NS PORT
    ip netns exec "$1" awk -v p=":$(printf '%04X' "$2")" \
        'substr($2, length($2) - 4) == p && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp
}
wait_for() { # DESCRIPTION CMD...: poll with a 20 s deadline
    local desc=$1 end=$((SECONDS + 20))
    shift
    until "$@"; do
        ((SECONDS < end)) || { say "error: timed out waiting for $desc"; tail -n 5 "$W"/*.log >&2; exit 1; }
        sleep 0.05
    done
}

ip netns add "$A"
ip netns add "$B"
ip link add "$TAG-a" type veth peer name "$TAG-b"
ip link set "$TAG-a" netns "$A" name eth0
ip link set "$TAG-b" netns "$B" name eth0
for ns in "$A" "$B"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set dev eth0 gso_max_size 1500
done
ip -n "$A" addr add "$NET.1/24" dev eth0
ip -n "$B" addr add "$NET.2/24" dev eth0

if inA tc qdisc add dev eth0 root netem delay 50ms loss 1% 2>"$W/netem.err"; then
    inB tc qdisc add dev eth0 root netem delay 50ms loss 1%
    SHAPE="netem: 50 ms delay + 1 % loss each way"
else
    inA nft -f - <<EOF
table inet shape {
    chain in {
        type filter hook input priority -10; policy accept;
        iifname "eth0" numgen random mod 100 < 1 drop
    }
    chain out {
        type filter hook output priority -10; policy accept;
        oifname "eth0" numgen random mod 100 < 1 drop
    }
}
EOF
    SHAPE="1 % random loss each way, no added delay (this kernel has no netem: $(tr -d '\n' <"$W/netem.err"))"
fi
say "link: $SHAPE"

# ssh -R over the link
mkdir -p "$W/ssh"
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/client_key"
cp "$W/ssh/client_key.pub" "$W/ssh/authorized_keys"
cat >"$W/ssh/sshd_config" <<EOF
Port 2222
ListenAddress $NET.1
HostKey $W/ssh/host_key
AuthorizedKeysFile $W/ssh/authorized_keys
PidFile $W/ssh/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding remote
Ciphers aes128-gcm@openssh.com
Compression no
EOF
mkdir -p -m 0755 /run/sshd
SSHD=$(command -v sshd)
[[ $SSHD == /* ]] || SSHD=$(readlink -f "$SSHD")
bg sshd "$A" "$SSHD" -D -e -f "$W/ssh/sshd_config"
wait_for "sshd" listening "$A" 2222
bg iperf-ssh "$B" iperf3 -s -B 127.0.0.1 -p 5201
wait_for "iperf3 server (ssh)" listening "$B" 5201
bg ssh "$B" ssh -F /dev/null -i "$W/ssh/client_key" -p 2222 -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ExitOnForwardFailure=yes \
    -o Compression=no -c aes128-gcm@openssh.com -N -R 6001:127.0.0.1:5201 "$(id -un)@$NET.1"
wait_for "ssh -R" listening "$A" 6001

# underpass over the same link
export UNDERPASS_SECRET
UNDERPASS_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
bg relay "$A" "$BIN" relay --listen "$NET.1:8080"
wait_for "relay" listening "$A" 8080
bg iperf-up "$B" iperf3 -s -B 127.0.0.1 -p 5202
wait_for "iperf3 server (underpass)" listening "$B" 5202
bg agent "$B" "$BIN" agent --relay "ws://$NET.1:8080" --dial-timeout 30s \
    --token "$("$BIN" token --role agent --services iperf --ttl 1h)" --service iperf=tcp://127.0.0.1:5202
bg connect "$A" "$BIN" connect --relay "ws://$NET.1:8080" \
    --token "$("$BIN" token --role client --services iperf --ttl 1h)" iperf --listen 127.0.0.1:6002
wait_for "agent" grep -q "connected to relay" "$W/agent.log"
wait_for "connect" listening "$A" 6002

measure() { # KEY PORT [-R]
    local key=$1 port=$2
    shift 2
    say "measuring $key (iperf3 -t $DUR $*)"
    if ! inA timeout $((DUR + 60)) iperf3 -c 127.0.0.1 -p "$port" -t "$DUR" -J --connect-timeout 10000 "$@" \
        >"$W/$key.json" 2>"$W/$key.err"; then
        say "error: iperf3 for $key failed"; cat "$W/$key.err" >&2; tail -n 20 "$W/$key.json" >&2; exit 1
    fi
    python3 -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e9))' "$W/$key.json"
}
SSH_F=$(measure ssh_R 6001)
UP_F=$(measure underpass_ws 6002)
SSH_R=$(measure ssh_R_reverse 6001 -R)
UP_R=$(measure underpass_ws_reverse 6002 -R)

python3 - "$OUT/shaped.json" "$SHAPE" "$DUR" "$SSH_F" "$UP_F" "$SSH_R" "$UP_R" <<'PY'
import json, sys
out, shape, dur, sf, uf, sr, ur = sys.argv[1], sys.argv[2], int(sys.argv[3]), *map(float, sys.argv[4:8])
res = {"shape": shape, "iperf_seconds": dur, "gbps": {"ssh_R": sf, "underpass_ws": uf,
       "ssh_R_reverse": sr, "underpass_ws_reverse": ur},
       "ratio": {"ws_over_ssh_R": uf / sf if sf else None,
                 "ws_over_ssh_R_reverse": ur / sr if sr else None}}
json.dump(res, open(out, "w"), indent=2)
print(f"\nShaped link: {shape}; iperf3 -t {dur}, one stream")
print(f"  {'':24} {'ssh -R':>10} {'underpass ws':>14} {'ratio':>7}")
for k, a, b in (("client -> service", sf, uf), ("service -> client", sr, ur)):
    r = f"{b / a:.2f}" if a else "-"
    print(f"  {k:24} {a * 1000:8.1f} Mb {b * 1000:12.1f} Mb {r:>7}")
PY
