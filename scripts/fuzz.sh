#!/usr/bin/env bash
# Run every libFuzzer target in BUILD_DIR for SECONDS each over a scratch copy of its corpus
# (so generated inputs do not pollute the tree). Fails on the first crash.
set -euo pipefail
build=${1:?build dir}
secs=${2:-60}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for bin in "$build"/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    codec=${name#fuzz_}
    mkdir -p "$work/$codec"
    if [ -d "$top/fuzz/corpus/$codec" ]; then
        cp -r "$top/fuzz/corpus/$codec/." "$work/$codec/"
    fi
    dict=()
    [ -f "$top/fuzz/dict/$codec.dict" ] && dict=(-dict="$top/fuzz/dict/$codec.dict")
    log="$work/$codec.log"
    if "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$work/" \
        "${dict[@]}" "$work/$codec" >"$log" 2>&1; then
        runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')
        echo "fuzz: $name ok, $runs runs in ${secs}s"
    else
        echo "fuzz: $name FAILED" >&2
        tail -n 40 "$log" >&2
        mkdir -p "$top/build-fuzz/artifacts" && cp "$work"/crash-* "$work"/leak-* "$work"/timeout-* \
            "$top/build-fuzz/artifacts/" 2>/dev/null || true
        status=1
    fi
done
exit $status
