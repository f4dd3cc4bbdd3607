#!/usr/bin/env bash
# benches/run.sh: forkhttpd and nginx side by side in one run, on loopback only.
#
#   benches/run.sh           the benchmark (a few minutes): builds the release binary and the TLS
#                            load generator, installs what is missing (wrk, nginx, busybox, curl,
#                            openssl, strace, valgrind, gcc) from Debian packages, prints one table
#                            and writes a CSV (path printed)
#   benches/run.sh --smoke   scenarios a, ta, tb and tr once for 1 s each and the cost counts on short
#                            connections, to prove the tool still runs (.ci/run); ends
#                            "bench-smoke: N passed, M failed"
#
# Knobs (environment), small by default:
#   DURATION [3]   seconds of each measured wrk window     WARMUP [1]  seconds of discarded load before it
#   RUNS [3]       repetitions                             SCENARIOS ["a b c d e ta tb tr tc td"]
#   CURL_REPS [3]  timed downloads per run in e            COST [1]    0 skips benches/cost.sh
#   FORKHTTPD      a built binary to use instead of building target/release/forkhttpd
#   TLSLOAD        a built benches/tlsload.rs to use instead of building it (cargo build
#                  --example tlsload; --release unless --smoke)
#   CSV            where to write the CSV [/tmp/forkhttpd-bench-<UTC time>.csv]
#   FORKREF        C source of a minimal fork-per-connection server to add to scenarios a and b,
#                  the model's floor [../shared/bench/forkref.c beside the project, when it
#                  exists] (usage: forkref PORT DOCROOT; binds 127.0.0.1); "" leaves it out
#   BASELINE       an earlier forkhttpd binary to add to scenario a, measured in the same run:
#                  "did this change make keep-alive slower?" (for example one built from the
#                  commit before the change with `git worktree add`)
#
# Scenarios (wrk with one thread, leaving the other core to the server):
#   a  keep-alive, GET /4k.bin, 50 connections; forkhttpd once more with its access log on, to a file
#   b  a new connection per request (Connection: close), /4k.bin, 50 concurrent; busybox httpd too
#   c  keep-alive, /1m.bin, 10 connections
#   d  keep-alive, /index.html (578 bytes), 500 connections
#   e  one 100 MiB download with curl (median of CURL_REPS)
# and over HTTPS (TLS 1.3, one ECDSA P-256 certificate minted by this script with openssl and
# served by both; a second forkhttpd and a second nginx, each with only an HTTPS listener):
#   ta keep-alive, GET /4k.bin, 50 connections (wrk)
#   tb a new connection and a full handshake per request, /4k.bin, 50 concurrent (tlsload)
#   tr the same, each connection resuming the session of the one before it by a ticket (tlsload)
#   tc keep-alive, /1m.bin, 10 connections (wrk)
#   td keep-alive, /index.html, 500 connections (wrk): the summed PSS of 500 TLS children; a window
#      of 10 s at least, as wrk's one thread makes the 500 handshakes in it first
# tb and tr are the handshakes per second each server reaches. They use benches/tlsload.rs, built
# here, not wrk: wrk resumes its previous session on every new connection (it keeps the SSL
# object's session across SSL_clear), so it cannot do full handshakes; tlsload counts which kind
# of handshake each connection made, and a run whose handshakes are not the kind asked fails.
# Every run measures each server once per scenario, one after the other, the order alternating from
# run to run: a ratio compares windows seconds apart, which is all a noisy machine allows.
# The table shows medians over the runs and the median of the per-run ratios (min..max).
#
# Equivalent settings: the same generated document root, access logs off, keep-alive timeout 5 s and
# 1000 requests per connection (forkhttpd's defaults), backlog 1024, sendfile with the head in the
# first segment (nginx: tcp_nopush), workers or children as nobody when started as root; over
# HTTPS, session tickets whose key all workers share (nginx: ssl_session_ticket_key, and a shared
# session cache for TLS 1.2 session ids; forkhttpd: the parent's ticket keys). nginx runs
# in the foreground with a master and 2 workers (one per core): forkhttpd's children spread over
# both cores too, so 1 worker would cap nginx at one core and flatter forkhttpd.
#
# The minimal C fork server (FORKREF), when given, runs in b beside busybox: the issue's target b
# is at least 1.0x that floor. It is built with cc -O2 into the work directory, never installed.
#
# Exit status 1 only when a scenario failed to run: wrk socket errors, a non-2xx status, bodies
# shorter than the file, a server that did not start, a tool that is missing. Slowness never fails,
# and wrk timeouts (a response over 10 s) are counted in the CSV, not failed.
# Servers are started in their own sessions and stopped by pid; nothing is left running.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
SMOKE=0
case "${1:-}" in
    --smoke) SMOKE=1 ;;
    "") ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--smoke]" >&2; exit 2 ;;
esac
if [ "$SMOKE" = 1 ]; then
    DURATION="${DURATION:-1}" WARMUP="${WARMUP:-0}" RUNS="${RUNS:-1}" SCENARIOS="${SCENARIOS:-a ta tb tr}"
    export N1="${N1:-5}" N2="${N2:-25}"
fi
DURATION="${DURATION:-3}"
WARMUP="${WARMUP:-1}"
RUNS="${RUNS:-3}"
SCENARIOS="${SCENARIOS:-a b c d e ta tb tr tc td}"
CURL_REPS="${CURL_REPS:-3}"
COST="${COST:-1}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
CSV="${CSV:-/tmp/forkhttpd-bench-$STAMP.csv}"
export CSV

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
has() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }
has_tls() { case " $SCENARIOS " in *" t"[a-z]*) return 0 ;; esac; return 1; }

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); }
fail() { FAILED=$((FAILED + 1)); log "FAILED: $*"; }
# The smoke's closing line, which .ci/run adds to its count, also when the run stops early.
summary() { [ "$SMOKE" = 0 ] || echo "bench-smoke: $PASSED passed, $FAILED failed"; }
trap summary EXIT

# ---------------------------------------------------------------- tools
# command:package pairs; busybox only when b runs
tools=(wrk:wrk nginx:nginx curl:curl python3:python3 ss:iproute2 timeout:coreutils setsid:util-linux)
has b && tools+=(busybox:busybox)
has_tls && tools+=(openssl:openssl)
[ "$COST" = 1 ] && tools+=(strace:strace valgrind:valgrind cc:gcc)
need=()
for t in "${tools[@]}"; do
    # nginx lives in /usr/sbin, which a non-login PATH may lack
    command -v "${t%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${t%%:*}" ] || need+=("${t##*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        fail "missing packages: ${need[*]} (install them, or run as root on Debian)"
        exit 1
    fi
    log "installing ${need[*]}"
    # Keep the packaged nginx from being started as a service on port 80: the benchmark starts
    # its own. policy-rc.d is Debian's switch for that; one already there is left as it is.
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    status=$?
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || { fail "apt-get install ${need[*]} failed"; exit 1; }
fi
PATH="$PATH:/usr/sbin:/sbin"

if [ -n "${FORKHTTPD:-}" ]; then
    BIN="$(realpath "$FORKHTTPD")"
else
    log "building the release binary"
    (cd "$REPO" && cargo build --release --quiet) || { fail "cargo build --release failed"; exit 1; }
    BIN="$REPO/target/release/forkhttpd"
fi
[ -x "$BIN" ] || { fail "no binary at $BIN"; exit 1; }
export FORKHTTPD="$BIN"
if has tb || has tr; then
    if [ -n "${TLSLOAD:-}" ]; then
        TLSLOAD="$(realpath "$TLSLOAD")"
    else
        profile=(--release) && [ "$SMOKE" = 1 ] && profile=()
        log "building the TLS load generator (benches/tlsload.rs)"
        (cd "$REPO" && cargo build "${profile[@]}" --example tlsload --quiet) || { fail "cargo build --example tlsload failed"; exit 1; }
        TLSLOAD="$REPO/target/$([ "$SMOKE" = 1 ] && echo debug || echo release)/examples/tlsload"
    fi
    [ -x "$TLSLOAD" ] || { fail "no TLS load generator at $TLSLOAD"; exit 1; }
fi

# wrk holds 500 sockets in d, and each server as many
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- work dir, cleanup
# 0755 and root's (when root): the children, as nobody, can read the document root below it, and
# the access log's directory is one they cannot write, as forkhttpd requires.
W="$(mktemp -d /tmp/forkhttpd-bench.XXXXXX)" || exit 1
chmod 755 "$W"
mkdir -p "$W/out" "$W/logs"
declare -A PID PORT
SERVERS=()

# Stops one server we started: SIGTERM to its pid, then SIGKILL after 5 s; then any process still
# in the session it leads (a child finishing a connection) is killed by its pid.
stop_server() { # name
    local pid="${PID[$1]:-}" i p left
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    for i in $(seq 30); do
        left="$(session_pids "$pid")"
        [ -n "$left" ] || break
        for p in $left; do kill -KILL "$p" 2>/dev/null; done
        sleep 0.1
    done
    PID[$1]=""
}
WRK_PID=""
cleanup() {
    local s
    [ -z "$WRK_PID" ] || kill -TERM "$WRK_PID" 2>/dev/null
    for s in "${SERVERS[@]}"; do stop_server "$s"; done
    rm -rf "$W"
}
trap 'cleanup; summary' EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- fixture
# Deterministic content, generated: index.html (578 bytes), 4k.bin, 1m.bin, and 100m.bin for e.
python3 - "$W/www" "$(has e && echo 1 || echo 0)" <<'PY' || { fail "fixture generation failed"; exit 1; }
import os, sys
root, big = sys.argv[1], sys.argv[2] == "1"
os.makedirs(root, mode=0o755, exist_ok=True)
line = b"forkhttpd benchmark fixture: the same bytes for every server.\n"
def write(name, size):
    with open(os.path.join(root, name), "wb") as f:
        block = line * (1 << 14)
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
links = "".join(f'<li><a href="{n}">{n}</a></li>\n' for n in ("4k.bin", "1m.bin", "100m.bin"))
page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>forkhttpd benchmark</title>\n</head>\n<body>\n<h1>Benchmark fixture</h1>\n"
        "<p>A small page, so that the cost of a request, not of its payload, is measured.</p>\n"
        f"<ul>\n{links}</ul>\n</body>\n</html>\n")
page += "<!--" + " " * (578 - len(page) - 8) + "-->\n"
with open(os.path.join(root, "index.html"), "w") as f:
    f.write(page)
write("4k.bin", 4096)
write("1m.bin", 1 << 20)
if big:
    write("100m.bin", 100 << 20)
PY
chmod 755 "$W/www" && chmod 644 "$W/www"/*
declare -A SIZE
for f in "$W/www"/*; do SIZE[/${f##*/}]="$(stat -c %s "$f")"; done

# One ECDSA P-256 certificate for localhost and 127.0.0.1, signed by a CA of its own (the clients
# check the chain against it), served by both servers; and nginx's ticket key (AES-256: 80 bytes).
TLS="$W/tls"
if has_tls; then
    mkdir -p "$TLS" && chmod 700 "$TLS"
    { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -keyout "$TLS/ca.key" \
            -out "$TLS/ca.pem" -subj "/CN=forkhttpd benchmark CA" &&
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TLS/key.pem" \
            -out "$TLS/cert.csr" -subj "/CN=localhost" &&
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > "$TLS/cert.ext" &&
        openssl x509 -req -in "$TLS/cert.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial -days 30 \
            -sha256 -extfile "$TLS/cert.ext" -out "$TLS/cert.pem" &&
        openssl rand -out "$TLS/ticket.key" 80; } >"$W/logs/openssl.out" 2>&1 ||
        { fail "minting the certificate failed:"; cat "$W/logs/openssl.out" >&2; exit 1; }
fi

# ---------------------------------------------------------------- servers
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
session_pids() { # sid: every process in the session the server leads
    ps -e -o pid=,sid= | awk -v s="$1" '$2 == s { print $1 }'
}
# "PSS_KiB PROCS": Pss summed over every process of the session, from smaps_rollup
session_pss() { # sid
    local pids
    pids="$(session_pids "$1")"
    [ -n "$pids" ] || { echo "0 0"; return; }
    # shellcheck disable=SC2086
    (cd /proc && cat $(printf '%s/smaps_rollup ' $pids) 2>/dev/null) |
        awk '/^Pss:/ { s += $2; n++ } END { print s + 0, n + 0 }'
}
rss_mib() { awk '/^VmRSS:/ { printf "%.2f", $2 / 1024 }' "/proc/$1/status"; }

# The URL of PATH on server NAME: over HTTPS for the servers named *-tls; and the options curl
# needs to check their certificate.
url() { # name path
    case "$1" in
        *-tls) echo "https://127.0.0.1:${PORT[$1]}$2" ;;
        *) echo "http://127.0.0.1:${PORT[$1]}$2" ;;
    esac
}
CURL_TLS=()
has_tls && CURL_TLS=(--cacert "$TLS/ca.pem")

# Starts NAME as the command given, in a new session (its pid is the session id), and waits until
# it answers 200 on /index.html; forkhttpd binds port 0 and its "listening on" line names the port
# (with " (HTTPS)" after it for a TLS listener).
start_server() { # name port|0 command...
    local name="$1" port="$2" i code tag=""
    shift 2
    case "$name" in *-tls) tag=' (HTTPS)' ;; esac
    setsid "$@" </dev/null >"$W/logs/$name.out" 2>&1 &
    PID[$name]=$!
    SERVERS+=("$name")
    for i in $(seq 100); do
        kill -0 "${PID[$name]}" 2>/dev/null || break
        if [ "$port" = 0 ]; then
            port="$(sed -n "s/.*listening on 127\.0\.0\.1:\([0-9]*\)$tag\$/\1/p" "$W/logs/$name.out" | head -1)"
            [ -n "$port" ] || port=0
        fi
        if [ "$port" != 0 ]; then
            PORT[$name]="$port"
            code="$(curl -s -o /dev/null --max-time 2 "${CURL_TLS[@]}" -w '%{http_code}' "$(url "$name" /index.html)")"
            if [ "$code" = 200 ]; then
                if [ "$(ps -o sid= -p "${PID[$name]}" | tr -d ' ')" != "${PID[$name]}" ]; then
                    fail "$name: pid ${PID[$name]} does not lead its own session"
                    return 1
                fi
                return 0
            fi
        fi
        sleep 0.1
    done
    fail "$name did not start and answer 200 within 10 s; its output:"
    tail -20 "$W/logs/$name.out" >&2
    return 1
}

forkhttpd_conf() { # file access_log [tls]
    if [ "${3:-}" = tls ]; then
        printf 'listen = []\ntls_listen = ["127.0.0.1:0"]\ntls_certificate = "%s"\ntls_key = "%s"\n' \
            "$TLS/cert.pem" "$TLS/key.pem" > "$1"
    else
        echo 'listen = ["127.0.0.1:0"]' > "$1"
    fi
    cat >> "$1" <<EOF
root = "$W/www"
access_log = "$2"
error_log = "stderr"
max_children = 1024
# Every client of the benchmark is 127.0.0.1: the per-address cap (32 by
# default) would answer most of scenario d's 500 connections with 503.
max_children_per_ip = 0
shutdown_grace = 2
EOF
}

ACCESS_LOG="$W/logs/access.log"
forkhttpd_conf "$W/forkhttpd.toml" off
start_server forkhttpd 0 "$BIN" --foreground --config "$W/forkhttpd.toml" || exit 1
if has a; then
    forkhttpd_conf "$W/forkhttpd-log.toml" "$ACCESS_LOG"
    start_server forkhttpd-log 0 "$BIN" --foreground --config "$W/forkhttpd-log.toml" || exit 1
    if [ -n "${BASELINE:-}" ]; then
        start_server forkhttpd-base 0 "$BASELINE" --foreground --config "$W/forkhttpd.toml" || exit 1
    fi
fi
if has_tls; then
    forkhttpd_conf "$W/forkhttpd-tls.toml" off tls
    start_server forkhttpd-tls 0 "$BIN" --foreground --config "$W/forkhttpd-tls.toml" || exit 1
fi

NGINX_USER=""
[ "$(id -u)" = 0 ] && NGINX_USER="user nobody $(id -gn nobody);"
# Starts nginx as NAME, in its own prefix directory; over HTTPS (the name ends in -tls) at its best
# for the scenarios: tickets under one key every worker shares, a session cache the workers share
# for TLS 1.2's session ids, and 16 KiB records (ssl_buffer_size's default).
start_nginx() { # name
    local d="$W/$1" port tls="" ssl=""
    port="$(free_port)"
    mkdir -p "$d/tmp"
    if [ "$1" = nginx-tls ]; then
        ssl=" ssl"
        tls="ssl_certificate $TLS/cert.pem;
        ssl_certificate_key $TLS/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        ssl_session_ticket_key $TLS/ticket.key;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 1h;"
    fi
    cat > "$d/nginx.conf" <<EOF
$NGINX_USER
worker_processes 2;
worker_rlimit_nofile 8192;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 5;
    keepalive_requests 1000;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        listen 127.0.0.1:$port$ssl backlog=1024;
        root $W/www;
        index index.html;
        $tls
    }
}
EOF
    start_server "$1" "$port" nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off; master_process on;'
}
start_nginx nginx || exit 1
if has_tls; then
    start_nginx nginx-tls || exit 1
fi
if has b; then
    # busybox httpd: a fork per connection and no keep-alive, the peer the issue's target b names
    : > "$W/busybox.conf"
    BB_USER=()
    [ "$(id -u)" = 0 ] && BB_USER=(-u "nobody:$(id -gn nobody)")
    BB_PORT="$(free_port)"
    start_server busybox "$BB_PORT" busybox httpd -f -p "127.0.0.1:$BB_PORT" -h "$W/www" -c "$W/busybox.conf" \
        "${BB_USER[@]}" || exit 1
fi

FORKREF="${FORKREF-$REPO/../shared/bench/forkref.c}"
if { has a || has b; } && [ -n "$FORKREF" ]; then
    if [ ! -f "$FORKREF" ]; then
        log "no $FORKREF: scenarios a and b run without the minimal C fork server"
    elif cc -O2 -o "$W/forkref" "$FORKREF"; then
        FR_PORT="$(free_port)"
        start_server forkref "$FR_PORT" "$W/forkref" "$FR_PORT" "$W/www" || exit 1
    else
        fail "cannot build $FORKREF"
    fi
fi

# Parent RSS right after start-up: forkhttpd's accept loop, nginx's master (for scale)
echo "run,scenario,server,figure,value" > "$CSV"
for s in forkhttpd nginx; do echo "0,start,$s,parent_rss_mib,$(rss_mib "${PID[$s]}")" >> "$CSV"; done
if has_tls; then
    for s in forkhttpd nginx; do echo "0,start-tls,$s,parent_rss_mib,$(rss_mib "${PID[$s-tls]}")" >> "$CSV"; done
fi

# Every server must serve every file in full before anything is timed.
for s in "${SERVERS[@]}"; do
    for f in "${!SIZE[@]}"; do
        case "$s" in busybox | forkref) [ "$f" = /100m.bin ] && continue ;; esac
        got="$(curl -s -o /dev/null --max-time 30 "${CURL_TLS[@]}" -w '%{http_code} %{size_download}' "$(url "$s" "$f")")"
        if [ "$got" = "200 ${SIZE[$f]}" ]; then pass; else fail "$s: GET $f gave '$got', want '200 ${SIZE[$f]}'"; fi
    done
done
[ "$FAILED" = 0 ] || exit 1

# ---------------------------------------------------------------- measurements
record() { echo "$1,$2,$3,$4,$5" >> "$CSV"; } # run scenario server figure value

# Peak of session_pss while the load generator runs, sampled every 0.5 s (bounded).
sample_peak() { # sid wrk-pid seconds
    local best=0 procs=0 i pss n
    for i in $(seq $(($3 * 2 + 20))); do
        kill -0 "$2" 2>/dev/null || break
        read -r pss n < <(session_pss "$1")
        [ "$pss" -gt "$best" ] && best=$pss
        [ "$n" -gt "$procs" ] && procs=$n
        sleep 0.5
    done
    echo "$best $procs"
}

# Runs one measured window of the load generator (wrk, or tlsload for tb and tr) against server S,
# over HTTPS for the t scenarios (the S-tls instance; figures recorded under S), checks it ran
# cleanly and records its figures.
wrk_run() { # run scenario server connections path [wrk args...]
    local run="$1" sc="$2" s="$3" c="$4" path="$5" inst="$3"
    shift 5
    case "$sc" in t*) inst="$s-tls" ;; esac
    local url out="$W/out/$run.$sc.$s" want="${SIZE[$path]}" peak="" lines gen=() dur="$DURATION"
    url="$(url "$inst" "$path")"
    # wrk makes td's 500 handshakes in its one thread at the start of the window, which takes
    # seconds on a busy machine (3 s gave no response at all on one): a window of 10 s at least.
    [ "$sc" = td ] && [ "$dur" -lt 10 ] && dur=10
    case "$sc" in
        tb | tr)
            gen=("$TLSLOAD" --port "${PORT[$inst]}" --ca "$TLS/ca.pem" --path "$path" --length "$want" --connections "$c")
            [ "$sc" = tr ] && gen+=(--resume)
            ;;
    esac
    if [ "$WARMUP" != 0 ]; then
        if [ "${#gen[@]}" -gt 0 ]; then
            timeout -k 5 $((WARMUP + 30)) "${gen[@]}" --seconds "$WARMUP" >/dev/null 2>&1
        else
            timeout -k 5 $((WARMUP + 30)) wrk -t1 -c"$c" -d"${WARMUP}s" --timeout 10s "$@" "$url" >/dev/null 2>&1
        fi
    fi
    [ "$s" = forkhttpd-log ] && : > "$ACCESS_LOG"
    if [ "${#gen[@]}" -gt 0 ]; then
        timeout -k 5 $((dur + 30)) "${gen[@]}" --seconds "$dur" >"$out" 2>&1 &
    else
        timeout -k 5 $((dur + 30)) wrk -t1 -c"$c" -d"${dur}s" --timeout 10s -s "$HERE/wrk-result.lua" \
            "$@" "$url" >"$out" 2>&1 &
    fi
    WRK_PID=$!
    case "$sc" in a | d | ta | td) peak="$(sample_peak "${PID[$inst]}" "$WRK_PID" "$dur")" ;; esac
    wait "$WRK_PID"
    WRK_PID=""
    local requests=0 duration_us=0 bytes=0 connect=0 read=0 write=0 status=0 timeout=0 p50_us=0 p99_us=0
    local full=0 resumed=0 kv
    for kv in $(sed -n 's/^RESULT //p' "$out"); do printf -v "${kv%%=*}" '%s' "${kv#*=}"; done
    local why=""
    if [ "$requests" = 0 ] || [ "$duration_us" = 0 ]; then
        why="no requests completed ($(tr '\n' ' ' < "$out" | cut -c1-200))"
    elif [ $((connect + read + write)) -gt 0 ]; then
        why="socket errors: connect $connect, read $read, write $write"
    elif [ "$status" -gt 0 ]; then
        why="$status non-2xx responses"
    elif [ "$bytes" -lt $((requests * want)) ]; then
        why="short bodies: $bytes bytes for $requests responses of $want"
    elif [ "$s" = forkhttpd-log ] && lines="$(wc -l < "$ACCESS_LOG")" && [ "$lines" -lt "$requests" ]; then
        why="access log has $lines lines for $requests requests"
    elif [ "$sc" = tb ] && [ "$resumed" -gt 0 ]; then
        why="$resumed of $requests handshakes resumed, none should"
    elif [ "$sc" = tr ] && [ "$full" -gt $((c + requests / 100)) ]; then
        # one full handshake per client thread to begin with; past that, a ticket was refused
        why="$full of $requests handshakes were full ones, want at most $((c + requests / 100))"
    fi
    if [ "$sc" = tr ]; then
        record "$run" "$sc" "$s" resumed_pct "$(awk -v r="$resumed" -v n="$requests" 'BEGIN { printf "%.1f", n ? 100 * r / n : 0 }')"
    fi
    record "$run" "$sc" "$s" req_per_s "$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.1f", r / d * 1e6 }')"
    record "$run" "$sc" "$s" mib_per_s "$(awk -v b="$bytes" -v d="$duration_us" 'BEGIN { printf "%.1f", b / d * 1e6 / 1048576 }')"
    record "$run" "$sc" "$s" p50_ms "$(awk -v u="$p50_us" 'BEGIN { printf "%.3f", u / 1000 }')"
    record "$run" "$sc" "$s" p99_ms "$(awk -v u="$p99_us" 'BEGIN { printf "%.3f", u / 1000 }')"
    record "$run" "$sc" "$s" timeouts "$timeout"
    if [ -n "$peak" ]; then
        record "$run" "$sc" "$s" peak_pss_mib "$(awk -v k="${peak% *}" 'BEGIN { printf "%.2f", k / 1024 }')"
        record "$run" "$sc" "$s" peak_procs "${peak#* }"
    fi
    if [ -n "$why" ]; then
        record "$run" "$sc" "$s" result "failed"
        fail "$s, scenario $sc, run $run: $why"
    else
        record "$run" "$sc" "$s" result ok
        pass
        log "run $run, $sc, $s: $requests requests in $((duration_us / 1000)) ms, p99 $((p99_us / 1000)) ms${peak:+, peak PSS ${peak% *} KiB in ${peak#* } processes}"
    fi
}

curl_run() { # run server
    local run="$1" s="$2" url="http://127.0.0.1:${PORT[$2]}/100m.bin" i got rates=() why=""
    cat "$W/www/100m.bin" > /dev/null # back into the page cache if it was trimmed
    curl -s -o /dev/null --max-time 60 "$url"
    for i in $(seq "$CURL_REPS"); do
        got="$(curl -s -o /dev/null --max-time 60 -w '%{http_code} %{size_download} %{time_total}' "$url")"
        set -- $got
        if [ "${1:-}" = 200 ] && [ "${2:-}" = "${SIZE[/100m.bin]}" ]; then
            rates+=("$(awk -v t="$3" 'BEGIN { printf "%.1f", 100 / t }')")
        else
            why="download gave '$got', want '200 ${SIZE[/100m.bin]} ...'"
        fi
    done
    if [ -z "$why" ]; then
        record "$run" e "$s" mib_per_s "$(printf '%s\n' "${rates[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
        record "$run" e "$s" result ok
        pass
        log "run $run, e, $s: ${rates[*]} MiB/s"
    else
        record "$run" e "$s" result failed
        fail "$s, scenario e, run $run: $why"
    fi
}

log "$RUNS run(s) of '$SCENARIOS', ${DURATION}s windows after ${WARMUP}s of warm-up; forkhttpd $BIN"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$RUNS"); do
    for sc in $SCENARIOS; do
        order=(forkhttpd nginx)
        [ "$sc" = a ] && order+=(forkhttpd-log) && [ -n "${PORT[forkhttpd-base]:-}" ] && order+=(forkhttpd-base)
        [ "$sc" = a ] && [ -n "${PORT[forkref]:-}" ] && order+=(forkref)
        [ "$sc" = b ] && order+=(busybox) && [ -n "${PORT[forkref]:-}" ] && order+=(forkref)
        if [ $((run % 2)) = 0 ]; then
            for ((i = 0, j = ${#order[@]} - 1; i < j; i++, j--)); do t="${order[i]}"; order[i]="${order[j]}"; order[j]="$t"; done
        fi
        for s in "${order[@]}"; do
            case "$sc" in
                a) wrk_run "$run" a "$s" 50 /4k.bin ;;
                b) wrk_run "$run" b "$s" 50 /4k.bin -H 'Connection: close' ;;
                c) wrk_run "$run" c "$s" 10 /1m.bin ;;
                d) wrk_run "$run" d "$s" 500 /index.html ;;
                ta) wrk_run "$run" ta "$s" 50 /4k.bin ;;
                tb | tr) wrk_run "$run" "$sc" "$s" 50 /4k.bin ;;
                tc) wrk_run "$run" tc "$s" 10 /1m.bin ;;
                td) wrk_run "$run" td "$s" 500 /index.html ;;
                e) curl_run "$run" "$s" ;;
                *) fail "unknown scenario '$sc'" ;;
            esac
        done
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
# What each HTTPS server negotiates with an OpenSSL client, for the table's heading.
TLS_SEEN=""
if has_tls; then
    for s in forkhttpd nginx; do
        TLS_SEEN+="; $s: $(openssl s_client -connect "127.0.0.1:${PORT[$s-tls]}" -servername localhost \
            -CAfile "$TLS/ca.pem" </dev/null 2>/dev/null |
            awk '/^New, / { sub(/,$/, "", $2); p = $2 " " $NF } /^Server Temp Key:/ { k = $4; sub(/,$/, "", k) } END { print p " " k }')"
    done
fi
for s in "${SERVERS[@]}"; do stop_server "$s"; done

if [ "$COST" = 1 ]; then
    log "counting the cost of one request (benches/cost.sh)"
    cost_out="$("$HERE/cost.sh" 2>&1)"
    read -r cp cf < <(printf '%s\n' "$cost_out" | sed -n 's/^cost: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p')
    PASSED=$((PASSED + ${cp:-0}))
    FAILED=$((FAILED + ${cf:-1}))
fi

# ---------------------------------------------------------------- report
cpu="$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
mem="$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
echo
echo "forkhttpd $("$BIN" --version | awk '{ print $2 }') vs $(nginx -v 2>&1 | sed 's/^nginx version: //') on $(date -u '+%Y-%m-%d %H:%M UTC'):" \
    "$(nproc) x $cpu, $mem, $(uname -sr); loopback; wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }') -t1;" \
    "median of $RUNS run(s) of ${DURATION}s; load average before $LOAD_BEFORE, after $LOAD_AFTER${TLS_SEEN:+; HTTPS: ECDSA P-256 certificate$TLS_SEEN}"
echo
python3 "$HERE/report.py" "$CSV"
[ -z "${cost_out:-}" ] || { echo; printf '%s\n' "$cost_out" | grep -v '^cost: [0-9]* passed, [0-9]* failed$'; }
echo
echo "CSV: $CSV"
[ "$SMOKE" = 1 ] || echo "bench: $PASSED measurements ran, $FAILED failed"
[ "$FAILED" = 0 ]
