#!/usr/bin/env bash
# Scale-out behind the real HAProxy (docs/haproxy.md): two forkhttpd
# instances with PROXY-only listeners behind one HAProxy that sends PROXY v2 and checks the health path, with the guide's
# own configuration (between its haproxy-config marks). Checks that the
# access logs record the clients (127.0.0.2 and 127.0.0.3), not HAProxy;
# that a graceful stop (SIGTERM) of one instance during a stream of
# requests loses none; and that the instance takes traffic again after it
# restarts. Everything listens on 127.0.0.1; every process is started here
# and stopped by its pid. Installs haproxy and curl if missing.
# Ends with one line "haproxy: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
bin=${FORKHTTPD:-$top/target/debug/forkhttpd}
[ -x "$bin" ] || cargo build --quiet

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v curl >/dev/null || need+=(curl)
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

W=$(mktemp -d /tmp/forkhttpd-haproxy.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/www"
printf 'served\n' >"$W/www/x.txt"

passed=0
failed=0
check() {
    local what=$1
    shift
    if "$@" >"$W/out" 2>&1; then
        echo "ok - $what"
        passed=$((passed + 1))
    else
        echo "not ok - $what"
        sed 's/^/    /' "$W/out"
        failed=$((failed + 1))
    fi
}
# Polls COMMAND for up to SECONDS.
within() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start NAME PORT: a PROXY-only instance (port 0 the first time); sets PID_NAME.
start() {
    local name=$1 port=$2
    cat >"$W/$name.toml" <<EOF
listen = []
proxy_listen = ["127.0.0.1:$port"]
trusted_proxies = ["127.0.0.1"]
root = "$W/www"
access_log = "$W/$name.log"
error_log = "stderr"
health_path = "/healthz"
# Every connection comes from HAProxy's address: the per-address cap
# would count the balancer (see docs/haproxy.md).
max_children_per_ip = 0
shutdown_grace = 5
EOF
    "$bin" --config "$W/$name.toml" 2>"$W/$name.err" &
    local pid=$!
    pids+=("$pid")
    eval "pid_$name=$pid"
    within 10 grep -qs 'listening on' "$W/$name.err" || { cat "$W/$name.err"; return 1; }
}
port_of() { sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$W/$1.err" | head -n 1; }

start a 0
start b 0
port_a=$(port_of a)
port_b=$(port_of b)

# The guide's configuration, as written, with only this test's addresses
# and ports: each substitution must apply, or the guide and this test
# have drifted apart.
front=$(free_port)
awk '/<!-- haproxy-config: begin/ { on = 1; next } /<!-- haproxy-config: end/ { on = 0 }
     on && !/^```/ { print }' docs/haproxy.md >"$W/haproxy.cfg"
[ -s "$W/haproxy.cfg" ] || { echo "no HAProxy configuration found in docs/haproxy.md"; exit 1; }
# subst FROM TO: replaces the line start FROM by TO, then requires TO.
subst() {
    sed -i "s|^$1|$2|" "$W/haproxy.cfg"
    grep -q "^$2" "$W/haproxy.cfg" || { echo "docs/haproxy.md's HAProxy configuration has no line starting '$1'"; exit 1; }
}
subst '    bind :80$' "    bind 127.0.0.1:$front"
subst '    server a 10\.0\.0\.5:8081 ' "    server a 127.0.0.1:$port_a "
subst '    server b 10\.0\.0\.6:8081 ' "    server b 127.0.0.1:$port_b "
! grep -n '10\.0\.0\.' "$W/haproxy.cfg" || { echo "an address of docs/haproxy.md's configuration is left"; exit 1; }
haproxy -c -q -f "$W/haproxy.cfg"
haproxy -db -f "$W/haproxy.cfg" >"$W/haproxy.out" 2>&1 &
pids+=("$!")
url="http://127.0.0.1:$front/x.txt"
get() { curl -sS --max-time 5 --interface "$1" -o /dev/null -w '%{http_code}\n' "$url"; }
up() { [ "$(get 127.0.0.2 2>/dev/null)" = 200 ]; }
within 10 up || { cat "$W/haproxy.out"; exit 1; }

clients() {
    # Each client's requests in a row: round robin then sends each client
    # to both instances.
    for c in 127.0.0.2 127.0.0.3; do
        for _ in $(seq 20); do
            [ "$(get "$c")" = 200 ] || { echo "a request from $c failed"; return 1; }
        done
    done
}
check "40 requests from 127.0.0.2 and 127.0.0.3 through HAProxy get 200" clients

logged() {
    for n in a b; do
        for c in 127.0.0.2 127.0.0.3; do
            grep -q "^$c - - .*\"GET /x.txt HTTP/1.1\" 200 " "$W/$n.log" || { echo "$n.log has no line from $c"; return 1; }
        done
        if grep -v '^127\.0\.0\.[23] ' "$W/$n.log"; then
            echo "$n.log records another address (the balancer's?)"
            return 1
        fi
    done
}
check "both instances log the clients' addresses, never HAProxy's" logged

quiet_health() { ! grep -q healthz "$W/a.log" "$W/b.log"; }
check "HAProxy's health checks leave no access-log line" quiet_health

graceful() {
    local n=300 ok
    : >"$W/stream"
    (for _ in $(seq $n); do get 127.0.0.2 >>"$W/stream" 2>&1 || echo fail >>"$W/stream"; done) &
    local stream=$!
    within 10 bash -c "[ \$(wc -l <'$W/stream') -ge 50 ]"
    kill -TERM "$pid_a"
    wait "$pid_a" || { echo "instance a did not exit 0 on SIGTERM"; return 1; }
    wait "$stream"
    ok=$(grep -c '^200$' "$W/stream" || true)
    echo "$ok of $n requests got 200 while instance a stopped"
    [ "$ok" -eq "$n" ]
}
check "a SIGTERM of one instance during a stream of requests loses none" graceful

restarted() {
    local before
    before=$(wc -l <"$W/a.log")
    start a "$port_a"
    within 10 bash -c "for _ in 1 2 3 4; do curl -s -o /dev/null --interface 127.0.0.3 '$url'; done; \
        [ \$(wc -l <'$W/a.log') -gt $before ]"
}
check "after it restarts, the stopped instance takes traffic again" restarted

echo "haproxy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
