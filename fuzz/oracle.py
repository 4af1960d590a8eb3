#!/usr/bin/env python3
"""Checks the hosts.toml renderer against Python's tomllib, an independent TOML parser.

    fuzz/oracle.py --bin .build-fuzz-oracle/debug/render-oracle PATH...

Each PATH is a config file or a folder of them (the seed corpus, the fuzzer's working corpus). The
render-oracle executable loads every file with ConfigLoader and prints, as one JSON line per file,
what the loader accepted and the hosts.toml text HostsFile.render wrote for each registry. For every
accepted file this script checks:

  1. each rendered file parses with tomllib and holds exactly: the marker line first, `server` (absent
     when empty), the `[host."<url>"]` tables in config order, and per host exactly its capabilities,
     dial_timeout, ca, client, skip_verify, override_path and headers (names, values, order), nothing else;
  2. the rendered dial_timeout means the configured duration (parsed here by Go's rules, exactly);
  3. what the loader read agrees with what tomllib reads in the config file itself (upstream, server,
     hosts, capabilities, ca, client, flags, headers, dial_timeout), after the loader's documented
     normalisations (defaults, a string for a one-element array, duplicate capabilities dropped,
     headers sorted by name, dial_timeout "0s" left out);
  4. the in-process TOMLKit round trip (the same check as the fuzz target, here without sanitizers)
     found nothing.

A config TOMLKit accepts and tomllib refuses is reported as a note (a difference between the two
parsers, not a rendering bug). Exit status 1 when any check failed, 2 on a usage error.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from fractions import Fraction

MARKER = "# managed by configure-containerd-registries; manual changes are overwritten"
HOST_KEYS = ["capabilities", "dial_timeout", "ca", "client", "skip_verify", "override_path", "header"]
UNIT_NS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
           "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]+)")
BATCH = 200


def go_duration_ns(text):
    """The exact length of a Go duration ("1m30s", ".5ms", "0") in nanoseconds, as a Fraction."""
    s = text[1:] if text.startswith("+") else text
    if s == "0":
        return Fraction(0)
    if not s:
        raise ValueError(f"empty duration {text!r}")
    total = Fraction(0)
    pos = 0
    while pos < len(s):
        m = DURATION_PART.match(s, pos)
        if not m or m.group(2) not in UNIT_NS:
            raise ValueError(f"not a Go duration: {text!r}")
        total += Fraction(m.group(1)) * UNIT_NS[m.group(2)]
        pos = m.end()
    return total


def close_ns(exact, ns):
    """True when the loader's integer nanoseconds are `exact`, up to its floating-point rounding."""
    return abs(exact - ns) <= max(1, abs(ns) * Fraction(1, 10**13))


def as_list(value):
    """containerd (and the loader) take a string where an array of strings is expected."""
    return [value] if isinstance(value, str) else value


class Checker:
    def __init__(self):
        self.failures = []
        self.notes = []
        self.sample = None  # an accepted registry, for the self-test
        self.counts = {"files": 0, "accepted": 0, "rejected": 0, "skipped": 0, "registries": 0, "hosts": 0}

    def fail(self, path, message):
        self.failures.append(f"{path}: {message}")

    def check_report(self, report):
        path = report["file"]
        self.counts["files"] += 1
        if "error" in report:
            self.fail(path, report["error"])
            return
        if "skipped" in report:
            self.counts["skipped"] += 1
            return
        if not report["accepted"]:
            self.counts["rejected"] += 1
            return
        self.counts["accepted"] += 1
        for problem in report.get("roundtrip_problems", []):
            self.fail(path, f"in-process TOMLKit round trip: {problem}")
        for registry in report["registries"]:
            if self.sample is None and registry["rendered"] and any(h["dial_timeout"] for h in registry["hosts"]):
                self.sample = registry
            self.counts["registries"] += 1
            self.counts["hosts"] += len(registry["hosts"])
            for problem in rendered_problems(registry):
                self.fail(path, f"{registry['upstream']}: {problem}")
        self.check_against_source(path, report["registries"])
        # The same registries rendered for containerd 1.x: the file must hold what the report says
        # (the renderer leaves dial_timeout out there, and IPv6 hosts are dotted keys under [host]).
        for registry in report.get("registries_containerd_1", []):
            for problem in rendered_problems(registry):
                self.fail(path, f"{registry['upstream']} (containerd 1.x file): {problem}")

    def check_against_source(self, path, registries):
        try:
            with open(path, "rb") as f:
                source = tomllib.loads(f.read().decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            self.notes.append(f"{path}: TOMLKit accepted the config, tomllib refuses it: {e}")
            return
        except OSError as e:
            self.fail(path, f"cannot read: {e}")
            return
        for problem in source_problems(source, registries):
            self.fail(path, f"loader vs tomllib on the config: {problem}")


def rendered_problems(registry):
    """Problems of one rendered hosts.toml against the registry the loader accepted."""
    text = registry["rendered"]
    if text is None:
        return ["render returned nil for an accepted registry"]
    problems = []
    if not (text == MARKER or text.startswith(MARKER + "\n")):
        problems.append("the file does not start with the marker line")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return problems + [f"tomllib cannot parse the rendered file: {e}\n{text}"]

    want_top = ["host"] if registry["server"] == "" else ["host", "server"]
    if sorted(doc) != want_top:
        problems.append(f"top-level keys {sorted(doc)}, expected {want_top}")
    if registry["server"] != "" and doc.get("server") != registry["server"]:
        problems.append(f"server {doc.get('server')!r}, expected {registry['server']!r}")

    hosts = doc.get("host")
    if not isinstance(hosts, dict):
        return problems + [f"host is {hosts!r}, expected a table"]
    urls = [h["url"] for h in registry["hosts"]]
    if list(hosts) != urls:
        problems.append(f"hosts in file order {list(hosts)!r}, expected {urls!r}")
    for host in registry["hosts"]:
        table = hosts.get(host["url"])
        if not isinstance(table, dict):
            problems.append(f"[host.{host['url']!r}] missing or not a table")
            continue
        problems += [f"host {host['url']!r}: {p}" for p in host_problems(table, host)]
    return problems


def host_problems(table, host):
    problems = []
    want = {"capabilities": host["capabilities"]}
    if host["dial_timeout"] is not None:
        want["dial_timeout"] = host["dial_timeout"]
    if host["ca"]:
        want["ca"] = host["ca"]
    if host["client"]:
        want["client"] = host["client"]
    if host["skip_verify"] is not None:
        want["skip_verify"] = host["skip_verify"]
    if host["override_path"] is not None:
        want["override_path"] = host["override_path"]
    if host["headers"]:
        want["header"] = {name: values for name, values in host["headers"]}
    if sorted(table) != sorted(want):
        problems.append(f"keys {sorted(table)}, expected {sorted(want)}")
    for key, value in want.items():
        got = table.get(key)
        # Types matter too: True == 1 in Python, so compare the JSON forms.
        if json.dumps(got) != json.dumps(value):
            problems.append(f"{key} reads back as {got!r}, expected {value!r}")
    if "header" in want and isinstance(table.get("header"), dict):
        if list(table["header"]) != [name for name, _ in host["headers"]]:
            problems.append(f"header order {list(table['header'])!r}, expected {[n for n, _ in host['headers']]!r}")
    if isinstance(table.get("dial_timeout"), str):
        try:
            exact = go_duration_ns(table["dial_timeout"])
            if not close_ns(exact, host["dial_timeout_ns"]):
                problems.append(f"dial_timeout {table['dial_timeout']!r} is {exact}ns, configured {host['dial_timeout_ns']}ns")
        except ValueError as e:
            problems.append(f"dial_timeout: {e}")
    return problems


def default_server(upstream):
    if upstream == "_default":
        return ""
    if upstream == "docker.io":
        return "https://registry-1.docker.io"
    return "https://" + upstream


def source_problems(source, registries):
    """What tomllib reads in the config, normalised as the loader documents, against what it loaded."""
    problems = []
    raw = source.get("registry", [])
    if len(raw) != len(registries):
        return [f"{len(raw)} registries in the file, {len(registries)} loaded"]
    for i, (r, got) in enumerate(zip(raw, registries)):
        where = f"registry[{i}]"
        if r.get("upstream") != got["upstream"]:
            problems.append(f"{where}.upstream {r.get('upstream')!r}, loaded {got['upstream']!r}")
        server = r.get("server", default_server(r.get("upstream", "")))
        if server != got["server"]:
            problems.append(f"{where}.server {server!r}, loaded {got['server']!r}")
        raw_hosts = r.get("host", [])
        if len(raw_hosts) != len(got["hosts"]):
            problems.append(f"{where}: {len(raw_hosts)} hosts in the file, {len(got['hosts'])} loaded")
            continue
        for j, (h, g) in enumerate(zip(raw_hosts, got["hosts"])):
            problems += [f"{where}.host[{j}]: {p}" for p in source_host_problems(h, g)]
    return problems


def source_host_problems(h, g):
    problems = []

    def expect(key, value):
        if json.dumps(value) != json.dumps(g[key]):
            problems.append(f"{key} {value!r} in the file, loaded {g[key]!r}")

    expect("url", h.get("url"))
    caps = []
    for c in as_list(h.get("capabilities", ["pull", "resolve"])):
        if c not in caps:
            caps.append(c)
    expect("capabilities", caps)
    expect("ca", as_list(h.get("ca", [])))
    client = h.get("client", [])
    expect("client", [[client]] if isinstance(client, str) else [as_list(pair) for pair in client])
    expect("skip_verify", h.get("skip_verify"))
    expect("override_path", h.get("override_path"))
    headers = h.get("header", {})
    expect("headers", [[name, as_list(headers[name])] for name in sorted(headers)])
    exact = go_duration_ns(h["dial_timeout"]) if "dial_timeout" in h else Fraction(10**9)
    if exact == 0 or g["dial_timeout_ns"] is None:
        if exact != 0 or g["dial_timeout_ns"] is not None:
            problems.append(f"dial_timeout {h.get('dial_timeout')!r} in the file, loaded {g['dial_timeout']!r}")
    elif not close_ns(exact, g["dial_timeout_ns"]):
        problems.append(f"dial_timeout {h.get('dial_timeout')!r} is {exact}ns, loaded {g['dial_timeout_ns']}ns")
    return problems


def self_test(checker):
    """Plants faults in the rendered text of an accepted file and expects each to be caught: an
    oracle that passes everything would otherwise look the same as a renderer without bugs."""
    sample = checker.sample
    if sample is None:
        return ["no accepted config to plant faults in"]
    text = sample["rendered"]
    first_url = sample["hosts"][0]["url"]
    planted = {
        "server changed": text.replace("server = \"", "server = \"x", 1) if sample["server"] else None,
        "capability dropped": re.sub(r'capabilities = \["(\w+)"(, )?', "capabilities = [", text, count=1),
        "host renamed": text.replace(json.dumps(first_url)[:-1], json.dumps(first_url)[:-1] + "x", 1),
        "extra key": text + "  skip_verify_typo = true\n",
        "dial_timeout changed": re.sub(r'dial_timeout = "[^"]*"', 'dial_timeout = "2h"', text, count=1),
        "syntax broken": text + "[host\n",
    }
    missed = []
    tried = 0
    for name, mutated in planted.items():
        if mutated is None or mutated == text:
            continue
        tried += 1
        if not rendered_problems(dict(sample, rendered=mutated)):
            missed.append(f"planted fault not caught: {name}")
    if tried < 4:
        missed.append(f"only {tried} faults could be planted in {sample['upstream']}'s file")
    return missed


def collect(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, n) for n in os.listdir(p) if os.path.isfile(os.path.join(p, n)))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise SystemExit(f"oracle: no such file or folder: {p}")
    return files


def run_oracle(binary, files, checker):
    """Runs render-oracle on the files in batches; a batch it dies on is retried file by file."""
    env = dict(os.environ, FUZZ_SKIP_KNOWN=os.environ.get("FUZZ_SKIP_KNOWN", "1"), SWIFT_BACKTRACE="enable=no")
    for start in range(0, len(files), BATCH):
        batch = files[start:start + BATCH]
        proc = subprocess.run([binary, *batch], capture_output=True, env=env)
        if proc.returncode == 0:
            for line in proc.stdout.decode("utf-8").splitlines():
                checker.check_report(json.loads(line))
            continue
        for path in batch:
            one = subprocess.run([binary, path], capture_output=True, env=env)
            if one.returncode == 0:
                checker.check_report(json.loads(one.stdout))
            else:
                checker.counts["files"] += 1
                tail = one.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
                checker.fail(path, f"render-oracle died (exit {one.returncode}): " + " | ".join(tail))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, help="the render-oracle executable")
    parser.add_argument("paths", nargs="+", help="config files or folders of them")
    args = parser.parse_args()
    checker = Checker()
    run_oracle(args.bin, collect(args.paths), checker)

    checker.failures += [f"oracle self-test: {m}" for m in self_test(checker)]

    c = checker.counts
    for note in checker.notes[:20]:
        print(f"note: {note}")
    if len(checker.notes) > 20:
        print(f"note: ... and {len(checker.notes) - 20} more")
    for failure in checker.failures[:50]:
        print(f"FAIL: {failure}")
    if len(checker.failures) > 50:
        print(f"FAIL: ... and {len(checker.failures) - 50} more")
    print(f"oracle: {c['files']} files: {c['accepted']} accepted ({c['registries']} hosts.toml files, "
          f"{c['hosts']} hosts), {c['rejected']} rejected, {c['skipped']} skipped as known bugs; "
          f"{len(checker.notes)} parser disagreements")
    failed_files = len({f.split(": ", 1)[0] for f in checker.failures})
    print(f"oracle: {c['accepted'] - min(failed_files, c['accepted'])} passed, {failed_files} failed")
    return 1 if checker.failures else 0


if __name__ == "__main__":
    sys.exit(main())
