# Process bookkeeping shared by the bench scripts (bench.sh, turn.sh): every process started is
# tracked by name, stopped with its descendants (TERM, then KILL after 5 s) and reaped, also on
# failure or interruption. The sourcing script sets LOG (a folder for each process's output),
# OUT (where logs are kept), W (a scratch folder removed at exit), READY_S and say().

declare -A PID=() # name -> pid of every process we started
ORDER=()          # names in start order

alive() { # PID: running (not gone, not a zombie)
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    [[ ${st:0:1} != Z ]]
}

descendants() { # PID: print all descendant pids
    local c
    for c in $(pgrep -P "$1" 2>/dev/null || true); do
        echo "$c"
        descendants "$c"
    done
}

stop() { # NAME...: TERM each process tree, KILL what is left after 5 s, reap
    local name pid p end
    local -a pids=()
    for name in "$@"; do
        pid=${PID[$name]:-}
        [[ -n $pid ]] || continue
        pids+=("$pid" $(descendants "$pid"))
        unset "PID[$name]"
    done
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    end=$((${EPOCHREALTIME/./} + 5000000))
    for p in "${pids[@]}"; do
        while alive "$p" && ((${EPOCHREALTIME/./} < end)); do sleep 0.02; done
        alive "$p" && kill -KILL "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

start() { # NAME CMD...: run CMD in the background, output to $LOG/NAME.log
    local name=$1
    shift
    "$@" >"$LOG/$name.log" 2>&1 </dev/null &
    PID[$name]=$!
    ORDER+=("$name")
}

run_tracked() { # NAME OUT ERR CMD...: run CMD to completion, killable by cleanup; its status
    local name=$1 out=$2 err=$3 rc=0
    shift 3
    "$@" >"$out" 2>"$err" </dev/null &
    PID[$name]=$!
    ORDER+=("$name")
    wait "${PID[$name]}" || rc=$?
    unset "PID[$name]"
    return "$rc"
}

cleanup() {
    local rc=$? i
    set +e
    trap - EXIT INT TERM
    for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
        [[ -n ${PID[${ORDER[i]}]:-} ]] && stop "${ORDER[i]}"
    done
    cp -r "$LOG" "$OUT/logs" 2>/dev/null
    rm -rf "$W"
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

fail() { # MESSAGE [LOGNAME...]: explain, show the logs' tails, exit 1
    local msg=$1 n
    shift
    say "error: $msg"
    for n in "$@"; do
        if [[ -s $LOG/$n.log ]]; then
            say "--- last lines of $n.log:"
            tail -n 15 "$LOG/$n.log" | sed 's/^/    /' >&2
        fi
    done
    say "measurement could not be made; logs are kept in $OUT/logs"
    exit 1
}

log_has() { grep -qF -- "$2" "$LOG/$1.log" 2>/dev/null; } # NAME TEXT

wait_until() { # DESCRIPTION NAME CMD...: poll CMD until true; fail if NAME dies or after READY_S
    local desc=$1 name=$2 end
    shift 2
    end=$((${EPOCHREALTIME/./} + READY_S * 1000000))
    until "$@"; do
        if [[ -n ${PID[$name]:-} ]] && ! alive "${PID[$name]}"; then
            fail "$name exited while waiting for $desc" "$name"
        fi
        if ((${EPOCHREALTIME/./} > end)); then
            fail "timed out after ${READY_S}s waiting for $desc" "$name"
        fi
        sleep 0.02
    done
}
