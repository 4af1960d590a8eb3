#!/usr/bin/env python3
"""Part of scripts/systemd-test.sh (run by journald-inner.sh beside a real journald): proves that the
agent's journal reader hands over every entry as soon as it is read, none held back.

journald counts an entry in its file before it links the entry to its fields; a reader that looks
between the two must still find the entry on its next pass, not only once another entry arrives.
This writes containerd-style "trying next host" entries, each right after an entry of another
identifier and each followed by a quiet spell, and times each from its write to the moment the
reader (journal-follow-check, the agent's ContainerdJournal.Reader) printed it.

    follow_check.py TOOL MODE TRIALS QUIET_MS LIMIT_MS [ROTATE_EVERY]

MODE: spin (the reader reads in a tight loop: its passes overlap journald's writes as often as they
can) or wait (as watch reads: sd_journal_wait). ROTATE_EVERY: after every that many entries the
journal is rotated and the archived files vacuumed (journalctl --rotate, --vacuum-files=1), so the
entry the reader read last is in a file that is gone. Prints PASS/FAIL/INFO lines for assert.sh's
tally."""
import ctypes
import random
import subprocess
import sys
import time

tool, mode, trials, quiet_ms, limit_ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rotate_every = int(sys.argv[6]) if len(sys.argv) > 6 else 0
ident = "ccr-follow-test"
libsystemd = ctypes.CDLL("libsystemd.so.0")


def send(*fields):
    args = [ctypes.c_char_p(f.encode()) for f in fields] + [ctypes.c_char_p(None)]
    rc = libsystemd.sd_journal_send(*args)
    if rc < 0:
        raise OSError(-rc, "sd_journal_send")


duration = trials * (quiet_ms + 30) / 1000 + 5
args = [tool, f"SYSLOG_IDENTIFIER={ident}", str(duration)] + (["--spin"] if mode == "spin" else [])
reader = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
if reader.stdout.readline().strip() != "ready":
    print(f"FAIL follow ({mode}): journal-follow-check did not start")
    sys.exit(0)
time.sleep(0.3)

written = {}
for n in range(trials):
    send("MESSAGE=another unit's line", "SYSLOG_IDENTIFIER=ccr-follow-noise")
    time.sleep(random.uniform(0.002, 0.02))
    written[n] = time.time()
    send(f'MESSAGE=time="now" level=info msg="trying next host" error="trial {n}" host="127.0.0.1:5000"',
         f"SYSLOG_IDENTIFIER={ident}")
    time.sleep(quiet_ms / 1000)
    if rotate_every and n % rotate_every == rotate_every - 1:
        for step in (["--rotate"], ["--vacuum-files=1"]):
            subprocess.run(["journalctl", *step], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
time.sleep(limit_ms / 1000)
reader.kill()
out, _ = reader.communicate()

read = {}
for line in out.splitlines():
    at, _, reason = line.partition(" ")
    if reason.startswith("trial "):
        read.setdefault(int(reason.split()[1]), float(at))
late = sorted((read[n] - written[n]) * 1000 if n in read else float("inf") for n in written)
missing = sum(1 for n in written if n not in read)
over = sum(1 for ms in late if ms > limit_ms)
p50 = late[len(late) // 2]
print(f"INFO follow ({mode}): {trials} entries, {missing} never read; write -> read p50 {p50:.1f} ms, max {late[-1]:.1f} ms")
rotated = f", the journal rotated and vacuumed after every {rotate_every}" if rotate_every else ""
what = f"follow ({mode}): every entry read within {limit_ms} ms of its write, with {quiet_ms} ms of quiet after it{rotated}"
if missing == 0 and over == 0:
    print(f"PASS {what}")
else:
    print(f"FAIL {what}: {over} of {trials} read late or never")
