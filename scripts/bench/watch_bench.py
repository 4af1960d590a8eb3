#!/usr/bin/env python3
"""Benchmarks of `watch`. Prints figures; asserts nothing. Loopback only: the faults that need a firewall
run in a network namespace this script creates and deletes (its iptables rules live and die there).

Usage: watch_bench.py AGENT [--quick] [--trials N] [--only PARTS-OR-FAULTS] [--hang-spread S]
  parts:  removal, idle, soak, fleet (default: all)
  faults: refused, dropped, rule-gone, hanging (each implies removal; default: all four)
  --trials N       trials per fault (20; --quick 5)
  --hang-spread S  the hanging fault comes at a random point of the S seconds (30) after the cache is
                   back, so that it falls anywhere in a slow check's period; the others within 2.5 s
                   (anywhere in a round of 2 s +-20%)
"""
import os, random, shutil, signal, statistics, subprocess, sys, tempfile, time

AGENT = sys.argv[1]
QUICK = "--quick" in sys.argv
PARTS = ["removal", "idle", "soak", "fleet"]
KINDS = ["refused", "dropped", "rule-gone", "hanging"]
ONLY = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else PARTS
for word in ONLY:
    if word not in PARTS + KINDS:
        raise SystemExit(f"--only: unknown part or fault {word!r} (parts: {', '.join(PARTS)}; faults: {', '.join(KINDS)})")
if any(word in KINDS for word in ONLY):
    ONLY = [w for w in ONLY if w in PARTS and w != "removal"] + ["removal"]
    FAULTS = [k for k in KINDS if k in sys.argv[sys.argv.index("--only") + 1].split(",")]
else:
    FAULTS = KINDS
TRIALS = int(sys.argv[sys.argv.index("--trials") + 1]) if "--trials" in sys.argv else (5 if QUICK else 20)
HANG_SPREAD = float(sys.argv[sys.argv.index("--hang-spread") + 1]) if "--hang-spread" in sys.argv else 30.0
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import fmt, p95, stop, wait_for  # noqa: E402
SERVERS = [sys.executable, os.path.join(HERE, "servers.py")]
CLK_TCK = os.sysconf("SC_CLK_TCK")

# From the fault to hosts.toml without the cache (and from any heal to the file naming it again): the
# targets of the issue on fleet cost.
TARGET = {"refused": 1.0, "dropped": 5.0, "rule-gone": 5.0, "hanging": 35.0}
BACK_TARGET = 5.0
HOW = {"refused": "refused: the cache process killed",
       "dropped": "dropped: every packet to the address dropped",
       "rule-gone": "Service rule gone: new connections die, established flows go on",
       "hanging": "hanging: accepts, never answers (SIGSTOP)"}
HEAL = {"refused": "restarted", "dropped": "rule deleted", "rule-gone": "rule restored", "hanging": "SIGCONT"}
REMOVAL_LIMIT = 90   # a fault not seen within this is reported as missed
BACK_LIMIT = 60

# "Service rule gone": the cache's Service address SVC exists in the namespace only; kube-proxy's rule
# (here one DNAT in nat OUTPUT) sends new connections to the cache at POD. The fault deletes the rule and
# drops new SYNs to SVC (the address leads nowhere once the Service is gone); established connections
# go on through their conntrack entries, as they do on a node. A rule that matches on conntrack state
# stays in place throughout, as kube-proxy's do: without any, the kernel stops tracking in the namespace
# once the last NAT rule goes, and established flows would be reset instead.
SVC, POD = "10.96.0.20", "127.0.0.2"
DNAT = ["OUTPUT", "-d", f"{SVC}/32", "-p", "tcp", "--dport", "5000", "-j", "DNAT", "--to-destination", f"{POD}:5000"]
SYN_DROP = ["INPUT", "-d", f"{SVC}/32", "-p", "tcp", "--syn", "-j", "DROP"]
CT_PIN = ["OUTPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED"]
SELF_TEST = f"""
import socket, subprocess, sys
def get(conn):
    conn.sendall(b"GET /v2/ HTTP/1.1\\r\\nHost: {SVC}:5000\\r\\n\\r\\n")
    return conn.recv(4096).startswith(b"HTTP/1.1 200")
def ipt(*args):
    subprocess.run(["iptables", "-w", *args], check=True)
held = socket.create_connection(("{SVC}", 5000), 1)
ok = [get(held)]
ipt("-I", *{SYN_DROP!r})
ipt("-t", "nat", "-D", *{DNAT!r})
held.settimeout(2)
ok.append(get(held))
try:
    socket.create_connection(("{SVC}", 5000), 1)
    ok.append(False)
except OSError:
    ok.append(True)
ipt("-t", "nat", "-A", *{DNAT!r})
ipt("-D", *{SYN_DROP!r})
ok.append(get(socket.create_connection(("{SVC}", 5000), 1)))
ok.append(get(held))
print(" ".join(map(str, ok)))
sys.exit(0 if all(ok) else 1)
"""


def wait_file(path, timeout=20):
    wait_for(lambda: os.path.exists(path), timeout)
    with open(path) as f:
        return f.read()


def until(predicate, limit, step=0.01):
    """The time.time() at which predicate held, or None after limit seconds."""
    try:
        return wait_for(predicate, limit, step=step)
    except RuntimeError:
        return None


def removal(trials):
    """Default settings; the cache fails at a random point, in each of four ways: refused (the process
    is gone), dropped (an iptables DROP rule in a network namespace of its own), Service rule gone (the
    DNAT from the Service address deleted and new SYNs to it dropped; established flows go on) and
    hanging (SIGSTOP: the kernel still accepts connections, nothing answers). Timed from the fault
    itself to the moment hosts.toml no longer names the cache; then, after a random downtime, from the
    heal (restart, rule deleted, rule restored, SIGCONT) to the file naming it again. The caches are
    keep-alive HTTP/1.1 servers (servers.py serve http), as registries are."""
    ns = f"ccr-wbench-{os.getpid()}"
    work = tempfile.mkdtemp(prefix="ccr-wbench-")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs = []
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        inns = ["ip", "netns", "exec", ns]
        rule = ["INPUT", "-p", "tcp", "--dport", "5000", "-j", "DROP"]

        def ipt(*args):
            subprocess.run(inns + ["iptables", "-w", *args], check=True)

        def start_server(addr):
            proc = subprocess.Popen(inns + SERVERS + ["serve", "http", addr, "5000"])
            procs.append(proc)
            wait_for(lambda: subprocess.run(
                inns + ["python3", "-c", f"import socket; socket.create_connection(('{addr}', 5000), 1)"],
                stderr=subprocess.DEVNULL).returncode == 0, 10, step=0.05)
            return proc

        def start_watch(name, url):
            hosts = os.path.join(work, name)
            watch = subprocess.Popen(inns + [AGENT, "watch", "--hosts-dir", hosts, "--log-format", "json",
                                             f"docker.io,{url}"],
                                     stderr=open(os.path.join(work, name + ".log"), "w"))
            procs.append(watch)
            path = os.path.join(hosts, "docker.io", "hosts.toml")
            wait_file(path)
            return path

        server = path = svc_path = None
        if any(k in FAULTS for k in ("refused", "dropped", "hanging")):
            server = start_server("127.0.0.1")
            path = start_watch("certs.d", "http://127.0.0.1:5000")
        if "rule-gone" in FAULTS:
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{SVC}/32", "dev", "lo"], check=True)
            ipt("-A", *CT_PIN)
            ipt("-t", "nat", "-A", *DNAT)
            start_server(POD)
            test = subprocess.run(inns + [sys.executable, "-c", SELF_TEST], capture_output=True, text=True)
            if test.returncode != 0:
                raise SystemExit(f"the Service-rule-gone simulation does not behave as meant (held GET, "
                                 f"held GET in the fault, new connection dies, new GET healed, held GET "
                                 f"healed: {test.stdout.strip()}) {test.stderr.strip()[-500:]}")
            print(f"Service-rule-gone simulation checked: an established connection to {SVC}:5000 answers "
                  f"through the fault, a new one times out, and the healed rule serves new ones", flush=True)
            svc_path = start_watch("certs.d-svc", f"http://{SVC}:5000")
        removed = {k: [] for k in FAULTS}
        back = {k: [] for k in FAULTS}
        missed = {k: 0 for k in FAULTS}
        for trial in range(trials):
            for kind in FAULTS:
                file = svc_path if kind == "rule-gone" else path
                if until(lambda: os.path.exists(file), 30) is None:
                    print(f"  trial {trial + 1:2d} {kind}: the cache is not in hosts.toml before the fault; "
                          f"skipped", flush=True)
                    continue
                # anywhere in a round (2 s +-20%); the hanging fault anywhere in a slow check's period
                time.sleep(random.uniform(0, HANG_SPREAD if kind == "hanging" else 2.5))
                if kind == "refused":
                    t0 = time.time()
                    server.send_signal(signal.SIGKILL)
                    server.wait()
                elif kind == "dropped":
                    t0 = time.time()
                    ipt("-I", *rule)
                elif kind == "rule-gone":
                    ipt("-I", *SYN_DROP)  # matches nothing while the DNAT is in place
                    t0 = time.time()
                    ipt("-t", "nat", "-D", *DNAT)
                else:
                    t0 = time.time()
                    server.send_signal(signal.SIGSTOP)
                t1 = until(lambda: not os.path.exists(file), REMOVAL_LIMIT)
                if t1 is None:
                    missed[kind] += 1
                else:
                    removed[kind].append(t1 - t0)
                time.sleep(random.uniform(0.5, 3))
                t2 = time.time()
                if kind == "refused":
                    server = subprocess.Popen(inns + SERVERS + ["serve", "http", "127.0.0.1", "5000"])
                    procs.append(server)
                elif kind == "dropped":
                    ipt("-D", *rule)
                elif kind == "rule-gone":
                    ipt("-t", "nat", "-A", *DNAT)
                    ipt("-D", *SYN_DROP)
                else:
                    server.send_signal(signal.SIGCONT)
                t3 = until(lambda: os.path.exists(file), BACK_LIMIT) if t1 is not None else t2
                if t1 is not None and t3 is not None:
                    back[kind].append(t3 - t2)
                out = f"{t1 - t0:.2f}s" if t1 is not None else f"not within {REMOVAL_LIMIT} s"
                again = f"{t3 - t2:.2f}s" if t3 is not None else f"not within {BACK_LIMIT} s"
                print(f"  trial {trial + 1:2d} {kind:9s} out of hosts.toml after {out}, "
                      f"back after {again}", flush=True)
        for kind in FAULTS:
            if removed[kind]:
                print(f"watch, cache {kind}: fault -> out of hosts.toml {fmt(removed[kind])}"
                      + (f"; missed {missed[kind]}" if missed[kind] else ""), flush=True)
            else:
                print(f"watch, cache {kind}: never out of hosts.toml within {REMOVAL_LIMIT} s "
                      f"({missed[kind]} trials)", flush=True)
        for kind in FAULTS:
            if back[kind]:
                print(f"watch, cache {kind} healed -> back in hosts.toml {fmt(back[kind])}", flush=True)
        every = [v for values in back.values() for v in values]
        if every:
            print(f"watch, any heal -> back in hosts.toml {fmt(every)}", flush=True)
        print(f"\ndetection, default settings, {trials} trials per fault (from the fault itself to hosts.toml "
              f"no longer naming the cache; 'back': from the heal to the file naming it again)", flush=True)
        print(f"  {'fault':66s} {'target':>8s} {'n':>3s} {'p50':>7s} {'p95':>7s} {'max':>7s} {'missed':>6s}  verdict")

        def row(label, values, target, miss):
            if values:
                good = p95(values) < target and not miss
                print(f"  {label:66s} {'< %g s' % target:>8s} {len(values):3d} {statistics.median(values):6.2f}s "
                      f"{p95(values):6.2f}s {max(values):6.2f}s {miss:6d}  {'met' if good else 'NOT met'}")
            else:
                print(f"  {label:66s} {'< %g s' % target:>8s} {0:3d} {'-':>7s} {'-':>7s} {'-':>7s} {miss:6d}  NOT met")

        for kind in FAULTS:
            row(HOW[kind], removed[kind], TARGET[kind], missed[kind])
        for kind in FAULTS:
            row(f"back after {kind} healed ({HEAL[kind]})", back[kind], BACK_TARGET, 0)
        row("back, every heal", every, BACK_TARGET, 0)
        print("  (Service moved, old cache dead: bench-watch.sh --service; boot, reachable -> file: "
              "bench.sh --only-detection)", flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
            stop(p)
        subprocess.run(["ip", "netns", "del", ns])
        shutil.rmtree(work, ignore_errors=True)


def ok_servers(n, work):
    portfile = os.path.join(work, "ports")
    proc = subprocess.Popen(SERVERS + ["ok", str(n), portfile])
    return proc, wait_file(portfile).split()


def proc_stats(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return rss, len(os.listdir(f"/proc/{pid}/fd")), cpu


def idle(seconds):
    """10 registries at the default interval: CPU per hour, and RSS sampled every minute (flat?)."""
    work = tempfile.mkdtemp(prefix="ccr-wbench-")
    server, ports = ok_servers(10, work)
    mirrors = [f"registry{i}.example,http://127.0.0.1:{p}" for i, p in enumerate(ports)]
    watch = subprocess.Popen([AGENT, "watch", "--hosts-dir", os.path.join(work, "h"), *mirrors],
                             stderr=subprocess.DEVNULL)
    time.sleep(2)
    rss0, fds0, cpu0 = proc_stats(watch.pid)
    samples = [rss0]
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(min(60, max(0, end - time.time())))
        samples.append(proc_stats(watch.pid)[0])
    rss1, fds1, cpu1 = proc_stats(watch.pid)
    watch.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(watch.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    server.terminate(); server.wait()
    shutil.rmtree(work)
    # Start-up (process, first pass) is paid once; the hourly cost is the steady part after it.
    print(f"idle, 10 registries, default interval: steady CPU {(cpu1 - cpu0) * 1000:.0f} ms over {seconds:.0f} s "
          f"= {(cpu1 - cpu0) * 3600 / seconds:.2f} s per hour (whole run incl. start-up: {cpu * 1000:.0f} ms); "
          f"RSS {rss0 / 1024:.1f} MB after start, {rss1 / 1024:.1f} MB at end; fds {fds0} -> {fds1}; "
          f"peak RSS {usage.ru_maxrss / 1024:.1f} MB", flush=True)
    print("  RSS every minute (MB): " + " ".join(f"{r / 1024:.1f}" for r in samples), flush=True)


def soak(rounds):
    """10 registries, a 1 ms interval (a setting only a test would use), until every host has been
    probed `rounds` times: RSS and fds at start and end, CPU per round."""
    work = tempfile.mkdtemp(prefix="ccr-wbench-")
    server, ports = ok_servers(10, work)
    mirrors = [f"registry{i}.example,http://127.0.0.1:{p}" for i, p in enumerate(ports)]
    config = os.path.join(work, "config.toml")
    with open(config, "w") as f:
        f.write('[probe]\nwatch_interval = "1ms"\n')
    metrics = os.path.join(work, "metrics.prom")
    watch = subprocess.Popen([AGENT, "watch", "--config", config, "--hosts-dir", os.path.join(work, "h"),
                              "--metrics-file", metrics, *mirrors], stderr=subprocess.DEVNULL)

    def probes():
        try:
            with open(metrics) as f:
                counts = [int(l.rsplit(" ", 1)[1]) for l in f if l.startswith(
                    "configure_containerd_registries_mirror_probes_total{")]
            return min(counts) if len(counts) == 10 else 0
        except (OSError, ValueError):
            return 0

    wait_for(lambda: probes() >= 100, 60)
    rss0, fds0, cpu0 = proc_stats(watch.pid)
    start_probes, t0 = probes(), time.time()
    samples = []
    while probes() < rounds:
        time.sleep(1)
        samples.append(proc_stats(watch.pid)[0])
    rss1, fds1, cpu1 = proc_stats(watch.pid)
    done, t1 = probes(), time.time()
    stop(watch)
    server.terminate(); server.wait()
    shutil.rmtree(work)
    per_round = (cpu1 - cpu0) / (done - start_probes)
    print(f"soak, 10 registries, {done} rounds in {t1 - t0:.0f} s: RSS {rss0 / 1024:.1f} MB at round "
          f"{start_probes} -> {rss1 / 1024:.1f} MB at round {done} (max seen {max(samples) / 1024:.1f} MB); "
          f"fds {fds0} -> {fds1}; CPU {per_round * 1000:.2f} ms per round (10 probes)", flush=True)


def fleet(nodes, seconds):
    """`nodes` watchers probing one cache (a keep-alive HTTP server) at the default settings: requests
    and new TCP connections per second the cache sees."""
    work = tempfile.mkdtemp(prefix="ccr-wbench-")
    log = os.path.join(work, "requests.log")
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    server = subprocess.Popen(SERVERS + ["serve", "http", "127.0.0.1", str(port), log])
    time.sleep(0.5)
    start = time.time()
    watchers = [subprocess.Popen([AGENT, "watch", "--hosts-dir", os.path.join(work, f"h{i}"),
                                  f"docker.io,http://127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
                for i in range(nodes)]
    time.sleep(seconds)
    for w in watchers:
        w.send_signal(signal.SIGTERM)
    for w in watchers:
        w.wait()
    server.terminate(); server.wait()
    times = {"r": [], "c": []}
    with open(log) as f:
        for line in f:
            what, _, stamp = line.partition(" ")
            if what in times:
                times[what].append(float(stamp) - start)
    shutil.rmtree(work)
    bins = {what: [0] * (int(seconds) + 1) for what in times}
    for what, values in times.items():
        for t in values:
            if 0 <= t < len(bins[what]):
                bins[what][int(t)] += 1
    print(f"fleet: {nodes} watchers, one cache, default settings, {seconds} s: {len(times['r'])} requests, "
          f"{len(times['c'])} new TCP connections", flush=True)
    print("  per second: requests, new connections (each # = 2 requests)")
    for second in range(int(seconds)):
        count = bins["r"][second]
        print(f"  {second:3d}s {count:4d} {bins['c'][second]:4d} {'#' * (count // 2)}")
    for what, label in (("r", "requests"), ("c", "new connections")):
        steady = bins[what][20:int(seconds)]
        if steady:
            print(f"  {label}, from 20 s on: mean {statistics.mean(steady):.1f}/s, stdev "
                  f"{statistics.pstdev(steady):.1f}, max {max(steady)}/s (in lockstep it would be all of a "
                  f"period's in one second and 0 in the next)", flush=True)


def main():
    print(f"agent: {AGENT}")
    if "removal" in ONLY:
        removal(TRIALS)
    if "idle" in ONLY:
        idle(60 if QUICK else 600)
    if "soak" in ONLY:
        soak(2000 if QUICK else 10000)
    if "fleet" in ONLY:
        fleet(100, 45 if QUICK else 65)


if __name__ == "__main__":
    main()
