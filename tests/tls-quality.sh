#!/usr/bin/env bash
# HTTPS quality, judged by third-party tools against the real server on loopback.
# Mints an ECDSA P-256 test CA and a 90-day leaf for localhost and 127.0.0.1 with
# openssl, starts the binary with HTTPS only on 127.0.0.1:0, HSTS on, serving a
# copy of the default site (www/), then:
#  - testssl: testssl.sh (Debian's package, 3.0.x) with the test CA added; a
#    finding of severity HIGH or CRITICAL (or FATAL: a scan problem) in its
#    JSON fails (the server picks the suite: testssl 3.0.x rates a client's
#    pick HIGH whatever the suites are).
#    Client simulation is left out (-c: it only ever reports INFO, and takes a
#    third of the run); every other section of the default run is kept.
#  - sslyze: sslyze (PyPI, in a venv under target/) with --mozilla_config=
#    intermediate, the test CA given as --certinfo_ca_file and localhost as SNI:
#    it must say "Compliant", have verified the chain against the test CA, and
#    see an HSTS max-age of at least the profile's hsts_min_age (sslyze 6 reads
#    the header but leaves that comparison out of its verdict).
#  - chromium: headless Chromium with the test CA trusted in an NSS database
#    (a temporary $HOME/.pki/nssdb, as a user would add it) renders the default
#    site: the DOM it dumps has www/index.html's heading and no interstitial,
#    the page's style sheet and logo were fetched over the same HTTPS port, and
#    a screenshot is written to target/tls-quality/https-chromium.png (copy it
#    to docs/img/ to refresh the one the docs show).
#  - chromium-untrusted: the same with an empty NSS database shows Chromium's
#    certificate interstitial instead, so the check above can fail.
# Installs what is missing (testssl.sh, chromium, libnss3-tools, jq, python3-venv
# with apt-get; sslyze with pip) and skips (tests/lib/skip.sh) when it cannot.
# Run it as `bash tests/tls-quality.sh`; FORKHTTPD=path picks another binary.
# Prints one line per check, then "tls-quality: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
test_name=tls-quality
# shellcheck source=tests/lib/skip.sh
. tests/lib/skip.sh

fail_setup() {
    echo "tls-quality: $1"
    echo "tls-quality: 0 passed, 1 failed"
    exit 1
}

need=()
for tool in testssl:testssl.sh chromium:chromium certutil:libnss3-tools jq:jq openssl:openssl python3:python3; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
command -v chromium >/dev/null 2>&1 || need+=(fonts-liberation)
command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
    echo "tls-quality: installing ${need[*]}"
    if command -v apt-get >/dev/null 2>&1; then
        { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
                --no-install-recommends "${need[@]}"; } >/dev/null 2>&1 || true
    fi
fi
for tool in testssl chromium certutil jq openssl python3; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is missing and apt-get could not install it"
done
venv=target/sslyze-venv
if [ ! -x "$venv/bin/sslyze" ]; then
    echo "tls-quality: installing sslyze from PyPI into $venv"
    python3 -m venv "$venv" >/dev/null 2>&1 || skip "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    pip_log=$(timeout 600 "$venv/bin/pip" install -q sslyze 2>&1) || skip "pip install sslyze failed: $(tail -3 <<<"$pip_log")"
fi

bin=${FORKHTTPD:-target/debug/forkhttpd}
if [ -z "${FORKHTTPD:-}" ]; then
    cargo build --quiet || fail_setup "cargo build failed"
fi
out=target/tls-quality
mkdir -p "$out"

work=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
# The serving user (nobody, when run as root) must be able to read the site.
chmod 755 "$work"
cp -r www "$work/site"
chmod -R a+rX "$work/site"

# The CA and the leaf as a public CA would issue them today: ECDSA P-256 with
# SHA-256, a leaf of 90 days (Mozilla's profile allows 366; testssl warns under
# 60) naming both ways a client here reaches the server, for server use only,
# with a CRL address (a certificate no client could check for revocation is a
# HIGH finding of testssl; nothing fetches it).
openssl_log=$(
    cd "$work" &&
        openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 120 \
            -keyout ca.key -out ca.crt -subj "/CN=forkhttpd tls-quality test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>&1 &&
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout leaf.key -out leaf.csr -subj "/CN=localhost" 2>&1 &&
        printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" \
            "crlDistributionPoints=URI:http://localhost/forkhttpd-test-ca.crl" >leaf.ext &&
        openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 90 \
            -extfile leaf.ext -out leaf.crt 2>&1
) || fail_setup "openssl could not mint the test certificates: $openssl_log"

cat >"$work/forkhttpd.toml" <<EOF
listen = []
tls_listen = ["127.0.0.1:0"]
tls_certificate = "$work/leaf.crt"
tls_key = "$work/leaf.key"
hsts = 63072000
root = "$work/site"
access_log = "stderr"
error_log = "stderr"
EOF

"$bin" --config "$work/forkhttpd.toml" 2>"$work/stderr" &
server=$!
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) (HTTPS).*/\1/p' "$work/stderr" | head -1)
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || fail_setup "the server did not report its HTTPS port; stderr: $(cat "$work/stderr")"

passed=0
failed=0
pass() {
    echo "tls-quality $1: $2"
    passed=$((passed + 1))
}
fail() {
    echo "tls-quality $1: FAILED: $2"
    failed=$((failed + 1))
}
elapsed() {
    echo "$((SECONDS - $1)) s"
}

# testssl ---------------------------------------------------------------------
start=$SECONDS
json=$work/testssl.json
testssl_status=0
timeout 600 testssl --quiet --warnings batch --color 0 --connect-timeout 10 --openssl-timeout 10 \
    -p -s -f -P -S -h -U -e --add-ca "$work/ca.crt" --ip 127.0.0.1 --nodns none \
    --jsonfile "$json" "https://localhost:$port" >"$work/testssl.out" 2>&1 || testssl_status=$?
cp "$work/testssl.out" "$out/testssl.txt"
if [ "$testssl_status" = 124 ]; then
    fail testssl "timed out after 600 s; its output so far: $out/testssl.txt"
elif [ ! -s "$json" ] || ! jq -e 'any(.[]; .id == "scanTime" and (.finding | test("^[0-9]+$")))' "$json" >/dev/null 2>&1; then
    fail testssl "no complete JSON report (exit status $testssl_status): $(tail -5 "$work/testssl.out")"
else
    cp "$json" "$out/testssl.json"
    severe=$(jq -r '.[]
        | select(.severity == "HIGH" or .severity == "CRITICAL" or .severity == "FATAL")
        | "\(.severity) \(.id): \(.finding)"' "$json")
    counts=$(jq -r 'group_by(.severity) | map("\(length) \(.[0].severity)") | join(", ")' "$json")
    if [ -n "$severe" ]; then
        fail testssl "findings of severity HIGH, CRITICAL or FATAL (a scan problem) ($counts):"
        sed 's/^/    /' <<<"$severe"
    else
        pass testssl "no finding of severity HIGH or CRITICAL ($counts; $(elapsed "$start"))"
    fi
    jq -r '.[] | select(.severity == "FATAL" or .severity == "HIGH" or .severity == "CRITICAL" or .severity == "MEDIUM" or .severity == "LOW"
                        or .severity == "WARN") | "    \(.severity) \(.id): \(.finding)"' "$json"
fi

# sslyze ----------------------------------------------------------------------
start=$SECONDS
sslyze_status=0
timeout 300 "$venv/bin/sslyze" --mozilla_config=intermediate --http_headers --certinfo_ca_file "$work/ca.crt" \
    --json_out "$work/sslyze.json" "localhost:$port{127.0.0.1}" >"$work/sslyze.out" 2>&1 || sslyze_status=$?
cp "$work/sslyze.out" "$out/sslyze.txt"
compliance=$(sed -n "s/^ *localhost:$port: //p" "$work/sslyze.out" | tail -1)
hsts_min=$(jq '.configurations.intermediate.hsts_min_age' "$venv"/lib/python3*/site-packages/sslyze/mozilla_tls_profile/*.json)
result='.server_scan_results[0].scan_result'
supplied_ca_ok=$(jq "[$result.certificate_info.result.certificate_deployments[].path_validation_results[]
                     | select(.trust_store.name == \"Supplied CA file\") | .was_validation_successful] | all and length > 0" \
    "$work/sslyze.json" 2>/dev/null || echo false)
max_age=$(jq "$result.http_headers.result.strict_transport_security_header.max_age // 0" "$work/sslyze.json" 2>/dev/null || echo 0)
if [ "$sslyze_status" != 0 ] || [ "$compliance" != "OK - Compliant." ]; then
    fail sslyze "not compliant with Mozilla's intermediate configuration (exit status $sslyze_status):"
    sed -n '/COMPLIANCE AGAINST/,$p' "$work/sslyze.out" | sed 's/^/    /'
    [ "$sslyze_status" != 124 ] || echo "    timed out after 300 s"
elif [ "$supplied_ca_ok" != true ]; then
    fail sslyze "the chain was not verified against the test CA:"
    sed -n '/^     Trust/,/Verified Chain:/p' "$work/sslyze.out" | sed 's/^/    /'
elif [ "$max_age" -lt "$hsts_min" ]; then
    fail sslyze "HSTS max-age $max_age, the profile asks for at least $hsts_min"
else
    pass sslyze "Mozilla intermediate: $compliance chain verified against the test CA, HSTS max-age $max_age >= $hsts_min ($(elapsed "$start"))"
fi

# chromium --------------------------------------------------------------------
heading=$(sed -n 's:.*<h1>\(.*\)</h1>.*:\1:p' www/index.html | head -1)
[ -n "$heading" ] || fail_setup "www/index.html has no <h1> for the browser check to look for"
chromium_flags=(--headless --disable-gpu --hide-scrollbars --no-first-run --window-size=800,600)
# Chromium's own sandbox refuses to run as root.
[ "$(id -u)" != 0 ] || chromium_flags+=(--no-sandbox)
# browse NAME [CHROMIUM-ARG...]: https://localhost:PORT/ in a fresh profile and
# $HOME whose NSS database trusts the test CA only when NAME is "trusted";
# the DOM in $work/NAME.html.
browse() {
    local name=$1 home=$work/$1-home
    shift
    mkdir -p "$home/.pki/nssdb" "$work/$name-profile"
    HOME=$home certutil -d "sql:$home/.pki/nssdb" -N --empty-password
    if [ "$name" = trusted ]; then
        HOME=$home certutil -d "sql:$home/.pki/nssdb" -A -t "C,," -n "forkhttpd test CA" -i "$work/ca.crt"
    fi
    HOME=$home timeout 120 chromium "${chromium_flags[@]}" --user-data-dir="$work/$name-profile" "$@" \
        --dump-dom "https://localhost:$port/" >"$work/$name.html" 2>"$work/$name.err"
}
start=$SECONDS
log_before=$(stat -c %s "$work/stderr")
rm -f "$out/https-chromium.png"
if ! browse trusted --screenshot="$PWD/$out/https-chromium.png"; then
    fail chromium "chromium failed: $(grep -v -e dbus -e '^$' "$work/trusted.err" | tail -5)"
elif ! grep -qF "$heading" "$work/trusted.html" || grep -q -e 'Privacy error' -e 'ERR_CERT' "$work/trusted.html"; then
    fail chromium "the page is not the default site (a certificate error?): $(head -c 600 "$work/trusted.html")"
elif [ ! -s "$out/https-chromium.png" ] || [ "$(head -c 8 "$out/https-chromium.png" | od -An -tx1 | tr -d ' ')" != 89504e470d0a1a0a ]; then
    fail chromium "no PNG screenshot at $out/https-chromium.png"
else
    # The page's subresources came over the same TLS listener: its access log lines.
    browser_log=$(tail -c +$((log_before + 1)) "$work/stderr")
    missing=""
    for path in / /style.css /img/fork.svg; do
        grep -q "\"GET $path HTTP/1.1\" 200 " <<<"$browser_log" || missing+=" $path"
    done
    if [ -n "$missing" ]; then
        fail chromium "not served with 200 to the browser:$missing; its log lines:"
        sed 's/^/    /' <<<"$browser_log"
    else
        pass chromium "the default site rendered over HTTPS with the CA trusted, no certificate error; screenshot $out/https-chromium.png ($(elapsed "$start"))"
    fi
fi
start=$SECONDS
if ! browse untrusted; then
    fail chromium-untrusted "chromium failed: $(grep -v -e dbus -e '^$' "$work/untrusted.err" | tail -5)"
elif grep -qF "$heading" "$work/untrusted.html" || ! grep -q 'Privacy error' "$work/untrusted.html"; then
    fail chromium-untrusted "without the CA the page is not Chromium's certificate interstitial: $(head -c 600 "$work/untrusted.html")"
else
    pass chromium-untrusted "without the CA, Chromium shows its certificate interstitial instead ($(elapsed "$start"))"
fi

echo "tls-quality: $passed passed, $failed failed"
[ "$failed" = 0 ]
