#!/usr/bin/env bash
# Install what underpass needs to build, test, fuzz and bench on Debian 12.
# Idempotent: prints nothing and touches nothing when everything is present.
set -euo pipefail

APT_PKGS=(
    build-essential cmake ninja-build pkg-config
    libuv1-dev libssl-dev libjansson-dev libcmocka-dev zlib1g-dev
    clang clang-format libclang-rt-14-dev
    python3 python3-pytest
    iperf3 socat openssh-client openssh-server openssl procps iproute2 curl
    # network-namespace tests: firewall rules and real proxies (tests/integration/netns.py,
    # proxies.py); the tests start these daemons themselves, never as services
    nftables squid tinyproxy nginx haproxy
    # browser tests (tests/integration/browser.py drives it over the DevTools protocol)
    chromium
    # TURN tests and bench/turn.sh: coturn's turnserver as the reference server and its
    # turnutils_* client tools (tests/integration/turn_harness.py); started by the tests only
    coturn
)
# Packages above that ship a service the tests must not find already running (it would hold
# ports such as 80, 3128, 8888, 3478).
DAEMONS=(squid tinyproxy nginx haproxy coturn)

missing=()
for p in "${APT_PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    # Keep maintainer scripts from starting the daemons: invoke-rc.d and deb-systemd-invoke
    # obey policy-rc.d, exit 101 = "action forbidden". Only when there is none already.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        trap '$SUDO rm -f "$policy"' EXIT
    fi
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$policy" ]; then $SUDO rm -f "$policy"; trap - EXIT; fi
    # Nor at boot, on a systemd machine, for the daemons installed just now.
    if [ -d /run/systemd/system ]; then
        for d in "${DAEMONS[@]}"; do
            if [[ " ${missing[*]} " == *" $d "* ]]; then
                $SUDO systemctl disable --now "$d" >/dev/null 2>&1 || true
            fi
        done
    fi
fi

# pytest must be importable by the python3 that runs the integration tests.
if ! python3 -c 'import pytest' 2>/dev/null; then
    echo "deps: installing pytest (pip)" >&2
    python3 -m pip install -q pytest
fi

# Python clients for the http-service tests.
for mod in websockets requests; do
    if ! python3 -c "import $mod" 2>/dev/null; then
        echo "deps: installing $mod (pip)" >&2
        python3 -m pip install -q "$mod"
    fi
done
# websockets >= 13 (the sync client and server the tests use).
if ! python3 -c 'import websockets.sync.client, websockets.asyncio.server' 2>/dev/null; then
    echo "deps: upgrading websockets (pip)" >&2
    python3 -m pip install -q -U websockets
fi

# node ws for the node client tests; Debian's nodejs and npm unless a node with npm is there.
if ! command -v npm >/dev/null 2>&1; then
    echo "deps: installing nodejs npm" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
node_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/integration/node"
if [ ! -d "$node_dir/node_modules/ws" ]; then
    echo "deps: installing node ws (npm)" >&2
    (cd "$node_dir" && npm install --silent --no-audit --no-fund >/dev/null)
fi
