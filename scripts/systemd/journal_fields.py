#!/usr/bin/env python3
"""Checks journal entries (journalctl -o json on stdin) for the agent's structured fields.

    journal_fields.py [--upstream NAME] [--transport journal] CHECK...

Each CHECK is FIELD (some entry of ours has it), FIELD=VALUE (some entry has exactly that value),
FIELD~TEXT (some entry's value contains TEXT) or !FIELD=VALUE (no entry of ours has that value).
"Ours" means SYSLOG_IDENTIFIER=configure-containerd-registries (and REGISTRY_UPSTREAM=NAME when
--upstream is given). Prints one line per check, "PASS ..." or "FAIL ...", and exits 1 on any failure.
"""
import json
import sys


def main(argv):
    upstream = None
    checks = []
    args = iter(argv)
    for arg in args:
        if arg == "--upstream":
            upstream = next(args)
        else:
            checks.append(arg)

    entries = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("SYSLOG_IDENTIFIER") != "configure-containerd-registries":
            continue
        entries.append(entry)
    scoped = [e for e in entries if upstream is None or e.get("REGISTRY_UPSTREAM") == upstream]

    failed = 0
    print(f"INFO {len(entries)} entries with SYSLOG_IDENTIFIER=configure-containerd-registries"
          + (f", {len(scoped)} with REGISTRY_UPSTREAM={upstream}" if upstream else ""))
    for check in checks:
        negate = check.startswith("!")
        body = check[1:] if negate else check
        if "=" in body:
            field, value = body.split("=", 1)
            matches = [e for e in scoped if str(e.get(field)) == value]
        elif "~" in body:
            field, value = body.split("~", 1)
            matches = [e for e in scoped if value in str(e.get(field, ""))]
        else:
            field, value = body, None
            matches = [e for e in scoped if field in e]
        hit = bool(matches)
        ok = (not hit) if negate else hit
        if ok:
            shown = f" (e.g. {field}={matches[0][field]!r})" if matches and not negate else ""
            print(f"PASS journal field {check}{shown}")
        else:
            seen = sorted({str(e.get(field)) for e in scoped if field in e})
            print(f"FAIL journal field {check}: values seen: {seen[:8]}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
