#!/usr/bin/env bash
# WebSocket conformance: run the Autobahn|Testsuite against our codec and shell in both roles,
# using the echo programs built from tests/autobahn/ (it builds nothing itself).
#
#   scripts/conformance.sh [BUILD_DIR]          (default: build)
#
# Server role: starts BUILD_DIR/tests/autobahn/ws_echo_server on a free loopback port and runs
# the fuzzingclient against it. Client role: runs the fuzzingserver on a free loopback port and
# BUILD_DIR/tests/autobahn/ws_echo_client against it. Prints both summary lines and exits
# non-zero if either role has a FAILED or UNIMPLEMENTED case, ran fewer cases than asked, or
# could not run.
#
# Environment:
#   CONFORMANCE_CASES  Autobahn case list for both roles (default: all 517 cases, about 40
#                      minutes of CPU on 2 cores, the two roles side by side, most of it in the permessage-deflate cases 12.*
#                      and 13.* with large messages; make test runs a smaller set)
#   AUTOBAHN_TOOLS     the runner's folder (default: <repo>/../shared/tools/autobahn)
# Reports: BUILD_DIR/autobahn-reports/{servers,clients}/index.html, with the runner's full
# output in BUILD_DIR/autobahn-reports/{server,client}.log.
set -euo pipefail

build=${1:-build}
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/.." && pwd))
tools=${AUTOBAHN_TOOLS:-$top/../shared/tools/autobahn}
default_cases='*'
cases=${CONFORMANCE_CASES:-$default_cases}

die() {
    echo "conformance: $*" >&2
    exit 2
}

[ -x "$tools/run.sh" ] ||
    die "Autobahn runner not found at $tools/run.sh (expected the shared tools next to the" \
        "repository, ../shared/tools/autobahn; set AUTOBAHN_TOOLS to its folder)"
build=$(cd "$build" 2>/dev/null && pwd) || die "build dir '${1:-build}' does not exist (run make build)"
server_bin=$build/tests/autobahn/ws_echo_server
client_bin=$build/tests/autobahn/ws_echo_client
for b in "$server_bin" "$client_bin"; do
    [ -x "$b" ] || die "$b is missing: build with UP_TESTS=ON first (make build)"
done

out=$build/autobahn-reports
mkdir -p "$out"
echo "conformance: cases '$cases'"
# Say plainly what is left out ("quick" is the runner's shorthand for *,-9.*,-12.*,-13.*).
excl=$(tr ',' '\n' <<<"${cases//quick/*,-9.*,-12.*,-13.*}" | sed -n 's/^-//p' | sort -u | tr '\n' ' ')
if [ -n "$excl" ]; then
    echo "conformance: EXCLUDED cases: $excl"
    case " $excl" in
    *" 12."* | *" 13."*)
        echo "conformance: (12.* and 13.* are permessage-deflate, RFC 7692; excluded ones" \
            "only for time: \`make conformance\` runs all)" ;;
    esac
fi

work=$(mktemp -d)
srv_pid=
cleanup() {
    if [ -n "$srv_pid" ] && kill -0 "$srv_pid" 2>/dev/null; then
        kill "$srv_pid" 2>/dev/null || true
        wait "$srv_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The echo server binds port 0 and reports the port it got: no race for a "free" port.
"$server_bin" 127.0.0.1:0 >"$work/server.ready" 2>"$out/echo-server.log" &
srv_pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/^ws_echo_server: listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$work/server.ready")
    [ -n "$port" ] && break
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || die "ws_echo_server did not start (see $out/echo-server.log)"

# Keep the runner's output in $out/ROLE.log; show its problem lines (failed case ids ...).
run_role() {
    local role=$1 log=$out/$1.log rc=0
    shift
    local t0=$SECONDS
    OUT=$out AUTOBAHN_AGENT=underpass "$tools/run.sh" "$@" >"$log" 2>&1 || rc=$?
    grep -E '^autobahn: ' "$log" | grep -vE '^autobahn: ([0-9]+ cases, |report in |fuzzingserver on )' |
        sed "s/^/conformance: $role: /" >&2 || true
    local sum
    sum=$(grep -E '^autobahn: [0-9]+ cases, ' "$log" | tail -n1 || true)
    echo "$role|${sum#autobahn: }|$rc|$((SECONDS - t0))" >>"$work/results"
    if [ "$rc" -ne 0 ]; then
        echo "conformance: $role: runner exited $rc; last lines of $log:" >&2
        grep -vE '^Cases = ' "$log" | tail -n 15 >&2
    fi
}

# The two roles are independent: run them side by side (each is one busy Python process), which
# halves the wall time on two cores.
run_role server server "127.0.0.1:$port" "$cases" &
server_job=$!
# The fuzzingserver needs a port number up front; ask the kernel for a free one.
cport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_role client client "$cport" "$cases" -- "$client_bin" &
client_job=$!
wait "$server_job" || true
wait "$client_job" || true
kill "$srv_pid" 2>/dev/null || true
wait "$srv_pid" 2>/dev/null || true
srv_pid=

status=0
declare -A ncases
while IFS='|' read -r role sum rc secs; do
    n=$(sed -n 's/^\([0-9][0-9]*\) cases,.*/\1/p' <<<"$sum")
    failed=$(sed -n 's/.*FAILED \([0-9][0-9]*\).*/\1/p' <<<"$sum")
    # UNIMPLEMENTED (a deflate case without deflate) is not a pass either.
    unimpl=$(sed -n 's/.*UNIMPLEMENTED \([0-9][0-9]*\).*/\1/p' <<<"$sum")
    ncases[$role]=${n:-0}
    if [ -z "$sum" ] || [ "$rc" -ne 0 ] || [ "${failed:-1}" -ne 0 ] || [ "${unimpl:-1}" -ne 0 ] ||
        [ "${n:-0}" -eq 0 ]; then
        echo "conformance: $role role FAILED (${sum:-no summary}) in ${secs}s" >&2
        status=1
    else
        echo "conformance: $role role: $sum (${secs}s)"
    fi
done <"$work/results"
if [ "${ncases[server]:-0}" -ne "${ncases[client]:-0}" ]; then
    echo "conformance: the roles ran different numbers of cases" \
        "(server ${ncases[server]:-0}, client ${ncases[client]:-0})" >&2
    status=1
fi
echo "conformance: reports in $out/servers/index.html and $out/clients/index.html"
exit $status
