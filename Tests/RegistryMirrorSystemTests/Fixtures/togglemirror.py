#!/usr/bin/env python3
"""A loopback mirror whose behaviour a test switches at run time, on a port that stays the same.

Usage: togglemirror.py MODEFILE

MODEFILE holds one word, re-read every 20 ms: `ok` (answer HTTP 200), `hang` (accept, never answer)
or `down` (close the listening socket: connections are refused). Prints the port first. Exits when
stdin reaches end of file (the test process is gone).
"""
import os
import select
import socket
import sys


def read_mode(path):
    try:
        with open(path) as f:
            return f.read().strip() or "ok"
    except OSError:
        return "ok"


def listen(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def main():
    mode_file = sys.argv[1]
    listener = listen(0)
    port = listener.getsockname()[1]
    print(port, flush=True)
    held = []
    while True:
        mode = read_mode(mode_file)
        if mode == "down" and listener is not None:
            listener.close()
            listener = None
            for c in held:
                c.close()
            held = []
        elif mode != "down" and listener is None:
            listener = listen(port)
        watched = [sys.stdin] + ([listener] if listener is not None else [])
        ready, _, _ = select.select(watched, [], [], 0.02)
        if sys.stdin in ready and not sys.stdin.buffer.read1(1):
            return
        if listener is not None and listener in ready:
            conn, _ = listener.accept()
            if read_mode(mode_file) == "hang":
                held.append(conn)
                continue
            conn.settimeout(2)
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            except OSError:
                pass
            conn.close()


if __name__ == "__main__":
    main()
