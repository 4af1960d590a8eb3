#!/usr/bin/env python3
"""A logging reverse proxy in front of a registry: the "mirror" for the
override_path and header variants, whose evidence a registry's own access log
cannot show (it logs no custom request headers, and serves no path prefix).

usage: logproxy.py LISTEN_HOST PORT BACKEND_URL LOGFILE [PREFIX]

Every request is forwarded to BACKEND_URL (plain http) and logged to LOGFILE as
one JSON object per line: method, path, query, status and all request headers (a list of
[name, value] pairs, so repeated headers stay visible).
With PREFIX (e.g. /cache/docker), a request path PREFIX/rest is sent to the
backend as /v2/rest: the layout of a mirror that lives below a path, which
containerd only reaches with override_path = true (without it, containerd
would ask for PREFIX/v2/..., which this proxy answers with 404).
"""
import http.client
import http.server
import json
import sys
import threading
import urllib.parse

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
       "te", "trailers", "transfer-encoding", "upgrade", "host"}
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet stderr; the JSON log is the record
        pass

    def backend_path(self, path):
        prefix = self.server.prefix
        if prefix:
            if path == prefix or path == prefix + "/":
                return "/v2/"
            if path.startswith(prefix + "/"):
                return "/v2" + path[len(prefix):]
            return None
        return path

    def forward(self):
        u = urllib.parse.urlsplit(self.path)
        target = self.backend_path(u.path)
        status = 404
        try:
            if target is None:
                body = b'{"errors":[{"code":"NOT_FOUND","message":"outside the proxy prefix"}]}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return
            b = urllib.parse.urlsplit(self.server.backend)
            conn = http.client.HTTPConnection(b.hostname, b.port or 80, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            conn.request(self.command, target + ("?" + u.query if u.query else ""), headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            length = resp.getheader("Content-Length")
            self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()
        finally:
            rec = {"method": self.command, "path": u.path, "query": u.query, "status": status,
                   "backend_path": target, "headers": [[k, v] for k, v in self.headers.items()]}
            with LOCK, open(self.server.logfile, "a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")

    do_GET = forward
    do_HEAD = forward


def main():
    host, port, backend, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    srv = http.server.ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    srv.backend, srv.logfile = backend, log
    srv.prefix = sys.argv[5].rstrip("/") if len(sys.argv) > 5 else ""
    srv.serve_forever()


if __name__ == "__main__":
    main()
