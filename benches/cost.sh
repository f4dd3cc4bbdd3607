#!/usr/bin/env bash
# benches/cost.sh: what one keep-alive request costs forkhttpd, in counts that do not drift with
# the load on the machine, so an optimisation shows as a number (benches/run.sh runs it last).
#
#   benches/cost.sh     (FORKHTTPD=binary, default target/release/forkhttpd, built if missing)
#
# One server, two connections one after the other (benches/kaclient.py): the first sends N1 [100]
# plain keep-alive `GET /4k.bin`, the second N2 [600], each after the previous response was read.
# Each connection is one child process; the difference between the two children's counts, divided
# by N2 - N1, is the cost of one request without the fork, the set-up and the exit around it.
#   system calls  strace -f -ff (a file per process), the real binary; by name too
#   instructions  valgrind --tool=callgrind (user space only; `perf stat -e instructions` says
#                 "<not supported>" in a VM without a PMU, as on the project's, and callgrind
#                 counts the same everywhere)
#   allocations   valgrind --tool=dhat, heap blocks allocated (malloc, realloc, ...) beneath
#                 forkhttpd::child::serve; more than MAX_ALLOCS [0] per request fails the count
# valgrind 3.19 (Debian 12) does not know openat2(2): under valgrind the server is run with
# benches/vg-openat2.c preloaded, which answers that call with openat(2) (see the file).
# The system calls a connection costs besides its requests (fork to exit, the child's side) are
# printed too. With CSV set, the figures are appended to it (run.sh's format). KEEP=1 keeps the
# work directory (each child's trace, callgrind profile and dhat log) for a closer look.
# Ends with "cost: N passed, M failed"; exit status 1 when a measurement could not be taken, or
# when a keep-alive GET allocated more than MAX_ALLOCS.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
N1="${N1:-100}"
N2="${N2:-600}"
# A plain keep-alive GET allocates nothing on the heap; more fails the count.
MAX_ALLOCS="${MAX_ALLOCS:-0}"
[ "$N2" -gt "$N1" ] || { echo "N2 ($N2) must be larger than N1 ($N1)" >&2; exit 2; }
BIN="${FORKHTTPD:-$(dirname "$HERE")/target/release/forkhttpd}"
if [ ! -x "$BIN" ]; then
    (cd "$(dirname "$HERE")" && cargo build --release --quiet) || { echo "cost: 0 passed, 1 failed"; exit 1; }
fi

PASSED=0
FAILED=0
fail() { FAILED=$((FAILED + 1)); echo "cost: FAILED: $*" >&2; }
record() { [ -z "${CSV:-}" ] || echo "cost,a,forkhttpd,$1,$2" >> "$CSV"; }

# 0755, with one 1777 directory per tool: children write their valgrind output at exit, as nobody.
W="$(mktemp -d /tmp/forkhttpd-cost.XXXXXX)" || exit 1
chmod 755 "$W"
mkdir -p "$W/www"
head -c 4096 /dev/zero | tr '\0' 'x' > "$W/www/4k.bin"
chmod 755 "$W/www" && chmod 644 "$W/www/4k.bin"
cat > "$W/forkhttpd.toml" <<EOF
listen = ["127.0.0.1:0"]
root = "$W/www"
access_log = "off"
error_log = "stderr"
max_requests_per_connection = 100000
shutdown_grace = 5
EOF
# Under valgrind the child runs inside valgrind's JIT, which maps executable memory and makes
# system calls of its own that the child's seccomp filter refuses (SIGSYS): valgrind measures
# without the sandbox. It is entered once per connection, so the per-request counts are the same;
# strace, outside the child, measures with it (its calls are in the per-connection count).
sed 's/^shutdown_grace = 5$/&\nsandbox = false/' "$W/forkhttpd.toml" > "$W/forkhttpd-vg.toml"

TOOL_PID=""
SERVER_PID=""
# Stops what run_under started: SIGTERM to the server (it lets its children finish), then the
# tool; each is SIGKILLed by pid if it outlives its bound.
stop() {
    local i
    [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null
    if [ -n "$TOOL_PID" ]; then
        for i in $(seq 300); do kill -0 "$TOOL_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$TOOL_PID" 2>/dev/null
        wait "$TOOL_PID" 2>/dev/null
    fi
    [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
    TOOL_PID=""
    SERVER_PID=""
}
trap 'stop; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
trap 'exit 130' INT TERM

# Runs the server under a tool (the command given), waits for its "listening on" line (which also
# names the server's own pid, the tool's child under strace, kept in MAIN_PID), then drives the
# two connections.
run_under() { # dir command...
    local dir="$1" port="" i
    shift
    mkdir -p "$dir" && chmod 1777 "$dir"
    "$@" "$BIN" --foreground --config "${CONFIG:-$W/forkhttpd.toml}" </dev/null >"$dir/server.out" 2>&1 &
    TOOL_PID=$!
    for i in $(seq 600); do
        port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$dir/server.out")"
        [ -n "$port" ] && break
        kill -0 "$TOOL_PID" 2>/dev/null || break
        sleep 0.1
    done
    SERVER_PID="$(sed -n 's/^forkhttpd\[\([0-9]*\)\]: .*listening on .*/\1/p' "$dir/server.out" | head -1)"
    if [ -z "$port" ] || [ -z "$SERVER_PID" ]; then
        fail "the server did not start under $1: $(tail -3 "$dir/server.out" | tr '\n' ' ')"
        stop
        return 1
    fi
    MAIN_PID="$SERVER_PID"
    local ok=0
    python3 "$HERE/kaclient.py" "$port" /4k.bin "$N1" --length 4096 &&
        python3 "$HERE/kaclient.py" "$port" /4k.bin "$N2" --length 4096 || ok=1
    # The spawner, which forks the children, is the parent's child too.
    SPAWNERS="$(pgrep -P "$MAIN_PID" -x forkhttpd-spawn | tr '\n' ' ')"
    stop
    [ "$ok" = 0 ] || fail "a request failed under $1"
    return "$ok"
}

# Whether the output file $1 (named ....PID) is the parent's or its spawner's, not a connection's.
server_process() {
    local pid="${1##*.}"
    [ "$pid" = "$MAIN_PID" ] || [[ " $SPAWNERS " == *" $pid "* ]]
}

# "A B": the smaller and the larger of two counts, one per connection child
two() { # name: reads "count" lines; fails unless exactly two
    sort -g | awk -v what="$1" '{ v[NR] = $1 } END { if (NR != 2) { print "want 2 " what ", got " NR > "/dev/stderr"; exit 1 } print v[1], v[2] }'
}
per() { awk -v a="$1" -v b="$2" -v n1="$N1" -v n2="$N2" -v f="${3:-%.2f}" 'BEGIN { printf f, (b - a) / (n2 - n1) }'; }

echo "cost of one plain keep-alive GET /4k.bin (200, 4096-byte body), from connections of $N1 and $N2 requests:"

# ---- system calls
if command -v strace >/dev/null 2>&1; then
    d="$W/strace"
    if run_under "$d" strace -f -ff -qq -o "$d/trace"; then
        # every file but the parent's and the spawner's is one connection's child
        children=()
        for f in "$d"/trace.*; do server_process "$f" || children+=("$f"); done
        if counts="$(for f in "${children[@]}"; do grep -vc '^\(---\|+++\)' "$f"; done | two children)"; then
            read -r a b <<< "$counts"
            small="" large=""
            for f in "${children[@]}"; do
                n="$(grep -vc '^\(---\|+++\)' "$f")"
                [ "$n" = "$a" ] && small="$f"
                [ "$n" = "$b" ] && large="$f"
            done
            by_name="$(for f in "$small" "$large"; do
                grep -v '^\(---\|+++\)' "$f" | sed 's/(.*//' | sort | uniq -c | awk -v f="$f" '{ print f, $2, $1 }'
            done | awk -v s="$small" -v n="$((N2 - N1))" '
                { c[$2] += ($1 == s) ? -$3 : $3 }
                END { for (k in c) if (c[k] != 0) printf "%s %.2f\n", k, c[k] / n }' | sort | paste -sd, | sed 's/,/, /g')"
            syscalls="$(per "$a" "$b")"
            setup="$(awk -v a="$a" -v p="$syscalls" -v n1="$N1" 'BEGIN { printf "%.0f", a - p * n1 }')"
            echo "  system calls per request:      $syscalls ($by_name)"
            echo "  system calls per connection:   $setup (the child's, fork to exit, besides its requests)"
            record syscalls_per_request "$syscalls"
            record syscalls_per_connection "$setup"
            PASSED=$((PASSED + 1))
        else
            fail "strace: not one trace per connection (${#children[@]} child files)"
        fi
    fi
else
    fail "strace is not installed"
fi

# ---- instructions and allocations (valgrind, with the openat2 shim)
shim="$W/vg-openat2.so"
if ! command -v valgrind >/dev/null 2>&1; then
    fail "valgrind is not installed"
elif ! cc -O2 -shared -fPIC -o "$shim" "$HERE/vg-openat2.c" -ldl; then
    fail "cannot build $HERE/vg-openat2.c"
else
    d="$W/callgrind"
    if CONFIG="$W/forkhttpd-vg.toml" run_under "$d" env LD_PRELOAD="$shim" valgrind --tool=callgrind --log-file="$d/vg.%p.log" \
        --callgrind-out-file="$d/callgrind.%p"; then
        if counts="$(for f in "$d"/callgrind.*; do
            server_process "$f" || sed -n 's/^summary: //p' "$f"
        done | two children)"; then
            read -r a b <<< "$counts"
            instr="$(per "$a" "$b" %.0f)"
            echo "  instructions per request:      $instr (user space, callgrind)"
            record instructions_per_request "$instr"
            PASSED=$((PASSED + 1))
        else
            fail "callgrind: not one profile per connection"
        fi
    fi
    d="$W/dhat"
    # Enough callers that a block allocated deep in serving still shows
    # child::serve in its stack.
    if CONFIG="$W/forkhttpd-vg.toml" run_under "$d" env LD_PRELOAD="$shim" valgrind --tool=dhat --log-file="$d/vg.%p.log" \
        --num-callers=64 --dhat-out-file="$d/dhat.%p"; then
        # A child's profile also holds what its parent allocated before the
        # fork (and the parent allocates between the two connections), so
        # only blocks allocated beneath child::serve count. A child may
        # allocate nothing at all (its buffers are the parent's), so the
        # proof that frames are named is the parent's own: -1 without them.
        if counts="$(for f in "$d"/dhat.*; do
            server_process "$f" || python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
names = d["ftbl"]
if not any("forkhttpd::main" in n for n in names):
    print(-1)
else:
    print(sum(p["tbk"] for p in d["pps"] if any("forkhttpd::child::serve" in names[i] for i in p["fs"])))' "$f"
        done | two children)"; then
            read -r a b <<< "$counts"
            allocs="$(per "$a" "$b")"
            echo "  heap allocations per request:  $allocs (dhat; the child's own: $a and $b blocks)"
            record allocations_per_request "$allocs"
            if [ "$a" = -1 ]; then
                fail "dhat: no frame names forkhttpd::main (frames not named?)"
            elif awk -v v="$allocs" -v m="$MAX_ALLOCS" 'BEGIN { exit !(v > m) }'; then
                fail "dhat: $allocs heap allocations per keep-alive request, more than MAX_ALLOCS=$MAX_ALLOCS"
            else
                PASSED=$((PASSED + 1))
            fi
        else
            fail "dhat: not one heap profile per connection"
        fi
    fi
fi

echo "cost: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
