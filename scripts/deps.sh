#!/usr/bin/env bash
# Install what underpass needs to build, test, fuzz and bench on Debian 12.
# Idempotent: prints nothing and touches nothing when everything is present.
set -euo pipefail

APT_PKGS=(
    build-essential cmake ninja-build pkg-config
    libuv1-dev libssl-dev libjansson-dev libcmocka-dev
    clang clang-format libclang-rt-14-dev
    python3 python3-pytest
    iperf3 socat openssh-client openssh-server openssl procps iproute2 curl
)

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
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# pytest must be importable by the python3 that runs the integration tests.
if ! python3 -c 'import pytest' 2>/dev/null; then
    echo "deps: installing pytest (pip)" >&2
    python3 -m pip install -q pytest
fi
