#!/usr/bin/env python3
"""Loopback stand-ins for registry mirrors, for the benchmarks (stdlib only).

  servers.py late DELAY PORT STAMPFILE   bind after DELAY seconds, write the time.time() of listen() to
                                         STAMPFILE, then answer every request with HTTP 200
  servers.py hang N PORTFILE             N listeners that accept and never answer; ports to PORTFILE
  servers.py ok N PORTFILE               N listeners answering HTTP 200; ports to PORTFILE
  servers.py serve ok|hang ADDR PORT [LOG]  one listener on a loopback ADDR:PORT; with LOG, the
                                         time.time() of every accepted connection is appended to it
  servers.py serve http ADDR PORT [LOG]  one listener on a loopback ADDR:PORT speaking HTTP/1.1 as a
                                         registry does: every request gets 200 `{}`, connections stay
                                         open (keep-alive) until the client closes them, and one that
                                         sends nothing (an idle "sentinel") holds up no other; with LOG,
                                         "c TIME" per accepted connection and "r TIME" per request
Every server binds loopback only and exits on SIGTERM.
"""
import socket, sys, threading, time, selectors


def answer_forever(listeners, respond, log=None):
    sel = selectors.DefaultSelector()
    held = []
    for s in listeners:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "listen")
    while True:
        for key, _ in sel.select():
            if key.data == "listen":
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                if log is not None:
                    log.write(f"{time.time():.6f}\n")
                    log.flush()
                if respond:
                    conn.setblocking(True)
                    conn.settimeout(2)
                    try:
                        conn.recv(65536)
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                     b"Docker-Distribution-Api-Version: registry/2.0\r\n"
                                     b"Connection: close\r\n\r\n{}")
                    except OSError:
                        pass
                    conn.close()
                else:
                    held.append(conn)  # accept and say nothing


RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Docker-Distribution-Api-Version: registry/2.0\r\n")


def keep_alive_forever(listener, log=None):
    """HTTP/1.1 with keep-alive on one selector: no connection waits for another."""
    sel = selectors.DefaultSelector()
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    pending = {}

    def close(conn):
        sel.unregister(conn)
        pending.pop(conn, None)
        conn.close()

    while True:
        for key, _ in sel.select():
            if key.data is None:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                if log is not None:
                    log.write(f"c {time.time():.6f}\n")
                    log.flush()
                conn.setblocking(False)
                pending[conn] = b""
                sel.register(conn, selectors.EVENT_READ, "conn")
                continue
            conn = key.fileobj
            try:
                data = conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                close(conn)
                continue
            if not data:
                close(conn)
                continue
            buf = pending[conn] + data
            closing = False
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                if log is not None:
                    log.write(f"r {time.time():.6f}\n")
                    log.flush()
                closing = b"\r\nconnection: close" in head.lower()
                try:
                    conn.sendall(RESPONSE + (b"Connection: close\r\n" if closing else b"") + b"\r\n{}")
                except OSError:
                    closing = True
                if closing:
                    break
            if closing or len(buf) > 65536:
                close(conn)
            else:
                pending[conn] = buf


def listeners(n, port=0, addr="127.0.0.1"):
    if not addr.startswith("127.") and addr != "::1":
        raise SystemExit(f"refusing to bind {addr}: loopback only")
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(512)
        out.append(s)
    return out


def main():
    mode = sys.argv[1]
    if mode == "late":
        delay, port, stamp = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        time.sleep(delay)
        ls = listeners(1, port)
        with open(stamp, "w") as f:
            f.write(repr(time.time()))
        answer_forever(ls, True)
    elif mode == "serve":
        kind, addr, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
        log = open(sys.argv[5], "a") if len(sys.argv) > 5 else None
        if kind == "http":
            keep_alive_forever(listeners(1, port, addr)[0], log)
        answer_forever(listeners(1, port, addr), kind == "ok", log)
    else:
        n, portfile = int(sys.argv[2]), sys.argv[3]
        ls = listeners(n)
        with open(portfile + ".tmp", "w") as f:
            f.write("\n".join(str(s.getsockname()[1]) for s in ls))
        import os
        os.rename(portfile + ".tmp", portfile)
        answer_forever(ls, mode == "ok")


if __name__ == "__main__":
    main()
