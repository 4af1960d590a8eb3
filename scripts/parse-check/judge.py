#!/usr/bin/python3
"""Judges one case of scripts/parse-check.sh from the recorder's log.

    judge.py --log F --ports F --agent-from N1 [--agent-to N2] --ctr-from N3 [--who NAME]
             --expect URL --ns UPSTREAM [--kind tag|digest] [--resolved-at URL] [--header NAME=VALUE]...

Log lines N1..N2 are the agent's probes (`plan`; N2 defaults to N3), lines
after N3 what containerd sent (through ctr, or through CRI: --who names it).
--expect is the probe URL of the host that must get containerd's first request
(MirrorHost.probeURL: <url>/v2/, or the url as-is with override_path).

1. The agent: its request at the port of --expect for that path (its first
   there when none is) is GET of that URL
   (Host header = its authority; the path equal after RFC 3986 syntax-based
   normalization, since curl removes dot segments) with the headers.
   Host headers are compared in lower case and without the scheme's default
   port (curl leaves out :80, Go's client keeps it).
2. containerd: its first request, at any listener, goes to the same listener
   with the same Host header as the agent's probe: HEAD <the agent's probe path
   without trailing slashes>/library/x/manifests/latest (--kind tag) or, for a
   host without the resolve capability, GET .../library/x/manifests/<digest>
   (--kind digest), query ns=<UPSTREAM> and nothing else, and the headers.
   The paths must be the same bytes, or differ only in the case of %-escapes,
   in %-escapes of unreserved characters (%7E for ~), or in escaping what a URI
   cannot hold raw (%C3%A9 for a raw UTF-8 e-acute, %7B for {); a decoded %2F,
   %3F, %23, %25 or %2E is a difference.
   With --resolved-at URL containerd first resolves the tag there (HEAD
   <its path>/v2/library/x/manifests/latest) and its first request at the
   mirror's listener is the one judged.

Each --header NAME=VALUE is one expected value; all values of a name must arrive
in the order given (names compared case-insensitively).

Prints one line, "ok", "ok (notes)" or what differs, and exits 0 or 1.
"""

import argparse
import json
import os
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recorder import manifest_digest  # noqa: E402  (the digests the recorder serves)

REPO = "library/x"
RESERVED = set(b":/?#[]@!$&'()*+,;=%")
UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def norm_escapes(target):
    """RFC 3986 6.2.2.1 and 6.2.2.2: escapes of unreserved characters decoded, escapes of reserved ones
    kept (in upper case), and every other byte escaped: characters a URI cannot hold raw (non-ASCII,
    {, |, ^, `, <, >, \\), whether sent raw (curl) or escaped (Go), compare equal."""
    raw = target.encode("iso-8859-1")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and re.fullmatch(rb"[0-9A-Fa-f]{2}", raw[i + 1 : i + 3]):
            b = int(raw[i + 1 : i + 3], 16)
            out += bytes([b]) if b in UNRESERVED else b"%%%02X" % b
            i += 3
        else:
            b = raw[i]
            out += bytes([b]) if b in UNRESERVED or b in RESERVED else b"%%%02X" % b
            i += 1
    return bytes(out)


def norm_full(path):
    """norm_escapes, then dot segments removed (RFC 3986 6.2.2.3)."""
    out = []
    for seg in norm_escapes(path).split(b"/"):
        if seg == b".":
            continue
        if seg == b"..":
            if len(out) > 1:
                out.pop()
            continue
        out.append(seg)
    return b"/".join(out) + (b"/" if path.endswith(("/.", "/..")) else b"")


def wire(text):
    """Command-line text (UTF-8) as the recorder logs the bytes on the wire (each byte one character)."""
    return text.encode("utf-8").decode("iso-8859-1")


def disp(text):
    """Wire text for messages: UTF-8 shown as such."""
    return text.encode("iso-8859-1").decode("utf-8", "backslashreplace")


def norm_host(host, scheme):
    """RFC 3986 6.2.2.1 and 6.2.3: host in lower case, the scheme's default port left out."""
    host = (host or "").lower()
    default = ":443" if scheme == "https" else ":80"
    return host[: -len(default)] if host.endswith(default) else host


def split(url):
    """scheme, authority, path of an absolute URL, as written (no decoding)."""
    m = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)", url)
    if not m:
        sys.exit(f"judge: cannot split URL {url!r}")
    return m.group(1).lower(), m.group(2), m.group(3)


def port_of(authority, scheme):
    m = re.search(r":(\d+)$", authority)
    return int(m.group(1)) if m else (443 if scheme == "https" else 80)


class Log:
    def __init__(self, log, ports):
        with open(log, encoding="utf-8") as f:
            self.lines = [json.loads(line) for line in f.read().splitlines()]
        self.by_port, self.scheme = {}, {}
        with open(ports) as f:
            for line in f:
                name, port, kind = line.split()
                self.by_port[int(port)] = name
                self.scheme[name] = kind

    def show(self, r):
        return disp(f'{r["method"]} {self.scheme.get(r["listener"], "http")}://{r["host"]}{r["target"]}')


def header_problem(r, expected):
    want = {}
    for item in expected:
        name, _, value = item.partition("=")
        want.setdefault(name.lower(), (name, []))[1].append(value)
    for lname, (name, values) in want.items():
        got = [v for k, v in r["headers"] if k.lower() == lname]
        if got != values:
            return disp(f"header {name} {got!r} instead of {values!r}")
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--ports", required=True)
    p.add_argument("--agent-from", type=int, required=True)
    p.add_argument("--agent-to", type=int, help="end of the agent's lines (default: --ctr-from)")
    p.add_argument("--ctr-from", type=int, required=True)
    p.add_argument("--who", default="containerd", help="who sent the lines after --ctr-from, for the messages")
    p.add_argument("--expect", required=True)
    p.add_argument("--ns", required=True)
    p.add_argument("--kind", choices=["tag", "digest"], default="tag")
    p.add_argument("--resolved-at")
    p.add_argument("--header", action="append", default=[])
    a = p.parse_args()
    a.expect, a.ns, a.header = wire(a.expect), wire(a.ns), [wire(h) for h in a.header]

    log = Log(a.log, a.ports)
    scheme, authority, path = split(a.expect)
    listener = log.by_port.get(port_of(authority, scheme))
    if listener is None or log.scheme[listener] != scheme:
        sys.exit(f"judge: no {scheme} listener for {a.expect}")
    problems, notes = [], []

    # 1. the agent's probe
    probes = [r for r in log.lines[a.agent_from : a.ctr_from if a.agent_to is None else a.agent_to] if r["listener"] == listener]
    base_path, base_host = path, authority
    if not probes:
        problems.append(f"the agent's probe GET {disp(a.expect)} never arrived")
    else:
        # The agent probes every host of the case at once: with two hosts on one listener their
        # requests arrive in either order, so the probe judged is the one for the expected path.
        r = next((p for p in probes if norm_full(p["target"]) == norm_full(path)), probes[0])
        base_path, base_host = r["target"], r["host"]
        diff = [what for what, bad in [
            ("method", r["method"] != "GET"),
            ("Host header", norm_host(r["host"], scheme) != norm_host(authority, scheme)),
            ("path", norm_full(r["target"]) != norm_full(path)),
        ] if bad]
        hp = header_problem(r, a.header)
        if hp:
            diff.append(hp)
        if diff:
            problems.append(f"expected GET {disp(a.expect)}, the agent sent {log.show(r)} [differs: {', '.join(diff)}]")
        else:
            if r["host"] != authority:
                notes.append(disp(f"the agent sent Host: {r['host']} for {authority}"))
            if r["target"] != path:
                notes.append(disp(f"the agent sent {r['target']} for {path}"))

    # 2. what containerd sent, against what the agent probed
    tail = "latest" if a.kind == "tag" else manifest_digest(a.ns)
    method = "HEAD" if a.kind == "tag" else "GET"
    want_path = base_path.rstrip("/") + f"/{REPO}/manifests/{tail}"
    expected = disp(f"{method} {scheme}://{base_host}{want_path}?ns={a.ns}")
    sent = log.lines[a.ctr_from :]
    r = None
    if not sent:
        problems.append(f"expected {expected}, {a.who} sent nothing to any listener")
    elif a.resolved_at:
        s_scheme, s_auth, s_path = split(a.resolved_at)
        s_listener = log.by_port.get(port_of(s_auth, s_scheme))
        s_target = s_path.rstrip("/") + f"/v2/{REPO}/manifests/latest"
        first = sent[0]
        if first["listener"] != s_listener or first["method"] != "HEAD" or first["target"].partition("?")[0] != s_target:
            problems.append(f"expected the tag resolved first with HEAD {disp(f'{s_scheme}://{s_auth}{s_target}')}, "
                            f"{a.who} sent {log.show(first)} first")
        at = [x for x in sent if x["listener"] == listener]
        if at:
            r = at[0]
        else:
            problems.append(f"expected {expected} after resolving at the server, {a.who} sent nothing there "
                            f"(it sent {'; '.join(log.show(x) for x in sent[:3])})")
    else:
        r = sent[0]
    if r is not None:
        got_path, _, query = r["target"].partition("?")
        diff = [what for what, bad in [
            (f"listener {r['listener']} instead of {listener}", r["listener"] != listener),
            ("method", r["method"] != method),
            ("Host header", norm_host(r["host"], scheme) != norm_host(base_host, scheme)),
            ("path", norm_escapes(got_path) != norm_escapes(want_path)),
            ("query", urllib.parse.parse_qs(query, keep_blank_values=True) != {"ns": [a.ns]}),
        ] if bad]
        hp = header_problem(r, a.header)
        if hp:
            diff.append(hp)
        if diff:
            problems.append(f"expected {expected}, {a.who} sent {log.show(r)} [differs: {', '.join(diff)}]")
        else:
            if r["host"] != base_host:
                notes.append(disp(f"{a.who} sent Host: {r['host']}, the agent {base_host}: the same after RFC 3986 normalization"))
            if got_path != want_path:
                notes.append(disp(f"{a.who} sent {got_path} for {want_path}: the same after RFC 3986 normalization"))

    if problems:
        print("; ".join(problems))
        return 1
    print("ok" + (f" ({'; '.join(notes)})" if notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
