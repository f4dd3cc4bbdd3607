#!/usr/bin/env bash
# A complete ACME issuance, offline: Debian's pebble (Let's Encrypt's test
# CA) with pebble-challtestsrv answering DNS for a.test and b.test with
# 127.0.0.1, so that pebble really fetches each HTTP-01 token from the real
# forkhttpd (its acme_webroot, on its plain listener). certbot --webroot
# gets a.test's certificate and lego --http.webroot b.test's, with the
# commands and config lines of docs/install.md ("HTTPS with a certificate
# from an ACME client"); the server, started with self-signed certificates,
# then serves each issued one without a restart or a signal (the file
# watch), checked with curl against pebble's root and with openssl
# s_client's issuer; and a `certbot renew` (certbot re-points its live/
# links) is served the same way. Everything listens on 127.0.0.1; every
# process is started here and stopped by its pid. Installs pebble, certbot,
# lego, curl and openssl if missing.
# Ends with one line "acme-issuance: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
test_name=acme-issuance
. tests/lib/skip.sh
. tests/lib/readme.sh
bin=${FORKHTTPD:-$top/target/debug/forkhttpd}
[ -x "$bin" ] || cargo build --quiet

need=()
for tool in pebble:pebble pebble-challtestsrv:pebble certbot:certbot lego:lego curl:curl openssl:openssl \
            python3:python3; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if [ "${#need[@]}" -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || true
fi
for tool in pebble pebble-challtestsrv certbot lego curl openssl python3; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is missing and could not be installed"
done

W=$(mktemp -d /tmp/forkhttpd-acme.XXXXXX)
# The children, running as nobody, read the tokens beneath it.
chmod 755 "$W"
pids=()
finished=
cleanup() {
    # A step that stopped the script (set -e) is one more failure.
    [ -n "$finished" ] || echo "$test_name: $passed passed, $((failed + 1)) failed"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
passed=0
failed=0
trap cleanup EXIT
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
        sleep 0.2
    done
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The end of the test: whatever failed, the count line.
finish() {
    finished=1
    echo "$test_name: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
# A step the rest depends on: on failure, it counts, says why, and ends the test.
must() {
    local before=$failed
    check "$@"
    [ "$failed" -eq "$before" ] || finish
}

# docs/install.md's lines between MARK's marks (a code block of its own,
# indented 4), which must be there.
doc_lines() {
    readme_commands "$1" 4 >"$W/doc" && [ -s "$W/doc" ] || { echo "docs/install.md has no $1 lines" >&2; exit 1; }
    cat "$W/doc"
}
# subst TEXT FROM TO: TEXT with FROM (a sed pattern) replaced, which must occur.
subst() {
    grep -q -- "$2" <<<"$1" || { echo "docs/install.md's line '$1' has no '$2'" >&2; exit 1; }
    sed "s|$2|$3|g" <<<"$1"
}

# A self-signed certificate for NAME in DIR/NAME.crt and .key.
self_signed() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$2 self-signed" \
        -addext "subjectAltName=DNS:$2" -keyout "$1/$2.key" -out "$1/$2.crt" 2>/dev/null
}

# Pebble's own HTTPS certificate (the Debian package ships none), from a CA
# the clients are told to trust.
mkdir -p "$W/pebble"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=pebble-https-ca \
    -keyout "$W/pebble/ca.key" -out "$W/pebble/ca.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -CA "$W/pebble/ca.pem" -CAkey "$W/pebble/ca.key" -addext basicConstraints=critical,CA:FALSE \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$W/pebble/key.pem" -out "$W/pebble/cert.pem" 2>/dev/null

# The server: a plain listener (HTTP-01) and an HTTPS one, each site with a
# self-signed certificate at first: a.test's a regular file the test later
# replaces with a link to certbot's, b.test's where lego writes its files.
acme=$W/acme
cb=$W/letsencrypt
lego_path=$W/lego
mkdir -p "$acme" "$W/www" "$W/tls" "$lego_path/certificates"
printf 'served over ACME\n' >"$W/www/index.html"
self_signed "$W/tls" default.test
self_signed "$W/tls" a.test
self_signed "$lego_path/certificates" b.test
config_lines=$(doc_lines acme-config)
# Port 0 only once: the same address in both lists is refused.
cat >"$W/forkhttpd.toml" <<EOF
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:$(free_port)"]
root = "$W/www"
access_log = "$W/access.log"
error_log = "stderr"
tls_certificate = "$W/tls/default.test.crt"
tls_key = "$W/tls/default.test.key"
tls_watch_interval = 0.2
$(subst "$config_lines" /var/lib/forkhttpd/acme "$acme")

[[site]]
hosts = ["a.test"]
root = "$W/www"
tls_certificate = "$W/tls/a.test.crt"
tls_key = "$W/tls/a.test.key"

[[site]]
hosts = ["b.test"]
root = "$W/www"
tls_certificate = "$lego_path/certificates/b.test.crt"
tls_key = "$lego_path/certificates/b.test.key"
EOF
"$bin" --config "$W/forkhttpd.toml" 2>"$W/forkhttpd.err" &
pids+=("$!")
listening() { grep -q 'listening on .*(HTTPS)' "$W/forkhttpd.err"; }
started() { within 10 listening || { cat "$W/forkhttpd.err"; return 1; }; }
must "forkhttpd starts with self-signed certificates" started
http_port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$W/forkhttpd.err" | head -n 1)
tls_port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) (HTTPS)$/\1/p' "$W/forkhttpd.err" | head -n 1)

# pebble-challtestsrv: DNS only (its own challenge listeners off), every
# name 127.0.0.1 and no AAAA answer, so pebble's validation connects to the
# server's plain listener.
dns_port=$(free_port)
cts_port=$(free_port)
timeout 300 pebble-challtestsrv -dns01 "127.0.0.1:$dns_port" -http01 "" -https01 "" -tlsalpn01 "" \
    -management "127.0.0.1:$cts_port" -defaultIPv4 127.0.0.1 -defaultIPv6 "" >"$W/challtestsrv.out" 2>&1 &
pids+=("$!")
acme_port=$(free_port)
mgmt_port=$(free_port)
cat >"$W/pebble/config.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$acme_port",
    "managementListenAddress": "127.0.0.1:$mgmt_port",
    "certificate": "$W/pebble/cert.pem",
    "privateKey": "$W/pebble/key.pem",
    "httpPort": $http_port,
    "tlsPort": $(free_port),
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF
# No nonce refused at random (certbot gives up after one), no sleep before
# a validation; PEBBLE_VA_ALWAYS_VALID stays unset: every token is fetched.
PEBBLE_WFE_NONCEREJECT=0 PEBBLE_VA_NOSLEEP=1 timeout 300 \
    pebble -config "$W/pebble/config.json" -dnsserver "127.0.0.1:$dns_port" >"$W/pebble.out" 2>&1 &
pids+=("$!")
directory="https://127.0.0.1:$acme_port/dir"
pebble_up() { curl -sSf --max-time 5 --cacert "$W/pebble/ca.pem" "$directory" >/dev/null; }
must "pebble serves its ACME directory" within 20 pebble_up
# The root pebble issues under (made afresh at each start).
root_ca() { curl -sSf --max-time 5 --cacert "$W/pebble/ca.pem" -o "$W/pebble-root.pem" \
    "https://127.0.0.1:$mgmt_port/roots/0" && grep -q 'BEGIN CERTIFICATE' "$W/pebble-root.pem"; }
must "pebble's management API gives its root" root_ca

# The certificate and issuer forkhttpd serves for NAME.
served() {
    timeout 10 openssl s_client -connect "127.0.0.1:$tls_port" -servername "$1" </dev/null 2>/dev/null |
        openssl x509 -noout -serial -issuer
}
# NAME's page over HTTPS, verified against pebble's root only.
trusted() {
    timeout 10 curl -sSf --max-time 5 --cacert "$W/pebble-root.pem" --resolve "$1:$tls_port:127.0.0.1" \
        "https://$1:$tls_port/" | grep -q 'served over ACME'
}
self_signed_first() {
    served a.test | grep -q 'a.test self-signed' && served b.test | grep -q 'b.test self-signed' &&
        ! trusted a.test
}
check "each site serves its self-signed certificate at first, which pebble's root does not verify" \
    self_signed_first
tokens_fetched() { grep -c 'GET /.well-known/acme-challenge/[A-Za-z0-9_-]* HTTP/1.1" 200 ' "$W/access.log"; }

# certbot, with docs/install.md's command, the test CA and its own dirs.
certbot_line=$(doc_lines acme-certbot)
certbot_line=$(subst "$certbot_line" /var/lib/forkhttpd/acme "$acme")
certbot_line=$(subst "$certbot_line" example.org a.test)
[ "${certbot_line%% *}" = certbot ] || { echo "docs/install.md's certbot line: $certbot_line"; exit 1; }
read -r -a certbot_cmd <<<"$certbot_line"
certbot_opts=(--server "$directory" --config-dir "$cb" --work-dir "$W/certbot-work" --logs-dir "$W/certbot-logs"
    --register-unsafely-without-email --agree-tos --non-interactive)
certbot_run() { REQUESTS_CA_BUNDLE=$W/pebble/ca.pem timeout 120 "$@" "${certbot_opts[@]}"; }
must "certbot --webroot gets a.test's certificate through forkhttpd's acme_webroot" \
    certbot_run "${certbot_cmd[@]}"
check "pebble fetched certbot's token from forkhttpd (access log)" test "$(tokens_fetched)" -ge 1

# Point a.test's files at certbot's: links to the paths docs/install.md
# names, the key first; no signal: the watch must see it.
tls_lines=$(doc_lines acme-tls)
live_cert=$(sed -n 's/^tls_certificate = "\(.*\)"$/\1/p' <<<"$tls_lines")
live_key=$(sed -n 's/^tls_key = "\(.*\)"$/\1/p' <<<"$tls_lines")
live_cert=$(subst "$(subst "$live_cert" /etc/letsencrypt "$cb")" example.org a.test)
live_key=$(subst "$(subst "$live_key" /etc/letsencrypt "$cb")" example.org a.test)
ln -sf "$live_key" "$W/tls/a.test.key"
ln -sf "$live_cert" "$W/tls/a.test.crt"
pebble_issued() { served "$1" | grep -q 'issuer=.*Pebble'; }
a_served() { within 15 trusted a.test && pebble_issued a.test; }
check "forkhttpd serves certbot's certificate for a.test without a signal (curl on pebble's root, issuer Pebble)" \
    a_served
check "the change was seen by the watch (logged)" grep -q 'certificate file .*a.test.* changed: reloading' \
    "$W/forkhttpd.err"

# certbot renews: it re-points its live/ links at new archive files; the
# server's links to them stay the same, and the watch sees the change.
before=$(served a.test | grep serial)
renew() {
    REQUESTS_CA_BUNDLE=$W/pebble/ca.pem timeout 120 certbot renew --force-renewal --no-random-sleep-on-renew \
        --config-dir "$cb" --work-dir "$W/certbot-work" --logs-dir "$W/certbot-logs" --non-interactive
}
must "certbot renew renews a.test's certificate (no hook)" renew
renewed() { [ "$(served a.test | grep serial)" != "$before" ] && trusted a.test; }
check "forkhttpd serves the renewed certificate behind certbot's links without a signal" within 15 renewed

# The documented lines as written, naming certbot's live/ links themselves,
# pass --check-config.
doc_config() {
    {
        echo "listen = []"
        subst "$(subst "$tls_lines" /etc/letsencrypt "$cb")" example.org a.test |
            sed 's|^tls_listen = .*|tls_listen = ["127.0.0.1:0"]|'
        echo "root = \"$W/www\""
        subst "$config_lines" /var/lib/forkhttpd/acme "$acme"
    } >"$W/doc.toml"
    "$bin" --check-config --no-bind --config "$W/doc.toml" && grep -q "$cb/live/a.test/fullchain.pem" "$W/doc.toml"
}
check "docs/install.md's config lines, naming certbot's live/ links, pass --check-config" doc_config

# lego, with docs/install.md's command: it writes the files b.test's site
# names, and the watch serves them.
lego_line=$(doc_lines acme-lego)
lego_line=$(subst "$lego_line" /var/lib/forkhttpd/acme "$acme")
lego_line=$(subst "$lego_line" example.org b.test)
lego_line=$(subst "$lego_line" /etc/lego "$lego_path")
read -r -a lego_cmd <<<"$lego_line"
[ "${lego_cmd[0]}" = lego ] || { echo "docs/install.md's lego line: $lego_line"; exit 1; }
tokens=$(tokens_fetched)
# lego_run ARGS: lego with the test CA and ARGS.
lego_run() { LEGO_CA_CERTIFICATES=$W/pebble/ca.pem timeout 120 lego --server "$directory" "$@"; }
must "lego --http.webroot gets b.test's certificate through forkhttpd's acme_webroot" lego_run "${lego_cmd[@]:1}"
check "pebble fetched lego's token from forkhttpd (access log)" test "$(tokens_fetched)" -gt "$tokens"
b_served() { within 15 trusted b.test && pebble_issued b.test; }
check "forkhttpd serves lego's certificate for b.test without a signal (curl on pebble's root, issuer Pebble)" \
    b_served
# lego renews (the doc's line with renew for run; a pebble certificate
# lasts years, so renew whatever is left) and rewrites the files.
before=$(served b.test | grep serial)
[ "${lego_cmd[-1]}" = run ] || { echo "docs/install.md's lego line does not end in run: $lego_line"; exit 1; }
must "lego renew renews b.test's certificate" lego_run "${lego_cmd[@]:1:${#lego_cmd[@]}-2}" renew --days 100000 \
    --no-random-sleep
b_renewed() { [ "$(served b.test | grep serial)" != "$before" ] && trusted b.test; }
check "forkhttpd serves lego's renewal without a signal" within 15 b_renewed
check "the server never restarted (one start, no signal)" test "$(grep -c 'listening on 127' "$W/forkhttpd.err")" -eq 2

finish
