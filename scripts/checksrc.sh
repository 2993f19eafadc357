#!/usr/bin/env bash
# Source rules (STYLE §2, §11): banned functions, raw malloc/free outside src/base/alloc.c, and
# the include layering (proto → base; net → base; link/relay/agent/client → proto, net, base).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
err() { echo "checksrc: $*" >&2; fail=1; }

files=$(git ls-files 'src/*.c' 'src/*.h' 'include/*.h' 2>/dev/null || find src include -name '*.[ch]')
for f in $files; do
    # strip comments and strings roughly before matching calls
    body=$(sed -e 's://.*$::' -e 's:"[^"]*"::g' "$f")
    if grep -nE '\b(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|alloca)\s*\(' <<<"$body" >/dev/null; then
        err "$f: banned function: $(grep -nE '\b(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|alloca)\s*\(' <<<"$body" | head -1)"
    fi
    if [ "$f" != src/base/alloc.c ] && grep -nE '(^|[^_a-z])(malloc|calloc|realloc)\s*\(' <<<"$body" >/dev/null; then
        err "$f: raw allocation outside src/base/alloc.c"
    fi
    if grep -nE '\bif\s*\(\s*\(?[a-z_]+\s*=[^=]' <<<"$body" >/dev/null; then
        err "$f: assignment inside if: $(grep -nE '\bif\s*\(\s*\(?[a-z_]+\s*=[^=]' <<<"$body" | head -1)"
    fi
    layer=$(cut -d/ -f2 <<<"$f")
    case "$layer" in
        base) allowed='base' ;;
        proto) allowed='base|proto' ;;
        net) allowed='base|net' ;;
        link) allowed='base|proto|net|link' ;;
        relay|agent|client) allowed="base|proto|net|link|$layer" ;;
        cli) allowed='.*' ;;
        *) allowed='.*' ;;
    esac
    while read -r inc; do
        [ -z "$inc" ] && continue
        dir=${inc%%/*}
        if ! grep -qE "^($allowed)$" <<<"$dir"; then
            err "$f: $layer may not include $inc"
        fi
    done < <(grep -oE '^#include "[^"]+"' "$f" | sed -E 's/#include "([^"]+)"/\1/' | grep / || true)
done
[ $fail -eq 0 ] && echo "checksrc: ok"
exit $fail
