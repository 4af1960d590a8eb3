#!/usr/bin/env python3
"""Find an event in the agent's `--log-format json` output.

usage: watchlog.py LOG SINCE HOST PATTERN

Prints, tab-separated, the time (seconds since the epoch, from the line's ISO UTC
`time`), that ISO time, and the message (with the probe reason, if any, in
brackets) of the first line at or after SINCE (seconds since the epoch; a little slack is allowed
for the millisecond rounding of the log) whose `registry_host` is HOST (or any
host when HOST is "-") and whose message contains PATTERN. Exit 1 when there is
no such line. Lines that are not JSON (a crash trace, say) are skipped.
"""
import datetime
import json
import sys


def epoch(iso):
    # 2024-01-02T03:04:05.678Z
    dt = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def main():
    log, since, host, pattern = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    try:
        lines = open(log, encoding="utf-8", errors="replace").read().splitlines()
    except FileNotFoundError:
        sys.exit(1)
    for line in lines:
        try:
            r = json.loads(line)
            t = epoch(r["time"])
        except (ValueError, KeyError, TypeError):
            continue
        if t + 0.002 < since:
            continue
        if host != "-" and r.get("registry_host") != host:
            continue
        if pattern in r.get("message", ""):
            reason = r.get("probe_reason")
            print("%.3f\t%s\t%s%s" % (t, r["time"], r.get("message", ""), " [%s]" % reason if reason else ""))
            sys.exit(0)
    sys.exit(1)


if __name__ == "__main__":
    main()
