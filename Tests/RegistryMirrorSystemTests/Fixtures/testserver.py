#!/usr/bin/env python3
"""Loopback test server for the RegistryMirrorSystemTests (stdlib only).

Usage: testserver.py [--log FILE] MODE [ARGS...]

  status N        answer every GET with HTTP status N
  hang            accept connections and never answer
  delay SECONDS   answer 200 after SECONDS
  tls CERT KEY    HTTPS, answer 200

Binds port 0 on 127.0.0.1 and prints the chosen port as the first line of stdout. With --log, the
path of every request is appended to FILE, one per line. Exits when stdin reaches end of file (the
test process that started it is gone) or on SIGTERM/SIGKILL.
"""

import http.server
import os
import socket
import ssl
import sys
import threading
import time

LOG_LOCK = threading.Lock()
LOG_FILE = None


def record(path):
    if LOG_FILE is None:
        return
    with LOG_LOCK:
        with open(LOG_FILE, "a", encoding="utf-8") as f:
            f.write(path + "\n")
            f.flush()


def make_handler(status, delay):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            record(self.path)
            if delay:
                time.sleep(delay)
            body = b"{}"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            pass

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # clients that give up (timeouts, TLS failures) are expected


def serve_hang(sock):
    held = []
    while True:
        conn, _ = sock.accept()
        held.append(conn)  # keep it open, read nothing, answer nothing


def watch_stdin():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:
        pass
    os._exit(0)


def main(argv):
    global LOG_FILE
    if len(argv) >= 2 and argv[0] == "--log":
        LOG_FILE = argv[1]
        argv = argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    mode = argv[0]

    threading.Thread(target=watch_stdin, daemon=True).start()

    if mode == "hang":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        print(sock.getsockname()[1], flush=True)
        serve_hang(sock)
        return 0

    status, delay, context = 200, 0.0, None
    if mode == "status":
        status = int(argv[1])
    elif mode == "delay":
        delay = float(argv[1])
    elif mode == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(argv[1], argv[2])
    else:
        print("unknown mode " + mode, file=sys.stderr)
        return 2

    server = Server(("127.0.0.1", 0), make_handler(status, delay))
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
