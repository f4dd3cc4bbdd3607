#!/usr/bin/env bash
# The status endpoint (status_path) read by its two real clients: Debian's
# Prometheus, scraping the metrics every second, and headless Chromium,
# rendering the HTML page.
# Starts the debug binary on loopback (port 0) with status_path set, makes
# known traffic (3 requests answered 404, a connection held idle, a reload),
# runs prometheus (installed with apt-get if missing) with a temporary config
# and database on an ephemeral loopback port, and asks its HTTP API
# (/api/v1/query) for the series the traffic produced: the scrape must be up
# (Prometheus parsed every line), and each value exact. Then Chromium
# (--headless --no-sandbox, a temporary profile) renders the page: its DOM
# must hold the scoreboard with the held connection's request line, and the
# screenshot must be a PNG of the page's size. With SCREENSHOT=path the
# screenshot is kept there (docs/img/status.png is made this way).
# Run it as `bash tests/prometheus.sh`; FORKHTTPD=path picks another binary.
# Prints one line per check, then "prometheus: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
test_name=prometheus
# shellcheck source=tests/lib/skip.sh
. tests/lib/skip.sh

fail_setup() {
    echo "prometheus: $1"
    echo "prometheus: 0 passed, 1 failed"
    exit 1
}

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "prometheus: installing ${need[*]} with apt-get"
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
            fail_setup "apt-get install ${need[*]} failed"
    else
        skip "${need[*]} missing, and apt-get cannot install them here (not root, or not Debian)"
    fi
fi

bin=${FORKHTTPD:-target/debug/forkhttpd}
if [ -z "${FORKHTTPD:-}" ]; then
    cargo build --quiet || fail_setup "cargo build failed"
fi

work=$(mktemp -d)
server=""
prom=""
holder=""
cleanup() {
    for p in $holder $prom $server; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
# The serving user (nobody, when run as root) must be able to read the site.
chmod 755 "$work"
mkdir -p "$work/site"
echo hello >"$work/site/index.html"
chmod -R a+rX "$work/site"
write_config() {
    cat >"$work/forkhttpd.toml" <<EOF
listen = ["127.0.0.1:0"]
root = "$work/site"
access_log = "off"
error_log = "stderr"
max_children = $1
keepalive_timeout = 120
header_timeout = 120
status_path = "/server-status"
EOF
}
write_config 77
"$bin" --config "$work/forkhttpd.toml" 2>"$work/stderr" &
server=$!
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/stderr" | head -1)
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || fail_setup "the server did not report its port; stderr: $(cat "$work/stderr")"

# The traffic: three 404s, one connection held idle after its request, and
# one held halfway through its head.
for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$port/missing"; done
python3 - "$port" <<'PY' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET /index.html?held-by-the-test HTTP/1.1\r\nHost: x\r\n\r\n")
s.recv(65536)
half = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
half.sendall(b"GET /half HTTP/1.1\r\nHo")
time.sleep(600)
PY
holder=$!

# An ephemeral loopback port for Prometheus's own listener.
pport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: forkhttpd
    metrics_path: /server-status
    params:
      format: [prometheus]
    static_configs:
      - targets: ["127.0.0.1:$port"]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$pport" >"$work/prometheus.log" 2>&1 &
prom=$!

# query EXPR: the value of the single series EXPR selects now, or "" (none).
query() {
    curl -s --max-time 5 "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if len(r) == 1 else "")' 2>/dev/null || true
}
# wait_for EXPR WANT: waits (up to 30 s) until EXPR's value is WANT; prints the last value.
wait_for() {
    local got=""
    for _ in $(seq 60); do
        got=$(query "$1")
        [ "$got" = "$2" ] && break
        sleep 0.5
    done
    echo "$got"
}

passed=0
failed=0
expect() {
    local what=$1 expr=$2 want=$3 got
    got=$(wait_for "$expr" "$want")
    if [ "$got" = "$want" ]; then
        echo "prometheus $what: $expr = $got"
        passed=$((passed + 1))
    else
        echo "prometheus $what: FAILED: $expr = '${got}', expected $want"
        failed=$((failed + 1))
    fi
}

expect "scrape up (every line parsed)" 'up{job="forkhttpd"}' 1
expect "404s counted" 'forkhttpd_requests_total{class="4xx"}' 3
expect "the held connection is idle" 'forkhttpd_children{state="idle"}' 1
expect "the half head is being read" 'forkhttpd_children{state="reading"}' 1
expect "max_children" 'forkhttpd_max_children' 77
expect "generation at start" 'forkhttpd_generation' 1
expect "no TLS here" 'forkhttpd_tls_handshakes_total' 0
expect "no refusal" 'sum(forkhttpd_refusals_total)' 0
expect "start time is the process's" \
    "abs(forkhttpd_start_time_seconds - $(stat -c %Y "/proc/$server")) < bool 5" 1
write_config 78
kill -HUP "$server"
expect "reload counted" 'forkhttpd_reloads_total' 1
expect "generation after the reload" 'forkhttpd_generation' 2
expect "the reload's max_children" 'forkhttpd_max_children' 78
expect "the held connection still idle, on the old board" 'forkhttpd_children{state="idle"}' 1
if [ "$failed" -gt 0 ]; then
    echo "prometheus: its log:"
    tail -20 "$work/prometheus.log" | sed 's/^/    /'
fi

# Chromium renders the HTML page.
url="http://127.0.0.1:$port/server-status"
profile=$(mktemp -d)
chrome() {
    timeout 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --user-data-dir="$profile" "$@" 2>>"$work/chromium.log"
}
dom=$(chrome --dump-dom "$url" || true)
if grep -q '<h1>forkhttpd status</h1>' <<<"$dom" &&
    grep -q 'GET /index.html?held-by-the-test HTTP/1.1' <<<"$dom" &&
    grep -q 'class="st idle">idle<' <<<"$dom"; then
    echo "prometheus chromium page: the scoreboard shows the held connection, idle"
    passed=$((passed + 1))
else
    echo "prometheus chromium page: FAILED: the rendered DOM lacks the title or the held connection's row:"
    head -c 2000 <<<"$dom" | sed 's/^/    /'
    tail -5 "$work/chromium.log" | sed 's/^/    /'
    failed=$((failed + 1))
fi
shot=${SCREENSHOT:-$work/status.png}
chrome --window-size=900,760 --screenshot="$shot" "$url" >/dev/null || true
size=$(python3 - "$shot" <<'PY' 2>/dev/null || true
import struct, sys
data = open(sys.argv[1], "rb").read()
if data[:8] == b"\x89PNG\r\n\x1a\n":
    print("%dx%d" % struct.unpack(">II", data[16:24]))
PY
)
if [ "$size" = 900x760 ]; then
    echo "prometheus chromium screenshot: a 900x760 PNG ($(stat -c %s "$shot") bytes)"
    passed=$((passed + 1))
else
    echo "prometheus chromium screenshot: FAILED: no 900x760 PNG (got '${size}')"
    failed=$((failed + 1))
fi
rm -rf "$profile"

echo "prometheus: $passed passed, $failed failed"
[ "$failed" = 0 ]
