#!/usr/bin/env bash
# The shipped units under a real systemd: boots Debian 12 with systemd as
# PID 1 in a container (systemd-nspawn), installs forkhttpd there by running
# the install guide's own steps (docs/install.md: the indented lines between its
# "install-steps" marks: `cargo` lines here, on the build machine, every
# other line inside the container, from a read-only view of this checkout),
# then checks what an administrator relies on: start, IPv4 and IPv6,
# socket activation, reload (good and bad), readiness, log rotation,
# the watchdog, journal priorities, the start limit, stop, and the
# security score the guide states.
#
# Runs as root (CI does). The container (tests/lib/nspawn.sh) has only its
# own loopback; every request goes to 127.0.0.1 or ::1 inside it. Skips,
# saying why, only where the container itself cannot boot (not root, no
# nspawn, systemd does not come up).
# Ends with one line "systemd-boot: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

test_name=systemd-boot
# shellcheck source=tests/lib/nspawn.sh
. "$top/tests/lib/nspawn.sh"
nspawn_boot

# --- checks ---------------------------------------------------------------
conf=/etc/forkhttpd/forkhttpd.toml
log=/var/log/forkhttpd/access.log
header() { ct curl -sS --max-time 5 -o /dev/null -D - "$1" | tr -d '\r' | sed -n "s/^$2: //Ip"; }
main_pid() { ct systemctl show -p MainPID --value forkhttpd.service; }
journal_err() { ct journalctl --sync; ct journalctl -u forkhttpd.service -p err --no-pager -o cat; }
fresh_start() {
    ct systemctl reset-failed forkhttpd.service forkhttpd.socket >/dev/null 2>&1 || true
    ct systemctl start forkhttpd.socket forkhttpd.service
}

# The guide's steps, as written.
# shellcheck source=tests/lib/readme.sh
. "$top/tests/lib/readme.sh"
readme_steps=$(readme_commands install-steps)
host_steps=$(grep -E '^cargo ' <<<"$readme_steps" || true)
ct_steps=$(grep -vE '^cargo ' <<<"$readme_steps" || true)
install_readme() {
    [ -n "$host_steps" ] && [ -n "$ct_steps" ] || { echo "no install steps found in docs/install.md"; return 1; }
    bash -euxo pipefail -c "$host_steps"
    ct bash -euxo pipefail -c "cd /src && $ct_steps"
}
check "docs/install.md install steps, line by line, under systemd as PID 1" install_readme

check "curl over IPv4 gets the site" expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/
check "curl over IPv6 gets the site" expect_fetch "200 text/css; charset=utf-8" "http://[::1]/style.css"
check "the service user has the home /nonexistent" \
    bash -c "[ \"\$(nsenter -t $leader -a getent passwd forkhttpd | cut -d: -f6)\" = /nonexistent ]"
log_lines_from() { ct grep -c "^$1 " "$log"; }
check "IPv4 clients are logged in IPv4 form" within 5 log_lines_from 127.0.0.1
check "IPv6 clients are logged as such" within 5 log_lines_from ::1
log_mode() { [ "$(ct stat -c '%a %U %G' "$log")" = "640 forkhttpd forkhttpd" ] || { ct ls -l "$log"; return 1; }; }
check "the access log is created 0640 forkhttpd:forkhttpd" log_mode

score_of() { ct systemd-analyze security forkhttpd.service --no-pager | sed -n 's/.*Overall exposure level for forkhttpd.service: \([0-9.]*\).*/\1/p'; }
security_score() {
    local live stated
    live=$(score_of)
    stated=$(sed -n 's/.*rates it \([0-9.]*\) ("SAFE").*/\1/p' "$top/docs/install.md" | head -n 1)
    echo "live score: $live, docs/install.md states: $stated"
    [ -n "$live" ] && [ "$live" = "$stated" ] && awk -v s="$live" 'BEGIN { exit !(s <= 1.0) }'
}
check "systemd-analyze security: the guide's score, at most 1.0" security_score

socket_activation() {
    ct systemctl stop forkhttpd.service
    [ "$(ct systemctl is-active forkhttpd.socket)" = active ] || { echo "socket not active"; return 1; }
    [ "$(ct systemctl is-active forkhttpd.service)" = inactive ] || { echo "service still active"; return 1; }
    expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/ || return 1
    [ "$(ct systemctl is-active forkhttpd.service)" = active ] || { echo "not started by the request"; return 1; }
}
check "socket activation: stopped service, socket stays, next request starts it" socket_activation

server_header_is() { [ "$(header http://127.0.0.1/ Server)" = "$1" ]; }
reload_good() {
    local before after
    before=$(main_pid)
    server_header_is forkhttpd || { echo "unexpected Server before the reload"; return 1; }
    ct sed -i 's/^server_version = false/server_version = true/' "$conf"
    ct systemctl reload forkhttpd.service || { echo "reload failed"; return 1; }
    within 5 server_header_is "forkhttpd/$(ct forkhttpd --version | awk '{print $2}')" \
        || { echo "new config not in effect: Server: $(header http://127.0.0.1/ Server)"; return 1; }
    after=$(main_pid)
    echo "main pid before $before, after $after"
    [ "$before" = "$after" ]
}
check "a good config reloads: same main pid, new behaviour" reload_good

reload_bad() {
    local before rc=0
    before=$(main_pid)
    ct cp "$conf" /root/good.toml
    ct sh -c "echo 'no_such_key_at_reload = 1' >> $conf"
    ct systemctl reload forkhttpd.service || rc=$?
    ct cp /root/good.toml "$conf"
    echo "systemctl reload with a broken config returned $rc"
    [ "$rc" -ne 0 ] || return 1
    sleep 1
    server_header_is "forkhttpd/$(ct forkhttpd --version | awk '{print $2}')" || { echo "old config lost"; return 1; }
    [ "$(main_pid)" = "$before" ]
}
check "a broken config makes systemctl reload fail; the old config keeps serving" reload_bad

notify_ready() {
    [ "$(ct systemctl show -p Type --value forkhttpd.service)" = notify ] || return 1
    # Started without its check (ExecStartPre) on a config that fails while
    # loading, the server exits before READY=1: systemctl start must report
    # the failure, which it would not for a unit that is "started" at exec.
    ct mkdir -p /run/systemd/system/forkhttpd.service.d
    ct sh -c "printf '[Service]\nExecStartPre=\nExecStart=\nExecStart=/usr/local/bin/forkhttpd --foreground --config /root/bad.toml\nRestart=no\n' \
        > /run/systemd/system/forkhttpd.service.d/test-notify.conf; echo 'no_such_key_in_notify_test = 1' > /root/bad.toml"
    ct systemctl daemon-reload
    ct systemctl stop forkhttpd.service
    local rc=0
    ct systemctl start forkhttpd.service || rc=$?
    ct rm /run/systemd/system/forkhttpd.service.d/test-notify.conf
    ct systemctl daemon-reload
    echo "start of a server that dies before READY=1 returned $rc"
    [ "$rc" -ne 0 ] || return 1
    # The server sends STATUS= in the datagram that carries READY=1, so
    # systemd has it the moment `systemctl start` returns for a notify
    # unit; a unit "started" at exec would return before the server said
    # anything.
    fresh_start
    local status
    status=$(ct systemctl show -p StatusText --value forkhttpd.service)
    echo "status text as systemctl start returned: '$status'"
    [ "$status" = serving ] && expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/
}
check "Type=notify: systemd reports the service started only once it is ready" notify_ready

rotation() {
    fetch http://127.0.0.1/ >/dev/null
    ct logrotate -f /etc/logrotate.d/forkhttpd || return 1
    ct test -s "$log.1" || { echo "no rotated $log.1"; return 1; }
    fetch http://127.0.0.1/rotated >/dev/null
    within 5 ct grep -q '"GET /rotated ' "$log" || { echo "the new log gets no lines"; return 1; }
    log_mode
}
check "logrotate rotates; the new log (0640) receives lines" rotation

usr1() {
    ct mv "$log" "$log.moved"
    ct systemctl kill -s USR1 --kill-whom=main forkhttpd.service || return 1
    within 5 ct test -e "$log" || { echo "SIGUSR1 did not reopen $log"; return 1; }
    fetch http://127.0.0.1/after-usr1 >/dev/null
    within 5 ct grep -q '"GET /after-usr1 ' "$log"
}
check "systemctl kill -s USR1 --kill-whom=main reopens the log" usr1

restarts() { ct systemctl show -p NRestarts --value forkhttpd.service; }
watchdog_short() {
    local before count t0
    ct systemctl restart forkhttpd.service
    before=$(main_pid)
    count=$(restarts)
    # Pinging, the server lives through three timeouts.
    sleep 6
    echo "after 6 s: main pid $(main_pid) (was $before), $(restarts) restarts (were $count)"
    [ "$(main_pid)" = "$before" ] && [ "$(restarts)" = "$count" ] || return 1
    # Stopped, it pings no more: systemd kills it and starts another.
    t0=$SECONDS
    ct systemctl kill -s STOP --kill-whom=main forkhttpd.service
    within 30 bash -c "p=\$(nsenter -t $leader -a systemctl show -p MainPID --value forkhttpd.service); \
        [ \"\$p\" != 0 ] && [ \"\$p\" != $before ]" || { echo "not restarted"; return 1; }
    echo "stopped main pid $before replaced by $(main_pid) after $((SECONDS - t0)) s; $(restarts) restarts"
    [ "$(restarts)" -gt "$count" ] || return 1
    ct journalctl --sync
    ct journalctl -u forkhttpd.service --no-pager -o cat | grep -i "watchdog timeout" || return 1
    expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/
}
watchdog() {
    local shipped rc=0
    shipped=$(ct systemctl show -p WatchdogUSec --value forkhttpd.service)
    echo "WatchdogUSec of the shipped unit: $shipped"
    [ "$shipped" = 30s ] || return 1
    # The same with a 2 s timeout (a drop-in), so that the check is quick.
    ct sh -c "mkdir -p /run/systemd/system/forkhttpd.service.d && printf '[Service]\nWatchdogSec=2s\n' \
        > /run/systemd/system/forkhttpd.service.d/test-watchdog.conf"
    ct systemctl daemon-reload
    watchdog_short || rc=$?
    ct rm /run/systemd/system/forkhttpd.service.d/test-watchdog.conf
    ct systemctl daemon-reload
    ct systemctl reset-failed forkhttpd.service >/dev/null 2>&1 || true
    ct systemctl restart forkhttpd.service
    [ "$rc" -eq 0 ] && [ "$(ct systemctl show -p WatchdogUSec --value forkhttpd.service)" = 30s ]
}
check "WatchdogSec=: a pinging server lives on, a stopped one is killed and restarted" watchdog

seccomp_message() {
    # What RestrictSUIDSGID=yes did to the shipped unit: the check in
    # ExecStartPre must fail and name the cause at priority err.
    ct sh -c "mkdir -p /run/systemd/system/forkhttpd.service.d && printf '[Service]\nRestrictSUIDSGID=yes\nRestart=no\n' \
        > /run/systemd/system/forkhttpd.service.d/test-seccomp.conf"
    ct systemctl daemon-reload
    ct systemctl reset-failed forkhttpd.service >/dev/null 2>&1 || true
    local rc=0 before after
    before=$(ct systemctl show -p ExecMainStartTimestampMonotonic --value forkhttpd.service)
    ct systemctl restart forkhttpd.service || rc=$?
    after=$(ct systemctl show -p ExecMainStartTimestampMonotonic --value forkhttpd.service)
    ct rm /run/systemd/system/forkhttpd.service.d/test-seccomp.conf
    ct systemctl daemon-reload
    # The main process must not have run at all: the check stopped it.
    echo "restart under RestrictSUIDSGID=yes returned $rc; main process started at $before us before, $after us after"
    [ "$rc" -ne 0 ] && [ "$after" -le "$before" ] && journal_err | grep -i seccomp
}
check "openat2 refused by seccomp: ExecStartPre's check fails, naming the cause; the server never runs" seccomp_message

broken_start() {
    # Each check's bad key is its own, so no earlier line can answer for this one.
    fresh_start
    ct cp "$conf" /root/good.toml
    ct sh -c "echo 'no_such_key_at_start = 1' >> $conf"
    ct systemctl stop forkhttpd.service
    ct systemctl reset-failed forkhttpd.service
    local rc=0
    ct systemctl start forkhttpd.service || rc=$?
    echo "start with a broken config returned $rc"
    [ "$rc" -ne 0 ] && journal_err | grep no_such_key_at_start
}
check "journalctl -u forkhttpd -p err shows a start-time config error" broken_start

start_limit() {
    # The broken config from the check above is still on disk, and its
    # failed start was the first since reset-failed. Restart= tries every
    # 2 s and a bit, so systemd's default limit (5 starts in 10 s) is never
    # reached; the unit's own (5 in 60 s) refuses the sixth start, the
    # fifth automatic restart, about 10 s from now.
    echo "waiting for the start limit (Restart= every 2 s)"
    within 40 bash -c "[ \"\$(nsenter -t $leader -a systemctl is-active forkhttpd.socket)\" = failed ]" \
        || { ct systemctl status --no-pager forkhttpd.socket forkhttpd.service; return 1; }
    local restarts t0=$SECONDS rc=0
    restarts=$(ct systemctl show -p NRestarts --value forkhttpd.service)
    ct curl -sS --max-time 10 -o /dev/null http://127.0.0.1/ || rc=$?
    echo "socket failed after $restarts automatic restarts; curl then: exit $rc after $((SECONDS - t0)) s (7: refused)"
    [ "$restarts" -le 5 ] && [ "$rc" -eq 7 ]
}
check "a broken config trips the start limit; the socket then refuses connections" start_limit
ct cp /root/good.toml "$conf"

recover() {
    fresh_start && expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/
}
check "after reset-failed, the fixed config serves again" recover

# --- HTTPS under the shipped units ---------------------------------------
# The guide's HTTPS steps (docs/install.md), as written, with a certificate
# for example.org from a throw-away authority, put where certbot puts
# one; then the key's way in: root-only on disk, a copy through
# LoadCredential= for the service, none for the children.
# shellcheck source=tests/lib/testcert.sh
. "$top/tests/lib/testcert.sh"
cred=/run/credentials/forkhttpd.service
https_steps=$(readme_commands https-steps 4)
install_https() {
    [ -n "$https_steps" ] || { echo "no https steps found in docs/install.md"; return 1; }
    cert_in_container || return 1
    # All but the guide's curl line, whose name the container cannot
    # resolve and whose authority it does not trust: the checks below give
    # curl both (--resolve, --cacert).
    ct bash -euxo pipefail -c "cd /src && $(grep -v '^curl ' <<<"$https_steps")"
}
check "docs/install.md HTTPS steps, line by line: forkhttpd-https.socket and LoadCredential=" install_https

https_serves() {
    local u
    for u in forkhttpd-https.socket forkhttpd.socket forkhttpd.service; do
        echo "$u: $(ct systemctl is-enabled "$u") $(ct systemctl is-active "$u")"
        [ "$(ct systemctl is-enabled "$u")" = enabled ] && [ "$(ct systemctl is-active "$u")" = active ] || return 1
    done
    echo "LISTEN_FDNAMES of the server: $(ct sh -c "tr '\0' '\n' </proc/$(main_pid)/environ | grep ^LISTEN_FDNAMES=")"
    expect_tls "200 text/html; charset=utf-8" 127.0.0.1 || return 1
    expect_tls "200 text/css; charset=utf-8" "[::1]" style.css || return 1
    ct sh -c "curl -sS --max-time 5 --cacert /root/test-ca.pem --resolve $site:443:127.0.0.1 https://$site/ \
        | cmp - /var/www/forkhttpd/index.html" || return 1
    expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/
}
check "curl --cacert gets the site over HTTPS (IPv4 and IPv6) from port 443; port 80 still plain" https_serves

https_activation() {
    ct systemctl stop forkhttpd.service
    [ "$(ct systemctl is-active forkhttpd-https.socket)" = active ] || { echo "https socket not active"; return 1; }
    [ "$(ct systemctl is-active forkhttpd.service)" = inactive ] || { echo "service still active"; return 1; }
    expect_tls "200 text/html; charset=utf-8" 127.0.0.1 || return 1
    [ "$(ct systemctl is-active forkhttpd.service)" = active ] || { echo "not started by the request"; return 1; }
}
check "socket activation over HTTPS: stopped service, the https socket starts it" https_activation

# The drop-in's reload check reads the credentials where ExecReload= can
# (https.conf): a good config reloads, a broken one fails the reload.
reload_https() {
    local before rc=0
    before=$(main_pid)
    ct systemctl reload forkhttpd.service || { echo "reload failed"; return 1; }
    [ "$(main_pid)" = "$before" ] && expect_tls "200 text/html; charset=utf-8" 127.0.0.1 || return 1
    ct cp "$conf" /root/good.toml
    ct sh -c "echo 'no_such_key_at_https_reload = 1' >> $conf"
    ct systemctl reload forkhttpd.service || rc=$?
    ct cp /root/good.toml "$conf"
    echo "systemctl reload with a broken config returned $rc"
    [ "$rc" -ne 0 ] && expect_tls "200 text/html; charset=utf-8" 127.0.0.1
}
check "with HTTPS on, systemctl reload checks the config (a broken one fails) and keeps serving" reload_https

mode_of() { ct stat -c '%a %U %G' "$1"; }
key_root_only() {
    local key=/etc/forkhttpd/tls/privkey.pem rc=0
    echo "on disk: $key $(mode_of "$key"), its directory $(mode_of /etc/forkhttpd/tls)"
    [ "$(mode_of "$key")" = "600 root root" ] && [ "$(mode_of /etc/forkhttpd/tls)" = "700 root root" ] || rc=1
    ct systemctl cat forkhttpd.service | grep "^LoadCredential=" || rc=1
    ct grep -x "tls_key = \"$cred/tls.key\"" "$conf" || rc=1
    # What systemd made of it (ramfs, or tmpfs, root's or the service's).
    echo "the copy: $(ct stat -f -c %T "$cred") $cred $(mode_of "$cred"), tls.key $(mode_of "$cred/tls.key")"
    ct cmp "$key" "$cred/tls.key" || rc=1
    # The service account itself cannot read the file on disk.
    if ct setpriv --reuid forkhttpd --regid forkhttpd --clear-groups -- cat "$key" >/dev/null 2>&1; then
        echo "the account forkhttpd can read $key"
        rc=1
    fi
    return "$rc"
}
check "the key on disk is root:root 0600; the service reads it through LoadCredential= (tls_key names the copy)" key_root_only

# A child in the middle of a slow HTTPS response: curl reads 2 MiB at
# 200 KiB/s, so it lasts about 10 s.
ct sh -c 'head -c 2097152 /dev/zero > /var/www/forkhttpd/slow.bin'
hold_tls_child() {
    ct curl -sS --max-time 30 --limit-rate 200k --cacert /root/test-ca.pem --resolve "$site:443:127.0.0.1" \
        -o /dev/null "https://$site/slow.bin" </dev/null &
    client=$!
}
# A serving child: named forkhttpd, unlike the spawner (forkhttpd-spawn)
# and the key processes (forkhttpd-keys), its siblings.
tls_child() { ct pgrep -x forkhttpd -P "$(main_pid)" | head -1; }
status_of() { ct sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status"; }
sandboxed_tls_child() {
    local main c rc=0
    hold_tls_child
    within 5 bash -c "[ -n \"\$(nsenter -t $leader -a pgrep -x forkhttpd -P $(main_pid))\" ]" || { echo "no child"; wait "$client"; return 1; }
    main=$(main_pid)
    c=$(tls_child)
    echo "parent $main: Uid $(status_of "$main" Uid); child $c: Uid $(status_of "$c" Uid), Seccomp $(status_of "$c" Seccomp), NoNewPrivs $(status_of "$c" NoNewPrivs)"
    [ "$(status_of "$c" Seccomp)" = 2 ] && [ "$(status_of "$c" NoNewPrivs)" = 1 ] || rc=1
    # The same account as the parent: nothing but the sandbox and the
    # dumpable flag keeps the child from the parent and the key.
    [ "$(status_of "$c" Uid)" = "$(status_of "$main" Uid)" ] || rc=1
    wait "$client" || rc=1
    return "$rc"
}
check "a child serving HTTPS runs sandboxed (Seccomp: 2, NoNewPrivs: 1) with the parent's uid" sandboxed_tls_child

# Landlock, which keeps a child from every file outside the document roots
# (the key's copy in the credentials directory, owned by the very account
# the child runs as, included), leaves no mark in /proc; the server says at
# start which protections the kernel does not give, and here it says none.
landlock_whole() {
    local said
    ct journalctl --sync
    said=$(ct journalctl -u forkhttpd.service --no-pager -o cat | grep 'sandbox: this kernel lacks' || true)
    echo "credentials copy: $(mode_of "$cred") $cred, $(mode_of "$cred/tls.key") tls.key"
    [ -z "$said" ] || { echo "$said"; return 1; }
}
check "under the shipped unit the children's sandbox is whole: no protection logged missing (Landlock)" landlock_whole

# What a process of the service's account can do, outside any sandbox:
# more than a sandboxed child can, so what it cannot do, no child can.
as_service() { ct setpriv --reuid forkhttpd --regid forkhttpd --clear-groups -- "$@"; }
same_account() {
    local main c rc=0 what
    hold_tls_child
    within 5 bash -c "[ -n \"\$(nsenter -t $leader -a pgrep -x forkhttpd -P $(main_pid))\" ]" || { echo "no child"; wait "$client"; return 1; }
    main=$(main_pid)
    c=$(tls_child)
    # A dumpable process of the account, the opener's own child (so that
    # even Yama's ptrace_scope 1 allows it): the kernel lets the account
    # open the memory of its processes, unless they are non-dumpable.
    as_service sh -c 'sleep 5 & exec 3<"/proc/$!/mem"' || { echo "control: the account cannot open a dumpable process's memory"; rc=1; }
    for what in "/proc/$main/mem" "/proc/$c/mem" /etc/forkhttpd/tls/privkey.pem; do
        if as_service sh -c 'exec 3<"$1"' sh "$what" 2>/dev/null; then
            echo "the account forkhttpd opened $what"
            rc=1
        else
            echo "refused: $what"
        fi
    done
    wait "$client" || rc=1
    return "$rc"
}
check "as the service's uid: the parent's and the child's memory and the key on disk are refused" same_account

# A child that has answered a request and waits for the next one has
# entered its sandbox: no_new_privs, and a seccomp filter of its own on top
# of those the unit gives every process of the service (so more filters
# than its parent), although the unit runs it with the parent's uid.
seccomp_filters() { ct sed -n 's/^Seccomp_filters:[[:space:]]*//p' "/proc/$1/status"; }
child_sandboxed() {
    local main c s
    main=$(main_pid)
    c=$(ct pgrep -x forkhttpd -P "$main" | head -1)
    [ -n "$c" ] && s=$(ct grep -E '^(Seccomp|NoNewPrivs):' "/proc/$c/status") || return 1
    grep -Eq '^Seccomp:\s+2$' <<<"$s" && grep -Eq '^NoNewPrivs:\s+1$' <<<"$s" &&
        [ "$(seccomp_filters "$c")" -gt "$(seccomp_filters "$main")" ]
}
sandboxed_child() {
    ct bash -c 'exec 3<>/dev/tcp/127.0.0.1/80; printf "GET / HTTP/1.1\r\nHost: x\r\n\r\n" >&3; timeout 30 cat <&3 >/dev/null' </dev/null &
    local client=$! rc=0
    within 5 child_sandboxed || rc=1
    wait "$client" 2>/dev/null
    return "$rc"
}
check "a serving child runs sandboxed: Seccomp: 2, a filter more than its parent, NoNewPrivs: 1" sandboxed_child

stop_all() {
    # An idle client holds a child mid-request while the stop comes.
    # It reads until the server closes the connection (bounded), so it
    # ends by itself: a client killed from outside could leave nsenter
    # stopped with a zombie inside, and the container's PID 1 waiting for
    # it forever at power-off.
    ct bash -c 'exec 3<>/dev/tcp/127.0.0.1/80; printf "GET / HTTP/1.1\r\n" >&3; timeout 30 cat <&3 >/dev/null' </dev/null &
    local client=$!
    within 5 bash -c "[ \$(nsenter -t $leader -a pgrep -c -x -u forkhttpd forkhttpd) -ge 2 ]" || { echo "no child"; return 1; }
    local t0=$SECONDS
    ct systemctl stop forkhttpd.socket forkhttpd-https.socket forkhttpd.service
    local took=$((SECONDS - t0)) result left
    wait "$client" 2>/dev/null
    result=$(ct systemctl show -p Result --value forkhttpd.service)
    left=$(ct pgrep -c -u forkhttpd || true)
    echo "stop took ${took} s, result $result, processes left: $left"
    [ "$took" -lt 20 ] && [ "$result" = success ] && [ "$left" = 0 ]
}
check "systemctl stop ends everything within the grace period" stop_all

echo "systemd-boot: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
