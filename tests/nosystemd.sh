#!/usr/bin/env bash
# The install guide's "Without systemd" section (docs/install.md), followed literally where neither
# systemd nor syslog runs: starts a Debian 12 container without systemd
# (not installed; PID 1 is nspawn's stub init) and without a syslog daemon
# (tests/lib/nspawn.sh, nspawn_init=none), runs the section's numbered steps
# (the indented lines between its "nosystemd-steps" marks: `cargo` lines
# here, on the build machine, every other line inside the container, from a
# read-only view of this checkout), then its operation lines (between the
# "nosystemd-operations" marks, each picked by its comment), and checks what
# an administrator relies on: the server detaches, serves IPv4 and IPv6
# with children as forkhttpd, logs to its files (root:adm 0640), keeps its
# pid file (and refuses a second server), rotates its logs with the
# installed logrotate snippet, reloads, reopens its logs, and stops.
#
# Runs as root (CI does). Skips, saying why, only where the container itself
# cannot start (not root, no nspawn).
# Ends with one line "nosystemd: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

test_name=nosystemd
nspawn_init=none
# shellcheck source=tests/lib/nspawn.sh
. "$top/tests/lib/nspawn.sh"
# shellcheck source=tests/lib/readme.sh
. "$top/tests/lib/readme.sh"
nspawn_boot

conf=/etc/forkhttpd/forkhttpd.toml
log=/var/log/forkhttpd/access.log
errlog=/var/log/forkhttpd/error.log
pidfile=/run/forkhttpd.pid
# What the server and logrotate alike must create (the guide's steps 3 and 6).
log_owner="640 root adm"

# --- the machine the section is for ---------------------------------------
bare() {
    local init
    init=$(ct cat /proc/1/comm)
    echo "PID 1: $init"
    [ "$init" != systemd ] || return 1
    ct sh -c 'command -v systemctl' && { echo "systemctl is installed"; return 1; }
    # nspawn leaves /dev/log a link to the journal's socket, which nothing
    # serves here: a daemon's messages cannot go to syslog.
    ct test ! -S /dev/log || { echo "/dev/log is a socket"; return 1; }
    ct sh -c 'pgrep -l "syslog|journal"' && { echo "a syslog daemon runs"; return 1; }
    return 0
}
check "the container: no systemd, no syslog" bare

# --- the guide's steps, as written ----------------------------------------
steps=$(readme_commands nosystemd-steps)
host_steps=$(grep -E '^cargo ' <<<"$steps" || true)
ct_steps=$(grep -vE '^cargo ' <<<"$steps" || true)
install_readme() {
    [ -n "$host_steps" ] && [ -n "$ct_steps" ] || { echo "no nosystemd-steps found in docs/install.md"; return 1; }
    bash -euxo pipefail -c "$host_steps"
    ct bash -euxo pipefail -c "cd /src && $ct_steps"
}
check "docs/install.md \"Without systemd\" steps, line by line, without systemd or syslog" install_readme

# The operation line whose comment starts with $1 (exactly one).
operations=$(readme_commands nosystemd-operations 4)
operation() {
    local lines
    lines=$(grep -E "# $1" <<<"$operations" || true)
    [ "$(grep -c . <<<"$lines")" = 1 ] || { echo "docs/install.md: want one operation line commented '# $1', found: '$lines'" >&2; return 1; }
    printf '%s\n' "$lines"
}
run_operation() {
    local line
    line=$(operation "$1") || return 1
    echo "+ $line"
    ct bash -euo pipefail -c "$line"
}

# The parent: the pid in the pid file.
parent() { ct cat "$pidfile"; }

detached() {
    local pid fields
    pid=$(parent) || { echo "no $pidfile"; return 1; }
    fields=$(ct ps -o ppid=,tty=,user=,comm= -p "$pid") || { echo "pid $pid (from $pidfile) does not run"; return 1; }
    echo "pid $pid: ppid, tty, user, command: $fields"
    # Orphaned to PID 1 (the command that started it has returned), no
    # terminal, root (it binds port 80 and opens the logs).
    [ "$(awk '{ print $1, $2, $3, $4 }' <<<"$fields")" = "1 ? root forkhttpd" ]
}
check "the server detached: its parent is PID 1, no terminal, runs as root" detached

pid_file_works() {
    local pid listener out rc=0
    pid=$(parent) || return 1
    # The process listening on port 80 is the one the pid file names.
    listener=$(ct ss -Htlnp 'sport = :80')
    echo "$listener"
    grep -q "pid=$pid," <<<"$listener" || { echo "port 80 is not held by pid $pid"; return 1; }
    # A second server with the same pid_file refuses to start, naming the running one.
    out=$(ct forkhttpd --daemon --config "$conf" 2>&1) || rc=$?
    echo "second start: exit $rc: $out"
    [ "$rc" -ne 0 ] && grep -q "locked by a running forkhttpd (pid $pid)" <<<"$out"
}
check "the pid file names the server, which holds it: a second start is refused, naming it" pid_file_works

serves() {
    expect_fetch "200 text/html; charset=utf-8" http://127.0.0.1/ || return 1
    expect_fetch "200 text/css; charset=utf-8" "http://[::1]/style.css"
}
check "curl over IPv4 and IPv6 gets the site on port 80" serves

children_as_forkhttpd() {
    # An idle client holds a child mid-request; it ends by itself (bounded
    # read until the server closes), as nothing outside may kill it.
    ct bash -c 'exec 3<>/dev/tcp/127.0.0.1/80; printf "GET / HTTP/1.1\r\n" >&3; timeout 20 cat <&3 >/dev/null' </dev/null &
    local client=$! rc=0
    within 5 ct pgrep -u forkhttpd -x forkhttpd || rc=1
    ct ps -o pid=,ppid=,user=,comm= -C forkhttpd
    wait "$client" 2>/dev/null || true
    return "$rc"
}
check "children serve as forkhttpd" children_as_forkhttpd

logged() { ct grep -q "\"GET $1 HTTP/1.1\" " "$log"; }
owner() { ct stat -c '%a %U %G' "$1"; }
logs_in_files() {
    local rc=0 f
    within 5 logged /style.css || { echo "no access-log line in $log"; rc=1; }
    ct grep -q "started: pid $(parent), .*; children run as forkhttpd " "$errlog" \
        || { echo "no start line in $errlog:"; ct cat "$errlog"; rc=1; }
    for f in "$log" "$errlog"; do
        echo "$f: $(owner "$f")"
        [ "$(owner "$f")" = "$log_owner" ] || rc=1
    done
    return "$rc"
}
check "the access log and daemon messages go to their files, $log_owner" logs_in_files

rotation() {
    local rc=0 f
    ct logrotate -f /etc/logrotate.d/forkhttpd || return 1
    for f in "$log" "$errlog"; do
        ct test -s "$f.1" || { echo "no rotated $f.1"; rc=1; }
        echo "new $f: $(owner "$f")"
        [ "$(owner "$f")" = "$log_owner" ] || rc=1
    done
    # The postrotate's SIGUSR1 made the server reopen: new lines go to the new files.
    fetch http://127.0.0.1/after-rotation >/dev/null
    within 5 logged /after-rotation || { echo "the new $log gets no lines"; rc=1; }
    within 5 ct grep -q 'reopened log files' "$errlog" || { echo "the new $errlog gets no lines"; rc=1; }
    return "$rc"
}
check "logrotate -f with the installed snippet rotates; the server reopens both logs" rotation

server_header() { ct curl -sS --max-time 5 -o /dev/null -D - http://127.0.0.1/ | tr -d '\r' | sed -n 's/^Server: //Ip'; }
server_header_is() { [ "$(server_header)" = "$1" ]; }
reload() {
    local before want
    before=$(parent) || return 1
    ct sed -i 's/^server_version = false/server_version = true/' "$conf"
    run_operation reload || return 1
    want="forkhttpd/$(ct forkhttpd --version | awk '{ print $2 }')"
    within 5 server_header_is "$want" || { echo "new config not in effect: Server: $(server_header)"; return 1; }
    echo "main pid before $before, after $(parent)"
    [ "$(parent)" = "$before" ]
}
check "the guide's reload line applies a changed config; same pid" reload

reopen() {
    # The server creates the log file itself, as logrotate's `create` does.
    ct mv "$log" "$log.moved"
    run_operation reopen || return 1
    within 5 ct test -e "$log" || { echo "$log not reopened"; return 1; }
    echo "$log created by the server: $(owner "$log")"
    [ "$(owner "$log")" = "$log_owner" ] || return 1
    fetch http://127.0.0.1/after-reopen >/dev/null
    within 5 logged /after-reopen
}
check "the guide's reopen line: the server recreates the log, $log_owner, and writes to it" reopen

stop() {
    local pid rc=0 curl_rc=0
    pid=$(parent) || return 1
    run_operation "graceful stop" || return 1
    # shutdown_grace (10 s) and a margin.
    within 15 bash -c "! nsenter -t $leader -a kill -0 $pid 2>/dev/null" || { echo "pid $pid still runs"; rc=1; }
    ct test ! -e "$pidfile" || { echo "$pidfile left"; rc=1; }
    ct pgrep -l -x forkhttpd && { echo "forkhttpd processes left"; rc=1; }
    ct curl -sS --max-time 5 -o /dev/null http://127.0.0.1/ || curl_rc=$?
    echo "curl after the stop: exit $curl_rc (7: refused)"
    [ "$curl_rc" = 7 ] || rc=1
    ct grep -q 'SIGTERM: stopping' "$errlog" && ct grep -qx '.*stopped' "$errlog" \
        || { echo "no stop lines in $errlog:"; ct tail -n 5 "$errlog"; rc=1; }
    return "$rc"
}
check "the guide's stop line ends the server; the pid file is removed; port 80 refused" stop

echo "$test_name: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
