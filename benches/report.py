#!/usr/bin/env python3
"""Prints benches/run.sh's table (Markdown) from its CSV.

    report.py CSV

The CSV has one figure a line: run,scenario,server,figure,value. A value in
the table is the median over the runs; a ratio is the median of the ratios
taken within each run (both windows seconds apart), with their min..max when
there were several runs: only ratios from one run mean anything on a shared
machine. A measurement that failed to run (result not "ok") is left out.
"""

import csv
import statistics
import sys
from collections import defaultdict

# (label, scenario, figure, format, the figure's ratio against whom)
ROWS = [
    ("a: keep-alive, 4 KiB, 50 connections (req/s)", "a", "req_per_s", "rate", "nginx"),
    ("a: the BASELINE forkhttpd binary (req/s)", "a", "req_per_s", "rate", "base"),
    ("a: p99 latency (ms)", "a", "p99_ms", "ms", "nginx"),
    ("a: with forkhttpd's access log on, to a file (req/s)", "a", "req_per_s", "rate", "log"),
    ("a: peak summed PSS of the server's processes (MiB)", "a", "peak_pss_mib", "mib", "nginx"),
    ("b: new connection per request, 4 KiB, 50 concurrent (conn/s)", "b", "req_per_s", "rate", "nginx"),
    ("b: p99 latency (ms, connect not included)", "b", "p99_ms", "ms", "nginx"),
    ("c: keep-alive, 1 MiB, 10 connections (MiB/s)", "c", "mib_per_s", "int", "nginx"),
    ("c: p99 latency (ms)", "c", "p99_ms", "ms", "nginx"),
    ("d: keep-alive, 578 B page, 500 connections (req/s)", "d", "req_per_s", "rate", "nginx"),
    ("d: p99 latency (ms)", "d", "p99_ms", "ms", "nginx"),
    ("d: peak summed PSS of the server's processes (MiB)", "d", "peak_pss_mib", "mib", "nginx"),
    ("e: one 100 MiB download, curl (MiB/s)", "e", "mib_per_s", "int", "nginx"),
    ("ta: HTTPS keep-alive, 4 KiB, 50 connections (req/s)", "ta", "req_per_s", "rate", "nginx"),
    ("ta: p99 latency (ms)", "ta", "p99_ms", "ms", "nginx"),
    ("ta: peak summed PSS of the server's processes (MiB)", "ta", "peak_pss_mib", "mib", "nginx"),
    ("tb: HTTPS, new connection and full handshake per request, 4 KiB, 50 concurrent (handshakes/s)",
     "tb", "req_per_s", "rate", "nginx"),
    ("tb: p99 latency (ms, connect and handshake included)", "tb", "p99_ms", "ms", "nginx"),
    ("tr: as tb, each handshake resuming a session by its ticket (handshakes/s)", "tr", "req_per_s", "rate", "nginx"),
    ("tr: handshakes resumed (%)", "tr", "resumed_pct", "pct", "nginx"),
    ("tr: p99 latency (ms, connect and handshake included)", "tr", "p99_ms", "ms", "nginx"),
    ("tc: HTTPS keep-alive, 1 MiB, 10 connections (MiB/s)", "tc", "mib_per_s", "int", "nginx"),
    ("tc: p99 latency (ms)", "tc", "p99_ms", "ms", "nginx"),
    ("td: HTTPS keep-alive, 578 B page, 500 connections, their handshakes included (req/s)",
     "td", "req_per_s", "rate", "nginx"),
    ("td: p99 latency (ms)", "td", "p99_ms", "ms", "nginx"),
    ("td: peak summed PSS of the server's processes (MiB)", "td", "peak_pss_mib", "mib", "nginx"),
    ("parent RSS after start-up (MiB; nginx: its master)", "start", "parent_rss_mib", "mib", "nginx"),
    ("parent RSS after start-up with a certificate, HTTPS only (MiB)", "start-tls", "parent_rss_mib", "mib", "nginx"),
]
COST_ROWS = [
    ("per keep-alive request: system calls (strace)", "syscalls_per_request", "f2"),
    ("per connection: the child's system calls besides its requests", "syscalls_per_connection", "int"),
    ("per keep-alive request: instructions (callgrind, user space)", "instructions_per_request", "int"),
    ("per keep-alive request: heap allocations (dhat)", "allocations_per_request", "f2"),
]


def fmt(value, kind):
    if value is None:
        return ""
    if kind == "rate":
        return f"{value / 1000:.1f}k" if value >= 10000 else f"{value:.0f}"
    if kind == "ms":
        return f"{value:.2f}"
    if kind == "mib":
        return f"{value:.1f}"
    if kind == "f2":
        return f"{value:.2f}"
    if kind == "pct":
        return f"{value:.1f}"
    return f"{value:.0f}"


def main():
    # data[scenario][server][figure] = {run: value}
    data = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    # a measurement that failed to run has no figures worth a median
    failed = {(r["run"], r["scenario"], r["server"]) for r in rows if r["figure"] == "result" and r["value"] != "ok"}
    for row in rows:
        if row["figure"] != "result" and (row["run"], row["scenario"], row["server"]) not in failed:
            data[row["scenario"]][row["server"]][row["figure"]][row["run"]] = float(row["value"])

    def median(scenario, server, figure):
        runs = data[scenario][server][figure]
        return statistics.median(runs.values()) if runs else None

    def ratio(scenario, mine, theirs, figure):
        a, b = data[scenario][mine][figure], data[scenario][theirs][figure]
        per_run = [a[r] / b[r] for r in a if r in b and b[r] > 0]
        if not per_run:
            return ""
        text = f"{statistics.median(per_run):.2f}x"
        if len(per_run) > 1:
            text += f" ({min(per_run):.2f}..{max(per_run):.2f})"
        return text

    print("| figure | forkhttpd | nginx | forkhttpd/nginx, same run |")
    print("|---|---:|---:|---|")
    for label, scenario, figure, kind, against in ROWS:
        if scenario not in data:
            continue
        if against == "base":
            if "forkhttpd-base" not in data[scenario]:
                continue
            base = fmt(median(scenario, "forkhttpd-base", figure), kind)
            r = f"this build / baseline: {ratio(scenario, 'forkhttpd', 'forkhttpd-base', figure)}"
            if "forkref" in data[scenario]:
                r += f"; baseline / minimal C fork server: {ratio(scenario, 'forkhttpd-base', 'forkref', figure)}"
            print(f"| {label} | {base} | | {r} |")
            continue
        if against == "log":
            if "forkhttpd-log" not in data[scenario]:
                continue
            r = ratio(scenario, "forkhttpd-log", "forkhttpd", figure)
            print(f"| {label} | {fmt(median(scenario, 'forkhttpd-log', figure), kind)} | | "
                  f"{r} of log off |")
            continue
        mine, theirs = median(scenario, "forkhttpd", figure), median(scenario, "nginx", figure)
        if mine is None and theirs is None:
            continue
        # a share is compared by reading it, not by its ratio
        r = ratio(scenario, "forkhttpd", "nginx", figure) if kind != "pct" else ""
        if scenario == "b" and figure == "req_per_s" and "busybox" in data[scenario]:
            bb = fmt(median(scenario, "busybox", figure), kind)
            r += f"; {ratio(scenario, 'forkhttpd', 'busybox', figure)} busybox httpd ({bb})"
        if scenario in ("a", "b") and figure == "req_per_s" and "forkref" in data[scenario]:
            fr = fmt(median(scenario, "forkref", figure), kind)
            r += f"; {ratio(scenario, 'forkhttpd', 'forkref', figure)} minimal C fork server ({fr})"
        if figure == "peak_pss_mib":
            procs = median(scenario, "forkhttpd", "peak_procs")
            if procs:
                label += f"; forkhttpd: {procs:.0f} processes"
        print(f"| {label} | {fmt(mine, kind)} | {fmt(theirs, kind)} | {r} |")
    for label, figure, kind in COST_ROWS:
        value = median("a", "forkhttpd", figure) if "cost" in data["a"]["forkhttpd"][figure] else None
        if value is not None:
            print(f"| {label} | {fmt(value, kind)} | | |")


if __name__ == "__main__":
    main()
