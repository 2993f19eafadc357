#!/usr/bin/env bash
# Source rules (STYLE §2, §4, §8, §11), checked on every git-tracked file under src/ and include/:
#   - banned functions, raw malloc/free outside src/base/alloc.c, assignment inside if;
#   - the include layering: every layer is known and includes only the layers below it
#     (proto → base; net → base; link → proto, net, base; relay|agent|client|turn → proto, net,
#     link, base; lib (the embedding layer) → all but cli, and the public API; cli → all), and a
#     public header in include/ includes no project header;
#   - src/base and src/proto (no I/O) include neither libuv nor socket, fd or TLS headers;
#   - only src/net (the I/O shell) makes socket and fd syscalls: socket, setsockopt, bind,
#     listen, accept, connect, shutdown, recv*/send*, read/write on fds, splice, pipe, poll ...
#     (fopen/fread and friends are not syscalls and stay allowed).
# Comments, string and character literals are blanked before matching, so `/* accept(2) */` or
# "splice(2)" in a help text do not count, and neither do our own names (up_sock_write(,
# up_ws_write_frame(, ops->read(): a syscall name counts only when nothing word-like, `.` or
# `->` comes right before it.
#
#   scripts/checksrc.sh              check the tree
#   scripts/checksrc.sh --self-test  check that each rule fires (and not on our own names)
#   scripts/checksrc.sh --root DIR   check the C files under DIR/src and DIR/include instead
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

# Files allowed raw socket/fd syscalls outside src/net, each with its reason. None today: keep
# it that way (the self-test still checks that an entry would be honoured).
SHELL_EXCEPTIONS=(
)

SYSCALLS='socket|socketpair|setsockopt|getsockopt|getsockname|getpeername|bind|listen|accept4?'
SYSCALLS+='|connect|shutdown|recv|recvfrom|recvmsg|recvmmsg|send|sendto|sendmsg|sendmmsg'
SYSCALLS+='|sendfile|splice|vmsplice|tee|pipe2?|read|write|readv|writev|pread|pwrite|preadv'
SYSCALLS+='|pwritev|fcntl|ioctl|poll|ppoll|select|pselect|epoll_create1?|epoll_ctl|epoll_wait'
SYSCALL_RE="(^|[^A-Za-z0-9_.>])($SYSCALLS)[[:space:]]*\\("
# Headers that mean I/O, not allowed in src/base and src/proto.
IO_HEADERS_RE='^#[[:space:]]*include[[:space:]]*<(uv\.h|sys/socket\.h|sys/epoll\.h|sys/sendfile\.h|poll\.h|netdb\.h|netinet/[^>]*|unistd\.h|fcntl\.h|openssl/ssl\.h)>'
BANNED_RE='\b(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|alloca)\s*\('
LAYERS='base|proto|net|link|relay|agent|client|turn|lib|cli'

# Blank comments, string and character literals; keep the newlines (line numbers stay right).
STRIP_PL=$(
    cat <<'PERL'
s{(/\*.*?\*/)|(//[^\n]*)|("(?:\\.|[^"\\\n])*")|('(?:\\.|[^'\\\n])*')}{
    defined $1 ? ($1 =~ tr/\n//cdr) : defined $2 ? "" : defined $3 ? '""' : "0"
}gse
PERL
)
strip_c() { perl -0777 -pe "$STRIP_PL" "$1"; }

self_test() {
    local dir rc out
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' RETURN
    mkdir -p "$dir/src/base" "$dir/src/proto" "$dir/src/net" "$dir/src/relay" "$dir/src/link" \
        "$dir/src/lib" "$dir/src/cli" "$dir/include/underpass"
    # Clean: our own names, comments and strings that mention syscalls, net's own calls.
    cat >"$dir/src/relay/ok.c" <<'EOF'
#include "net/sock.h"
#include "proto/ws.h"
/* accept(2), then read() and splice(2) */
static int f(struct up_sock *s, struct ops *ops, char *b)
{
    size_t n;
    (void)up_sock_write(s, b, 1, &n);
    (void)up_ws_write_frame(b, 1);
    ops->read(b);
    s->ops.send(b);
    front_accept(s, 0, 0);
    up_listener_open(0, 0, "0.0.0.0:0", 1, 0, 0, 0, 0, 0);
    fwrite(b, 1, 1, stdout);
    return printf("splice(2) read(fd) ')' %c\n", ')');
}
EOF
    printf '#include "base/buf.h"\nint g(int fd) { return (int)read(fd, 0, 0) + socket(1, 2, 3); }\n' \
        >"$dir/src/net/ok.c"
    printf '#include "lib/opts.h"\n#include "turn/server.h"\n#include "underpass/underpass.h"\n' \
        >"$dir/src/lib/ok.c"
    printf '#include <stddef.h>\n#include <uv.h>\n' >"$dir/include/underpass/ok.h"
    local x
    for x in "${SHELL_EXCEPTIONS[@]}"; do # an exception is honoured
        mkdir -p "$dir/$(dirname "$x")"
        printf 'void f(int fd) { (void)setsockopt(fd, 1, 2, 0, 0); }\n' >"$dir/$x"
    done
    out=$("$SELF" --root "$dir" 2>&1) || { echo "$out" >&2; echo "checksrc self-test: clean tree failed" >&2; return 1; }
    rm -f "$dir"/src/*/ok.c "$dir"/include/underpass/ok.h
    for x in "${SHELL_EXCEPTIONS[@]}"; do
        rm -f "${dir:?}/$x"
    done
    # One violation per file: each must be reported, naming the file and the rule.
    local -A cases=(
        [src/proto/uv.c]='#include <uv.h>'
        [src/base/sock.c]='#include <sys/socket.h>'
        [src/proto/call.c]='int f(void) { return socket(2, 1, 0); }'
        [src/relay/opt.c]='void f(int fd) { (void)setsockopt(fd, 1, 2, 0, 0); }'
        [src/relay/rd.c]='long f(int fd, char *b) { return read(fd, b, 1); }'
        [src/link/acc.c]='int f(int fd) { return accept4(fd, 0, 0, 0); }'
        [src/link/spl.c]='long f(int a, int b) { return splice(a, 0, b, 0, 1, 0); }'
        [src/turn/rx.c]='int f(int fd) { return recvmmsg(fd, 0, 1, 0, 0); }'
        [src/relay/sd.c]='void f(int fd) { if (fd) { shutdown(fd, 1); } }'
        [src/relay/up.c]='#include "cli/common.h"'
        [src/lib/cli.c]='#include "cli/common.h"'
        [src/proto/net.c]='#include "net/sock.h"'
        [src/relay/bare.c]='#include "sock.h"'
        [src/what/x.c]='int x;'
        [include/underpass/p.h]='#include "base/err.h"'
    )
    local -A want=(
        [src/proto/uv.c]='does no I/O' [src/base/sock.c]='does no I/O'
        [src/proto/call.c]='syscall' [src/relay/opt.c]='syscall' [src/relay/rd.c]='syscall'
        [src/link/acc.c]='syscall' [src/link/spl.c]='syscall' [src/turn/rx.c]='syscall'
        [src/relay/sd.c]='syscall' [src/relay/up.c]='may not include'
        [src/lib/cli.c]='may not include' [src/proto/net.c]='may not include'
        [src/relay/bare.c]='with its layer' [src/what/x.c]='known layer'
        [include/underpass/p.h]='public header'
    )
    local f fails=0
    for f in "${!cases[@]}"; do
        mkdir -p "$(dirname "$dir/$f")"
        printf '%s\n' "${cases[$f]}" >"$dir/$f"
        if out=$("$SELF" --root "$dir" 2>&1); then
            echo "checksrc self-test: no error for $f: ${cases[$f]}" >&2
            fails=1
        elif ! grep -q "$f: .*${want[$f]}" <<<"$out"; then
            echo "checksrc self-test: want '$f: ...${want[$f]}', got: $out" >&2
            fails=1
        fi
        rm -f "$dir/$f"
    done
    [ $fails -eq 0 ] && echo "checksrc: self-test ok"
    return $fails
}

root=""
case "${1:-}" in
    --self-test) self_test; exit ;;
    --root) root=${2:?--root needs a directory} ;;
    "") ;;
    *) echo "usage: $0 [--self-test | --root DIR]" >&2; exit 2 ;;
esac
if [ -n "$root" ]; then
    cd "$root"
    files=$(find src include -name '*.[ch]' 2>/dev/null | sort)
else
    cd "$(dirname "$0")/.."
    files=$(git ls-files 'src/*.c' 'src/*.h' 'include/*.h' 2>/dev/null || find src include -name '*.[ch]')
fi
fail=0
err() { echo "checksrc: $*" >&2; fail=1; }
first() { grep -nE "$1" <<<"$2" | head -1; }

for f in $files; do
    body=$(strip_c "$f")
    if grep -qE "$BANNED_RE" <<<"$body"; then
        err "$f: banned function: $(first "$BANNED_RE" "$body")"
    fi
    if [ "$f" != src/base/alloc.c ] && grep -qE '(^|[^_a-z])(malloc|calloc|realloc)\s*\(' <<<"$body"; then
        err "$f: raw allocation outside src/base/alloc.c"
    fi
    if grep -qE '\bif\s*\(\s*\(?[a-z_]+\s*=[^=]' <<<"$body"; then
        err "$f: assignment inside if: $(first '\bif\s*\(\s*\(?[a-z_]+\s*=[^=]' "$body")"
    fi
    case "$f" in
        include/*) layer=include ;;
        src/*/*) layer=$(cut -d/ -f2 <<<"$f") ;;
        *) layer=unknown ;;
    esac
    case "$layer" in
        base) allowed='base' ;;
        proto) allowed='base|proto' ;;
        net) allowed='base|net' ;;
        link) allowed='base|proto|net|link' ;;
        relay | agent | client | turn) allowed="base|proto|net|link|$layer" ;;
        lib) allowed='base|proto|net|link|relay|agent|client|turn|lib|underpass' ;;
        cli) allowed='.*' ;;
        include) allowed='' ;;
        *)
            err "$f: not in a known layer ($LAYERS, include/): add it to scripts/checksrc.sh"
            continue
            ;;
    esac
    incs=$(grep -E '^#[[:space:]]*include[[:space:]]*"' "$f" | sed -E 's/^#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/' || true)
    for inc in $incs; do
        if [ "$layer" = include ]; then
            err "$f: a public header may include no project header: \"$inc\""
            continue
        fi
        if [[ $inc != */* ]]; then
            err "$f: include \"$inc\" with its layer (\"net/sock.h\", not \"sock.h\")"
            continue
        fi
        if ! grep -qE "^($allowed)$" <<<"${inc%%/*}"; then
            err "$f: $layer may not include $inc"
        fi
    done
    if [ "$layer" = include ]; then
        # <net/sock.h> would find ours through -Isrc; <net/if.h> is the system's.
        for inc in $(sed -nE 's/^#[[:space:]]*include[[:space:]]*<([^>]+)>.*/\1/p' "$f"); do
            if [ -e "src/$inc" ]; then
                err "$f: a public header may include no project header: <$inc>"
            fi
        done
    fi
    if [ "$layer" = base ] || [ "$layer" = proto ]; then
        if grep -qE "$IO_HEADERS_RE" "$f"; then
            err "$f: $layer does no I/O (STYLE §2): $(first "$IO_HEADERS_RE" "$(cat "$f")")"
        fi
    fi
    if [ "$layer" != net ] && [ "$layer" != include ]; then
        exempt=0
        for x in "${SHELL_EXCEPTIONS[@]}"; do
            [ "$f" = "$x" ] && exempt=1
        done
        if [ $exempt -eq 0 ] && grep -qE "$SYSCALL_RE" <<<"$body"; then
            err "$f: socket/fd syscall outside src/net, the I/O shell (STYLE §8; add a net function): $(first "$SYSCALL_RE" "$body")"
        fi
    fi
done
[ $fail -eq 0 ] && echo "checksrc: ok"
exit $fail
