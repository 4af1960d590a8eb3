#!/usr/bin/env python3
"""Benchmarks of `watch`. Prints figures; asserts nothing. Loopback only: the dropped-packets case runs
in a network namespace this script creates and deletes (its iptables rule lives and dies there).

Usage: watch_bench.py AGENT [--quick] [--only removal,idle,soak,fleet]
"""
import os, shutil, signal, statistics, subprocess, sys, tempfile, time

AGENT = sys.argv[1]
QUICK = "--quick" in sys.argv
ONLY = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else ["removal", "idle", "soak", "fleet"]
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import fmt, stop, wait_for  # noqa: E402
SERVERS = [sys.executable, os.path.join(HERE, "servers.py")]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def wait_file(path, timeout=20):
    wait_for(lambda: os.path.exists(path), timeout)
    with open(path) as f:
        return f.read()


def removal(trials):
    """Default settings; the cache fails at a random point of the probe round, in each of three ways:
    refused (the process is gone), dropped (an iptables DROP rule in a network namespace of its own)
    and hanging (SIGSTOP: the kernel still accepts connections, nothing answers). Timed from the fault
    itself to the moment hosts.toml no longer names the cache; then, after a random downtime, from
    the heal (restart, rule deleted, SIGCONT) to the file naming it again."""
    import random
    ns = f"ccr-wbench-{os.getpid()}"
    work = tempfile.mkdtemp(prefix="ccr-wbench-")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs = []
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        inns = ["ip", "netns", "exec", ns]
        rule = ["INPUT", "-p", "tcp", "--dport", "5000", "-j", "DROP"]

        def start_server():
            proc = subprocess.Popen(inns + SERVERS + ["serve", "ok", "127.0.0.1", "5000"])
            procs.append(proc)
            wait_for(lambda: subprocess.run(
                inns + ["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 5000), 1)"],
                stderr=subprocess.DEVNULL).returncode == 0, 10, step=0.05)
            return proc

        server = start_server()
        hosts = os.path.join(work, "certs.d")
        path = os.path.join(hosts, "docker.io", "hosts.toml")
        watch = subprocess.Popen(inns + [AGENT, "watch", "--hosts-dir", hosts, "--log-format", "json",
                                         "docker.io,http://127.0.0.1:5000"],
                                 stderr=open(os.path.join(work, "watch.log"), "w"))
        procs.append(watch)
        wait_file(path)
        removed = {"refused": [], "dropped": [], "hanging": []}
        back = {"refused": [], "dropped": [], "hanging": []}
        for _ in range(trials):
            for kind in removed:
                time.sleep(random.uniform(0, 2.5))  # anywhere in a round (2 s ±20%)
                t0 = time.time()
                if kind == "refused":
                    server.send_signal(signal.SIGKILL)
                    server.wait()
                elif kind == "dropped":
                    subprocess.run(inns + ["iptables", "-w", "-I"] + rule, check=True)
                else:
                    server.send_signal(signal.SIGSTOP)
                removed[kind].append(wait_for(lambda: not os.path.exists(path), 60) - t0)
                time.sleep(random.uniform(0.5, 3))
                t2 = time.time()
                if kind == "refused":
                    server = subprocess.Popen(inns + SERVERS + ["serve", "ok", "127.0.0.1", "5000"])
                    procs.append(server)
                elif kind == "dropped":
                    subprocess.run(inns + ["iptables", "-w", "-D"] + rule, check=True)
                else:
                    server.send_signal(signal.SIGCONT)
                back[kind].append(wait_for(lambda: os.path.exists(path), 60) - t2)
        for kind in removed:
            print(f"watch, cache {kind}: fault -> out of hosts.toml {fmt(removed[kind])}", flush=True)
        for kind in back:
            print(f"watch, cache {kind} healed -> back in hosts.toml {fmt(back[kind])}", flush=True)
        every = [v for values in back.values() for v in values]
        print(f"watch, any heal -> back in hosts.toml {fmt(every)}", flush=True)
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
    """`nodes` watchers probing one cache at the default interval: requests per second the cache sees."""
    work = tempfile.mkdtemp(prefix="ccr-wbench-")
    log = os.path.join(work, "requests.log")
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    server = subprocess.Popen(SERVERS + ["serve", "ok", "127.0.0.1", str(port), log])
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
    with open(log) as f:
        times = [float(l) - start for l in f if l.strip()]
    shutil.rmtree(work)
    bins = [0] * (int(seconds) + 1)
    for t in times:
        if 0 <= t < len(bins):
            bins[int(t)] += 1
    steady = bins[20:int(seconds)]
    print(f"fleet: {nodes} watchers, one cache, default interval, {seconds} s: {len(times)} requests; "
          f"expected about {nodes / 2:.0f}/s once settled (one probe per node per 2 s round)", flush=True)
    print("  requests per second (each # = 2 requests):")
    for second, count in enumerate(bins[: int(seconds)]):
        print(f"  {second:3d}s {count:4d} {'#' * (count // 2)}")
    if steady:
        print(f"  from 20 s on: mean {statistics.mean(steady):.1f}/s, stdev {statistics.pstdev(steady):.1f}, "
              f"max {max(steady)}/s (in lockstep it would be {nodes} in one second and 0 in the next)",
              flush=True)


def main():
    print(f"agent: {AGENT}")
    if "removal" in ONLY:
        removal(5 if QUICK else 20)
    if "idle" in ONLY:
        idle(60 if QUICK else 600)
    if "soak" in ONLY:
        soak(2000 if QUICK else 10000)
    if "fleet" in ONLY:
        fleet(100, 45 if QUICK else 65)


if __name__ == "__main__":
    main()
