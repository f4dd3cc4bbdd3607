#!/usr/bin/env python3
"""Fixed-count keep-alive client for benches/cost.sh.

Opens ONE connection to 127.0.0.1:PORT and sends N sequential `GET PATH`
requests on it, each only after the previous response was read in full, so
every request reaches the server as one read and the server does the same
work for each: the per-request counts taken around it do not drift.

Exits 1 (saying why) on anything but `200` with a body of exactly
Content-Length bytes (and, with --length, of that many bytes), or when the
server closes early; every wait is bounded by --timeout.

    kaclient.py PORT PATH N [--length BYTES] [--timeout SECONDS]
"""

import argparse
import socket
import sys


def read_response(sock, buf):
    """Reads one response from sock; returns (status, body_length, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response head")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError(f"response without Content-Length: {lines[0]}")
    while len(buf) < length:
        chunk = sock.recv(max(65536, length - len(buf)))
        if not chunk:
            raise ConnectionError(f"body cut short at {len(buf)} of {length} bytes")
        buf += chunk
    return status, length, buf[length:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("path")
    ap.add_argument("n", type=int)
    ap.add_argument("--length", type=int, help="expected body length")
    ap.add_argument("--timeout", type=float, default=60.0, help="bound on every wait (s)")
    args = ap.parse_args()
    request = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout) as sock:
            buf = b""
            for i in range(args.n):
                sock.sendall(request)
                status, length, buf = read_response(sock, buf)
                if status != 200 or (args.length is not None and length != args.length):
                    raise ValueError(f"request {i + 1}: status {status}, body {length} bytes")
            if buf:
                raise ValueError(f"{len(buf)} unexpected bytes after the last response")
    except (OSError, ValueError) as e:
        print(f"kaclient: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
