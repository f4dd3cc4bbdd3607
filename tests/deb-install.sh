#!/usr/bin/env bash
# The Debian package, installed the way an administrator installs it: builds
# it with the install guide's command (docs/install.md: pkg/build-deb, on the
# build machine), runs lintian on it, then boots Debian 12 with systemd as PID 1 in a container
# (tests/lib/nspawn.sh), installs it there with `apt-get install ./FILE.deb`
# (offline: its dependencies are in the container already) and checks what
# the guide promises: the files, the conffiles, the user, the config
# check, the units enabled and serving on port 80 at once, log rotation,
# reload; then that `apt-get remove` stops the units and keeps the config,
# logs and user, and that `apt-get purge` removes what the package created,
# sparing files the administrator added to the document root and the
# system account (Debian's policy). Then the same again over a manual
# install's account and log directory (the guide's own lines), which a
# purge must leave as they were.
#
# Runs as root (CI does). Skips, saying why, only where the container itself
# cannot boot (not root, no nspawn, systemd does not come up).
# Ends with one line "deb-install: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

test_name=deb-install
# shellcheck source=tests/lib/nspawn.sh
. "$top/tests/lib/nspawn.sh"
# shellcheck source=tests/lib/readme.sh
. "$top/tests/lib/readme.sh"

# --- build and lint, on the build machine -----------------------------------
[ "$(id -u)" = 0 ] || skip "needs root (systemd-nspawn, mounts)"
if ! command -v cargo-deb >/dev/null; then
    echo "$test_name: installing cargo-deb (cargo install cargo-deb)"
    cargo install --quiet --locked cargo-deb
fi
if ! command -v lintian >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian >/dev/null
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
deb=target/debian/forkhttpd_${version}-1_$(dpkg --print-architecture).deb
rm -f "$deb"
build_log=$(mktemp)
built=0
pkg/build-deb >"$build_log" 2>&1 && [ -f "$deb" ] && built=1

nspawn_boot

build() {
    cat "$build_log"
    rm -f "$build_log"
    [ "$built" = 1 ] || { echo "no $deb"; return 1; }
}
check "pkg/build-deb builds $deb" build
[ "$built" = 1 ] || { echo "$test_name: $passed passed, $((failed + 1)) failed"; exit 1; }

# Errors and warnings fail; the overrides shipped in the package explain
# the tags left. (As root lintian says it would rather not be; it reads the
# package only.)
lint() { lintian --fail-on error,warning --info "$deb"; }
check "lintian reports no error or warning" lint

# The snippet in /etc/logrotate.d does nothing without logrotate.
recommends() {
    local field
    field=$(dpkg-deb -f "$deb" Recommends)
    echo "Recommends: $field"
    grep -qw logrotate <<<"$field"
}
check "the package recommends logrotate" recommends

# --- installed in the container -------------------------------------------
conf=/etc/forkhttpd/forkhttpd.toml
log=/var/log/forkhttpd/access.log

install_deb() {
    # Copied in from the read-only view of the checkout; /tmp, so that
    # apt's unprivileged _apt user can read it.
    # The container has no network: this works because every dependency is
    # installed already.
    ct cp "/src/$deb" /tmp/
    ct sh -c "cd /tmp && DEBIAN_FRONTEND=noninteractive apt-get install -y ./$(basename "$deb")"
}
check "apt-get install ./$(basename "$deb") (offline)" install_deb
# Nothing below means anything without the package.
ct dpkg-query -W forkhttpd >/dev/null 2>&1 || { echo "$test_name: $passed passed, $failed failed"; exit 1; }

files_in_place() {
    local f rc=0
    for f in /usr/sbin/forkhttpd /etc/forkhttpd/forkhttpd.toml /etc/logrotate.d/forkhttpd \
        /usr/lib/systemd/system/forkhttpd.service /usr/lib/systemd/system/forkhttpd.socket \
        /usr/share/man/man8/forkhttpd.8.gz /usr/share/man/man5/forkhttpd.toml.5.gz \
        /usr/share/doc/forkhttpd/copyright /usr/share/doc/forkhttpd/examples/forkhttpd.toml \
        /usr/lib/systemd/system/forkhttpd-https.socket /usr/share/doc/forkhttpd/examples/https.conf \
        /var/www/forkhttpd/index.html /var/www/forkhttpd/img/fork.svg; do
        ct test -f "$f" || { echo "missing: $f"; rc=1; }
    done
    ct test -x /usr/sbin/forkhttpd || { echo "not executable: /usr/sbin/forkhttpd"; rc=1; }
    # The pages are the repository's, compressed.
    ct sh -c 'zcat /usr/share/man/man8/forkhttpd.8.gz | cmp - /src/man/forkhttpd.8' || rc=1
    ct sh -c 'zcat /usr/share/man/man5/forkhttpd.toml.5.gz | cmp - /src/man/forkhttpd.toml.5' || rc=1
    # The units differ from systemd/ only in the binary's path.
    ct sh -c "sed 's|/usr/local/bin/forkhttpd|/usr/sbin/forkhttpd|g' /src/systemd/forkhttpd.service \
        | cmp - /usr/lib/systemd/system/forkhttpd.service" || rc=1
    ct cmp /src/systemd/forkhttpd-https.socket /usr/lib/systemd/system/forkhttpd-https.socket || rc=1
    ct sh -c "sed 's|/usr/local/bin/forkhttpd|/usr/sbin/forkhttpd|g' /src/systemd/https.conf \
        | cmp - /usr/share/doc/forkhttpd/examples/https.conf" || rc=1
    ct grep -q '^ExecStart=/usr/sbin/forkhttpd --foreground --config /etc/forkhttpd/forkhttpd.toml$' \
        /usr/lib/systemd/system/forkhttpd.service || { echo "ExecStart is not /usr/sbin/forkhttpd"; rc=1; }
    return "$rc"
}
check "files in place: binary, config, units, logrotate, manual pages, default site" files_in_place

conffiles() {
    local listed
    listed=$(ct dpkg-query -W -f='${Conffiles}' forkhttpd)
    echo "$listed"
    grep -q "^ /etc/forkhttpd/forkhttpd.toml [0-9a-f]\{32\}$" <<<"$listed" \
        && grep -q "^ /etc/logrotate.d/forkhttpd [0-9a-f]\{32\}$" <<<"$listed"
}
check "the config and the logrotate snippet are registered conffiles" conffiles

config_paths() {
    ct grep -x 'root = "/var/www/forkhttpd"' "$conf" \
        && ct grep -x 'access_log = "/var/log/forkhttpd/access.log"' "$conf"
}
check "the config points at /var/www/forkhttpd and /var/log/forkhttpd/access.log" config_paths

user_made() {
    local entry uid
    entry=$(ct getent passwd forkhttpd) || { echo "no user forkhttpd"; return 1; }
    echo "$entry"
    uid=$(cut -d: -f3 <<<"$entry")
    [ "$uid" -lt 1000 ] && [ "$(cut -d: -f6 <<<"$entry")" = /nonexistent ] \
        && [ "$(cut -d: -f7 <<<"$entry")" = /usr/sbin/nologin ] \
        && ct getent group forkhttpd && ct test ! -e /nonexistent
}
check "a system user forkhttpd (home /nonexistent, no shell) and its group" user_made

check_config() {
    # As the unit's ExecStartPre= runs it: as forkhttpd, whose log directory
    # a check run as root refuses (it trusts only root's and its own files).
    ct runuser -u forkhttpd -- forkhttpd --check-config --no-bind --config "$conf" \
        | grep -x 'configuration OK' || return 1
    # The issue's form too: the config's own listen address (127.0.0.1:8080,
    # unused under the socket unit) is free here, so the bind is tried.
    ct runuser -u forkhttpd -- forkhttpd --check-config --config "$conf" | grep -x 'configuration OK'
}
check "forkhttpd --check-config [--no-bind] --config $conf passes" check_config

enabled_and_serving() {
    local u
    for u in forkhttpd.socket forkhttpd.service; do
        echo "$u: $(ct systemctl is-enabled "$u") $(ct systemctl is-active "$u")"
        [ "$(ct systemctl is-enabled "$u")" = enabled ] && [ "$(ct systemctl is-active "$u")" = active ] || return 1
    done
    expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/ || return 1
    expect_fetch "200 text/css; charset=utf-8" "http://[::1]/style.css" || return 1
    ct sh -c 'curl -sS --max-time 5 http://127.0.0.1/ | cmp - /var/www/forkhttpd/index.html'
}
check "installing enabled and started the units: the default site answers on port 80" enabled_and_serving

# HTTPS is off until a certificate is configured: its socket unit is
# installed, neither enabled nor listening.
https_off() {
    local rc=0
    echo "forkhttpd-https.socket: $(ct systemctl is-enabled forkhttpd-https.socket || true) $(ct systemctl is-active forkhttpd-https.socket || true)"
    [ "$(ct systemctl is-enabled forkhttpd-https.socket || true)" = disabled ] || rc=1
    [ "$(ct systemctl is-active forkhttpd-https.socket || true)" = inactive ] || rc=1
    refused https://127.0.0.1/ || rc=1
    return "$rc"
}
# refused URL: curl finds nothing listening (exit 7).
refused() {
    local curl_rc=0
    ct curl -sS -k --max-time 5 -o /dev/null "$1" || curl_rc=$?
    echo "curl $1: exit $curl_rc (7: refused)"
    [ "$curl_rc" = 7 ]
}
check "forkhttpd-https.socket is installed, not enabled, port 443 refused" https_off

# The guide's HTTPS steps for the package (docs/install.md), as written,
# with a certificate from a throw-away authority where certbot puts one.
# shellcheck source=tests/lib/testcert.sh
. "$top/tests/lib/testcert.sh"
deb_https_steps=$(readme_commands deb-https-steps 4)
verify_units() { ct systemd-analyze verify --man=no forkhttpd.service forkhttpd.socket forkhttpd-https.socket; }
https_on() {
    [ -n "$deb_https_steps" ] || { echo "no deb-https-steps found in docs/install.md"; return 1; }
    cert_in_container || return 1
    ct bash -euxo pipefail -c "$deb_https_steps" || return 1
    # The units with the drop-in, as systemd reads them; nothing to say.
    local said
    said=$(verify_units 2>&1) || { echo "$said"; return 1; }
    [ -z "$said" ] || { echo "systemd-analyze verify: $said"; return 1; }
    ct systemctl cat forkhttpd.service | grep "^LoadCredential=" || return 1
    [ "$(ct stat -c '%a %U %G' /etc/forkhttpd/tls/privkey.pem)" = "600 root root" ] || return 1
    expect_tls "200 text/html; charset=utf-8" 127.0.0.1 || return 1
    expect_tls "200 text/css; charset=utf-8" "[::1]" style.css || return 1
    expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/ || return 1
    # The drop-in's own reload check reads the copies (see https.conf).
    ct systemctl reload forkhttpd.service || return 1
    expect_tls "200 text/html; charset=utf-8" 127.0.0.1
}
check "the guide's HTTPS steps for the package: systemd-analyze verify is silent; curl --cacert gets the site; reload" https_on

logged() { ct grep -q '"GET / HTTP/1.1" 200 ' "$log" 2>/dev/null; }
log_mode() { [ "$(ct stat -c '%a %U %G' "$log")" = "640 forkhttpd forkhttpd" ] || { ct ls -l "$log"; return 1; }; }
access_logged() { within 5 logged && log_mode; }
check "the access log records the request, 0640 forkhttpd:forkhttpd" access_logged

rotation() {
    ct logrotate -f /etc/logrotate.d/forkhttpd || return 1
    ct test -s "$log.1" || { echo "no rotated $log.1"; return 1; }
    fetch http://127.0.0.1/after-rotation >/dev/null
    within 5 ct grep -q '"GET /after-rotation ' "$log"
}
check "the package's logrotate snippet rotates and the server reopens the log" rotation

reload() {
    local before
    before=$(ct systemctl show -p MainPID --value forkhttpd.service)
    ct systemctl reload forkhttpd.service || return 1
    [ "$(ct systemctl show -p MainPID --value forkhttpd.service)" = "$before" ] \
        && expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/
}
check "systemctl reload forkhttpd works with the package's unit" reload

# --- remove, then purge ---------------------------------------------------
removed() {
    ct env DEBIAN_FRONTEND=noninteractive apt-get remove -y forkhttpd || return 1
    local u rc=0 curl_rc=0
    for u in forkhttpd.socket forkhttpd-https.socket forkhttpd.service; do
        echo "$u after remove: $(ct systemctl is-active "$u" || true)"
        [ "$(ct systemctl is-active "$u" || true)" = inactive ] || rc=1
    done
    ct pgrep -u forkhttpd && { echo "processes of forkhttpd left"; rc=1; }
    ct curl -sS --max-time 5 -o /dev/null http://127.0.0.1/ || curl_rc=$?
    echo "curl after remove: exit $curl_rc (7: refused)"
    [ "$curl_rc" = 7 ] || rc=1
    refused https://127.0.0.1/ || rc=1
    ct test ! -e /usr/sbin/forkhttpd || { echo "binary left"; rc=1; }
    # Kept until purge: the config, the logs, the user, the site.
    ct test -f "$conf" || { echo "config removed by remove"; rc=1; }
    ct test -f "$log" || { echo "log removed by remove"; rc=1; }
    ct getent passwd forkhttpd >/dev/null || { echo "user removed by remove"; rc=1; }
    return "$rc"
}
check "apt-get remove stops the units, HTTPS's too (ports 80 and 443 refused); config, logs and user stay" removed

purged() {
    # The administrator's own page, and a default page they edited, survive;
    # the unchanged default files go.
    ct sh -c 'echo mine > /var/www/forkhttpd/mine.html && echo edited >> /var/www/forkhttpd/index.html'
    ct env DEBIAN_FRONTEND=noninteractive apt-get purge -y forkhttpd || return 1
    local rc=0 p
    for p in /etc/forkhttpd/forkhttpd.toml /var/log/forkhttpd /var/lib/forkhttpd /var/www/forkhttpd/style.css /var/www/forkhttpd/img; do
        ct test ! -e "$p" || { echo "left after purge: $p"; rc=1; }
    done
    # The administrator's HTTPS files stay: the key and the drop-in are
    # theirs, not the package's. The socket's enablement goes.
    for p in /etc/forkhttpd/tls/privkey.pem /etc/systemd/system/forkhttpd.service.d/https.conf; do
        ct test -f "$p" || { echo "purge removed the administrator's $p"; rc=1; }
    done
    ct test ! -e /etc/systemd/system/sockets.target.wants/forkhttpd-https.socket || { echo "forkhttpd-https.socket still enabled"; rc=1; }
    ct ls -A /etc/forkhttpd
    for p in /var/www/forkhttpd/mine.html /var/www/forkhttpd/index.html; do
        ct test -f "$p" || { echo "purge removed the administrator's $p"; rc=1; }
    done
    # Debian's policy: a system account stays (files it owns may remain,
    # and a new account given its uid would own them).
    ct getent passwd forkhttpd || { echo "purge removed the user forkhttpd"; rc=1; }
    ct getent group forkhttpd || { echo "purge removed the group forkhttpd"; rc=1; }
    not_installed || rc=1
    return "$rc"
}
not_installed() {
    local status
    status=$(ct dpkg-query -W -f='${Status}' forkhttpd 2>/dev/null || true)
    echo "dpkg status after purge: ${status:-none}"
    case "$status" in "" | *not-installed) ;; *) return 1 ;; esac
}
check "apt-get purge removes the config, the logs and unchanged default site it made; the user and HTTPS key stay" purged
# The administrator removes their HTTPS files in turn, so that what follows
# starts from a machine without the package.
ct rm -rf /etc/forkhttpd /etc/systemd/system/forkhttpd.service.d
ct systemctl daemon-reload

# --- over a manual install's account and log directory --------------------
# The guide's lines that make them (install-steps 2 and 4), as written.
manual_lines=$(readme_commands install-steps | grep -E '^(useradd .* forkhttpd$|install -d .* /var/log/forkhttpd$)' || true)
kept_log=/var/log/forkhttpd/access.log.1
by_hand() {
    [ "$(grep -c . <<<"$manual_lines")" = 2 ] || { echo "docs/install.md: want the useradd and log directory lines, found: '$manual_lines'"; return 1; }
    # The account the first purge left goes first: these are new, by hand.
    ! ct getent passwd forkhttpd >/dev/null || ct userdel forkhttpd || return 1
    ! ct getent group forkhttpd >/dev/null || ct groupdel forkhttpd || return 1
    ct bash -euxo pipefail -c "$manual_lines" || return 1
    ct sh -c "echo 'a log written before the package came' > $kept_log && chown forkhttpd:forkhttpd $kept_log"
    install_deb || return 1
    expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/ || return 1
    within 5 logged
}
check "installed over the guide's hand-made account and log directory; serving" by_hand

purged_after_hand() {
    local before after rc=0
    before=$(ct getent passwd forkhttpd)
    ct env DEBIAN_FRONTEND=noninteractive apt-get purge -y forkhttpd || return 1
    after=$(ct getent passwd forkhttpd) || { echo "purge removed the user forkhttpd"; rc=1; }
    echo "user before purge: $before; after: $after"
    [ "$after" = "$before" ] || rc=1
    ct getent group forkhttpd || { echo "purge removed the group forkhttpd"; rc=1; }
    ct test -d /var/log/forkhttpd || { echo "purge removed /var/log/forkhttpd"; return 1; }
    ct grep -x 'a log written before the package came' "$kept_log" || { echo "purge removed $kept_log"; rc=1; }
    ct test -s "$log" || { echo "purge removed $log"; rc=1; }
    ct test ! -e /etc/forkhttpd || { echo "left after purge: /etc/forkhttpd"; rc=1; }
    not_installed || rc=1
    return "$rc"
}
check "apt-get purge leaves the hand-made account and log directory, logs and all" purged_after_hand

echo "$test_name: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
