#!/usr/bin/python3
"""Recording registry stand-in for scripts/parse-check.sh (loopback only).

    recorder.py --log FILE --ports FILE [--tls-cert PEM --tls-key PEM]
                [--listen NAME=ADDR[@PORT]]... [--listen-tls NAME=ADDR[@PORT]]... [--closed NAME=ADDR]...

--listen NAME=ADDR binds ADDR (a loopback address: 127.0.0.1 or ::1) on a free
port (or on PORT) and serves HTTP/1.1 there; --listen-tls the same over TLS
with the given certificate. --closed NAME=ADDR binds a free port and never
listens on it, so a connection to it is refused at once (a dead mirror whose
port nothing else can take meanwhile). The free ports differ from each other
(and from fixed ones, being ephemeral), across address families too, so a port
names one listener. Once everything is bound the
file --ports gets one line "NAME PORT KIND" each (KIND: http, https or
closed; written atomically).

Each request is appended to --log as one JSON object per line:
  {"listener": NAME, "method": ..., "target": the request target exactly as
   sent (from the raw request line; http.server itself rewrites a leading //),
   "host": Host header, "headers": [[name, value], ...] in the order sent}

Answers: any path containing /manifests/ gets a tiny valid OCI manifest
(whatever tag or digest was asked for; one per ns= value), /blobs/<its config
digest> the config, other blobs 404, and everything else (the API root /v2/, the agent's
override_path probes) 200 "{}" with the registry API version header.
"""

import argparse
import hashlib
import http.server
import ipaddress
import json
import os
import socket
import ssl
import sys
import threading
import urllib.parse

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def manifest(ns):
    """The manifest served for requests carrying ns=<upstream>: one digest per upstream, so a
    daemon that keeps content (CRI) still fetches each case's manifest from its mirror."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG_DIGEST, "size": len(CONFIG)},
            "layers": [],
            "annotations": {"parse-check.ns": ns},
        },
        separators=(",", ":"),
    ).encode()


def manifest_digest(ns):
    return "sha256:" + hashlib.sha256(manifest(ns)).hexdigest()


LOG_LOCK = threading.Lock()


def handler_for(name, log):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "parse-check-recorder"

        def log_message(self, fmt, *args):  # the JSON log is the record
            pass

        def raw_target(self):
            words = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n").split()
            return words[1] if len(words) >= 2 else self.path

        def record(self):
            entry = {
                "listener": name,
                "method": self.command,
                "target": self.raw_target(),
                "host": self.headers.get("Host"),
                "headers": [[k, v] for k, v in self.headers.items()],
            }
            with LOG_LOCK:
                log.write(json.dumps(entry) + "\n")
                log.flush()

        def answer(self, status, body, ctype, extra=()):
            self.send_response(status)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def respond(self):
            self.record()
            path, _, query = self.raw_target().partition("?")
            if "/manifests/" in path:
                ns = urllib.parse.parse_qs(query).get("ns", [""])[0]
                body = manifest(ns)
                self.answer(200, body, MANIFEST_TYPE, [("Docker-Content-Digest", manifest_digest(ns))])
            elif path.endswith("/blobs/" + CONFIG_DIGEST):
                self.answer(200, CONFIG, "application/octet-stream", [("Docker-Content-Digest", CONFIG_DIGEST)])
            elif "/blobs/" in path:
                self.answer(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', "application/json")
            else:
                self.answer(200, b"{}", "application/json")

        do_GET = respond
        do_HEAD = respond

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, family, addr, port, handler, tls):
        self.address_family = family
        self.tls = tls
        super().__init__((addr, port), handler)

    def get_request(self):
        sock, addr = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):  # a client giving up mid-handshake is not news
        pass


def entries(items, kind):
    out = []
    for item in items:
        name, sep, addr = item.partition("=")
        addr, _, fixed = addr.partition("@")
        if not sep or not name or (fixed and not fixed.isdigit()):
            sys.exit(f"recorder: expected NAME=ADDR or NAME=ADDR@PORT, got {item!r}")
        ip = ipaddress.ip_address(addr)
        if not ip.is_loopback:
            sys.exit(f"recorder: {addr} is not a loopback address")
        out.append((kind, name, addr, socket.AF_INET6 if ip.version == 6 else socket.AF_INET, int(fixed or 0)))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--ports", required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--listen", action="append", default=[])
    p.add_argument("--listen-tls", action="append", default=[])
    p.add_argument("--closed", action="append", default=[])
    a = p.parse_args()

    tls = None
    if a.listen_tls:
        if not (a.tls_cert and a.tls_key):
            sys.exit("recorder: --listen-tls needs --tls-cert and --tls-key")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(a.tls_cert, a.tls_key)

    log = open(a.log, "a", encoding="utf-8")
    used, ports, servers, held = set(), [], [], []
    todo = entries(a.listen, "http") + entries(a.listen_tls, "https") + entries(a.closed, "closed")
    for kind, name, addr, family, fixed in todo:
        for _ in range(50):  # a port number already taken by another listener (other family): bind again
            if kind == "closed":
                obj = socket.socket(family, socket.SOCK_STREAM)
                obj.bind((addr, fixed))  # bound, never listening: connections are refused
                port = obj.getsockname()[1]
            else:
                obj = Server(family, addr, fixed, handler_for(name, log), tls if kind == "https" else None)
                port = obj.server_address[1]
            if port not in used or fixed:
                break
            (obj.close if kind == "closed" else obj.server_close)()
        else:
            sys.exit("recorder: no distinct free port")
        used.add(port)
        ports.append((name, port, kind))
        (held if kind == "closed" else servers).append(obj)

    tmp = a.ports + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(f"{name} {port} {kind}\n" for name, port, kind in ports)
    os.rename(tmp, a.ports)

    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
