#!/usr/bin/env bash
# benches/keyproc.sh: full TLS handshakes per second with the private key in the key processes
# (tls_key_process = true, the default; tls_key_processes of them, one per CPU by default) and in
# every child (false), on loopback only.
#
#   benches/keyproc.sh    builds the release binary, makes an ECDSA P-256 and an RSA 2048 test
#                         certificate with openssl, and for each key measures both settings with
#                         `openssl s_time -new` (a new connection and a full handshake each time, no
#                         request), CLIENTS clients in parallel, DURATION seconds, RUNS runs
#                         alternating the order; prints handshakes/s and the ratio key process /
#                         in child (the issue's goal: at least 0.9)
#
# Knobs (environment): DURATION [5]  CLIENTS [2]  RUNS [3]  KEYS ["ec rsa"]
#                      KEY_PROCESSES [0]  tls_key_processes (0: one per CPU; 1: a single one)
#                      FORKHTTPD  a built binary instead of building target/release/forkhttpd
#                      VERSION [-tls1_3]  the s_time protocol option (-tls1_2 for TLS 1.2)
# Exit status 1 when a server did not start or a client made no handshake. The server runs in its
# own session and is stopped by pid; nothing is left running.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
DURATION="${DURATION:-5}" CLIENTS="${CLIENTS:-2}" RUNS="${RUNS:-3}" KEYS="${KEYS:-ec rsa}"
VERSION="${VERSION:--tls1_3}" KEY_PROCESSES="${KEY_PROCESSES:-0}"
command -v openssl >/dev/null || { echo "keyproc.sh: openssl is missing (apt-get install openssl)" >&2; exit 1; }
if [ -z "${FORKHTTPD:-}" ]; then
    (cd "$REPO" && cargo build --release --quiet) || exit 1
    FORKHTTPD="$REPO/target/release/forkhttpd"
fi
WORK="$(mktemp -d /tmp/forkhttpd-keyproc.XXXXXX)"
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=""
    fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/www" && echo hello >"$WORK/www/index.html"

# make_cert NAME ALGORITHM-OPTIONS...: a self-signed certificate for localhost and its key.
make_cert() {
    local name="$1"; shift
    openssl req -x509 -newkey "$@" -nodes -subj /CN=localhost -days 2 \
        -keyout "$WORK/$name.key" -out "$WORK/$name.crt" 2>/dev/null || exit 1
}
make_cert ec ec -pkeyopt ec_paramgen_curve:P-256
make_cert rsa rsa:2048

# start KEY ON: the server with KEY's pair and tls_key_process = ON, on a free port ($PORT).
start() {
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$WORK/forkhttpd.toml" <<CONF
listen = []
tls_listen = ["127.0.0.1:$port"]
root = "$WORK/www"
tls_certificate = "$WORK/$1.crt"
tls_key = "$WORK/$1.key"
tls_key_process = $2
tls_key_processes = $KEY_PROCESSES
access_log = "off"
backlog = 1024
CONF
    setsid "$FORKHTTPD" --config "$WORK/forkhttpd.toml" 2>"$WORK/server.log" &
    SERVER_PID=$!
    for _ in $(seq 50); do
        grep -q "started" "$WORK/server.log" 2>/dev/null && { PORT="$port"; return 0; }
        sleep 0.1
    done
    echo "keyproc.sh: the server did not start:" >&2; cat "$WORK/server.log" >&2
    return 1
}

# measure PORT: full handshakes per second, CLIENTS s_time clients for DURATION seconds together.
measure() {
    local i total=0 n pids=()
    for i in $(seq "$CLIENTS"); do
        openssl s_time -connect "127.0.0.1:$1" -new -time "$DURATION" "$VERSION" >"$WORK/s_time.$i" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}"
    for i in $(seq "$CLIENTS"); do
        n=$(sed -n 's/^\([0-9]\+\) connections in [0-9.]\+s.*/\1/p' "$WORK/s_time.$i" | head -1)
        [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "keyproc.sh: client $i made no handshake:" >&2; cat "$WORK/s_time.$i" >&2; return 1; }
        total=$((total + n))
    done
    python3 -c "print(f'{$total / $DURATION:.0f}')"
}

status=0
cpus=$(nproc)
per_cpu=""; [ "$KEY_PROCESSES" = 0 ] && per_cpu=" (one per CPU: $cpus)"
echo "tls_key_processes = $KEY_PROCESSES$per_cpu, $CLIENTS clients, ${DURATION}s, $RUNS runs, $VERSION"
printf '%-4s %-4s %12s %12s %8s\n' key run "keyproc h/s" "in-child h/s" ratio
for key in $KEYS; do
    ratios=()
    for run in $(seq "$RUNS"); do
        declare -A rate=()
        order="true false"; [ $((run % 2)) = 0 ] && order="false true"
        for on in $order; do
            start "$key" "$on" || { status=1; stop_server; continue; }
            rate[$on]=$(measure "$PORT") || status=1
            stop_server
        done
        if [ -n "${rate[true]:-}" ] && [ -n "${rate[false]:-}" ]; then
            ratio=$(python3 -c "print(f'{${rate[true]} / max(${rate[false]}, 1):.2f}')")
            ratios+=("$ratio")
            printf '%-4s %-4s %12s %12s %8s\n' "$key" "$run" "${rate[true]}" "${rate[false]}" "$ratio"
        fi
        unset rate
    done
    [ ${#ratios[@]} -gt 0 ] && printf '%-4s %-4s %12s %12s %8s\n' "$key" median "" "" \
        "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
done
exit "$status"
