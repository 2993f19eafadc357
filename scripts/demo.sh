#!/usr/bin/env bash
# make demo: a relay, an agent and a sample service on this machine, wired together, and the
# commands to try. Ctrl-C stops everything.
set -euo pipefail
bin=${1:-build/underpass}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
dir=$(mktemp -d /tmp/underpass-demo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # file pattern seconds
    local deadline=$((SECONDS + $3))
    until grep -q "$2" "$1" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "demo: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1
        fi
        sleep 0.05
    done
}

relay_port=$(free_port); svc_port=$(free_port); local_port=$(free_port)
export UNDERPASS_SECRET=$(openssl rand -hex 32)

# The sample service: a tiny HTTP server on loopback that only the agent can reach.
mkdir -p "$dir/site"
cat > "$dir/site/index.html" <<HTML
<!doctype html><title>underpass demo</title>
<h1>Hello through underpass</h1>
<p>This page is served on 127.0.0.1:$svc_port and reached through the relay.</p>
HTML
(cd "$dir/site" && exec python3 -m http.server "$svc_port" --bind 127.0.0.1) >"$dir/service.log" 2>&1 &
pids+=($!)
python3 - "$svc_port" <<'PY'
import socket, sys, time
deadline = time.time() + 10
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("demo: the sample service did not start")
        time.sleep(0.05)
PY

"$bin" token --role agent --services web --ttl 1h >"$dir/agent.jwt"
"$bin" token --role client --services web --ttl 1h --sub demo >"$dir/client.jwt"

"$bin" relay --listen 127.0.0.1:"$relay_port" >"$dir/relay.log" 2>&1 &
pids+=($!)
wait_for "$dir/relay.log" "relay ready" 10

"$bin" agent --relay ws://127.0.0.1:"$relay_port" --token-file "$dir/agent.jwt" \
    --service web=tcp://127.0.0.1:"$svc_port" >"$dir/agent.log" 2>&1 &
pids+=($!)
wait_for "$dir/agent.log" "connected to relay" 10

"$bin" connect --relay ws://127.0.0.1:"$relay_port" --token-file "$dir/client.jwt" web \
    --listen 127.0.0.1:"$local_port" >"$dir/connect.log" 2>&1 &
pids+=($!)
wait_for "$dir/connect.log" "connected to relay" 10

cat <<TXT

underpass demo is running (logs in $dir):

  relay    ws://127.0.0.1:$relay_port      (health: curl http://127.0.0.1:$relay_port/healthz)
  agent    serves 'web' = tcp://127.0.0.1:$svc_port (a python http.server)
  connect  127.0.0.1:$local_port  →  relay  →  agent  →  web

Try it:

  curl http://127.0.0.1:$local_port/           # the page, fetched through the relay
  curl http://127.0.0.1:$relay_port/stats      # relay counters (loopback only)

  or open http://127.0.0.1:$local_port/ in a browser.

Tokens: $dir/agent.jwt, $dir/client.jwt (secret in UNDERPASS_SECRET of this shell only).
TXT

echo "Checking the path once:"
if curl -fsS --max-time 5 "http://127.0.0.1:$local_port/" | grep -q "Hello through underpass"; then
    echo "  ok: the page came back through the relay."
else
    echo "  the page did not come back; logs:" >&2
    tail -n 20 "$dir"/*.log >&2
    exit 1
fi

if [ -n "${UNDERPASS_DEMO_ONESHOT:-}" ]; then
    exit 0
fi
echo
echo "Press Ctrl-C to stop."
while true; do sleep 3600; done
