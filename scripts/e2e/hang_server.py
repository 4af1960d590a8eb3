#!/usr/bin/env python3
"""A "mirror" that accepts TCP connections and never says a word.

usage: hang_server.py HOST PORT LOGFILE

Every accepted connection is appended to LOGFILE ("accept <peer>") and held open
until the peer gives up; nothing is ever sent. This is the cache that is stuck
(for example a registry whose storage hangs): the TCP handshake succeeds, so
only a whole-request timeout catches it.
"""
import socket
import sys
import threading


def hold(conn, log, peer):
    try:
        while conn.recv(65536):
            pass  # read and ignore whatever the client sends
    except OSError:
        pass
    finally:
        conn.close()
        with open(log, "a") as f:
            f.write("closed %s:%d\n" % peer)


def main():
    host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(128)
    with open(log, "a") as f:
        f.write("listening %s:%d\n" % (host, port))
    while True:
        conn, peer = srv.accept()
        with open(log, "a") as f:
            f.write("accept %s:%d\n" % peer)
        threading.Thread(target=hold, args=(conn, log, peer), daemon=True).start()


if __name__ == "__main__":
    main()
