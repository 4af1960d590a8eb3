#!/usr/bin/env python3
"""Benchmarks of `apply` (issue: the agent's core). Prints figures; asserts nothing.

Loopback only. Usage: bench.py AGENT_BINARY [--quick | --only-plan-check | --only-scale]
"""
import os, resource, shutil, socket, statistics, subprocess, sys, tempfile, time

AGENT = sys.argv[1]
QUICK = "--quick" in sys.argv
HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(HERE, "servers.py")


def free_ports(n):
    """n free ports below the ephemeral range. A port inside it can be taken by the agent's own
    connection attempt: on loopback, a connect() to a closed port whose chosen source port happens to be
    that same port connects the socket to itself, and the mirror can then never bind. A fast-probing
    agent makes thousands of attempts, so a benchmark on ephemeral ports would hang now and then; real
    mirrors are on other addresses, where this cannot happen."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    ports = []
    candidate = 20000 + (os.getpid() % 500) * 20
    while len(ports) < n and candidate < low:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", candidate))
            ports.append(candidate)
        except OSError:
            pass
        finally:
            s.close()
        candidate += 1
    if len(ports) < n:
        raise RuntimeError("not enough free ports below the ephemeral range")
    return ports


def start(*args):
    return subprocess.Popen([sys.executable, SERVERS, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_file(path, timeout=10):
    end = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > end:
            raise RuntimeError(f"{path} never appeared")
        time.sleep(0.01)
    with open(path) as f:
        return f.read()


def pct(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100 * len(values) + 0.5)) - 1))
    return values[k]


def summary(values):
    return (f"n={len(values)} min={min(values):.3f}s median={statistics.median(values):.3f}s "
            f"p95={pct(values, 95):.3f}s max={max(values):.3f}s")


def detection(downtime, trials):
    """Mirror comes up `downtime` s after apply started: time from listen() to hosts.toml on disk.
    Trials run side by side, each with its own mirror, hosts dir and agent."""
    work = tempfile.mkdtemp(prefix="ccr-bench-")
    ports = free_ports(trials)
    runs = []
    for i, port in enumerate(ports):
        hosts = os.path.join(work, f"h{i}")
        stamp = os.path.join(work, f"stamp{i}")
        agent = subprocess.Popen([AGENT, "apply", "--hosts-dir", hosts, "--log-format", "text",
                                  f"docker.io,http://127.0.0.1:{port}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = start("late", downtime, port, stamp)
        runs.append((agent, server, os.path.join(hosts, "docker.io", "hosts.toml"), stamp))
    latencies = []
    for agent, server, path, stamp in runs:
        agent.wait(timeout=downtime + 30)
        mtime = os.stat(path).st_mtime_ns / 1e9
        latencies.append(mtime - float(open(stamp).read()))
        server.terminate()
        server.wait()
    shutil.rmtree(work)
    return latencies


def detection_dropped(downtime, trials):
    """The realistic boot case: the mirror listens all along, but its packets are dropped (iptables in a
    network namespace of our own, as before kube-proxy programs a cluster IP) until `downtime` s after
    apply started. Time from the moment the DROP rule is deleted to hosts.toml on disk. Trials run side
    by side, each with its own port, rule, hosts dir and agent."""
    ns = f"ccr-bench-{os.getpid()}"
    work = tempfile.mkdtemp(prefix="ccr-bench-")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    inns = ["ip", "netns", "exec", ns]
    procs = []
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        ports = list(range(5100, 5100 + trials))
        for port in ports:
            subprocess.run(inns + ["iptables", "-w", "-I", "INPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP"], check=True)
            procs.append(subprocess.Popen(inns + [sys.executable, SERVERS, "serve", "ok", "127.0.0.1", str(port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1)  # servers listening
        runs = []
        for i, port in enumerate(ports):
            hosts = os.path.join(work, f"h{i}")
            agent = subprocess.Popen(inns + [AGENT, "apply", "--hosts-dir", hosts, f"docker.io,http://127.0.0.1:{port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(agent)
            runs.append((agent, port, os.path.join(hosts, "docker.io", "hosts.toml")))
        # Lift the rules one by one, `downtime` after each agent started (they started together).
        time.sleep(downtime)
        lifted = {}
        import random
        for agent, port, path in random.sample(runs, len(runs)):
            lifted[port] = time.time()
            subprocess.run(inns + ["iptables", "-w", "-D", "INPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP"], check=True)
            time.sleep(random.uniform(0.05, 0.25))
        latencies = []
        for agent, port, path in runs:
            agent.wait(timeout=60)
            latencies.append(os.stat(path).st_mtime_ns / 1e9 - lifted[port])
        return latencies
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
        subprocess.run(["ip", "netns", "del", ns])
        shutil.rmtree(work, ignore_errors=True)


def isolation(trials):
    """1 live + 20 hanging + 20 refusing mirrors, each its own upstream: time from agent start to the
    live upstream's hosts.toml."""
    work = tempfile.mkdtemp(prefix="ccr-bench-")
    hang_file, ok_file = os.path.join(work, "hang"), os.path.join(work, "ok")
    hang, ok = start("hang", 20, hang_file), start("ok", 1, ok_file)
    hang_ports = wait_file(hang_file).split()
    live_port = wait_file(ok_file).split()[0]
    refused = free_ports(20)
    mirrors = [f"live.example,http://127.0.0.1:{live_port}"]
    mirrors += [f"hang{i}.example,http://127.0.0.1:{p}" for i, p in enumerate(hang_ports)]
    mirrors += [f"refused{i}.example,http://127.0.0.1:{p}" for i, p in enumerate(refused)]
    times = []
    for t in range(trials):
        hosts = os.path.join(work, f"h{t}")
        path = os.path.join(hosts, "live.example", "hosts.toml")
        began = time.time()
        agent = subprocess.Popen([AGENT, "apply", "--hosts-dir", hosts, "--deadline", "3s", *mirrors],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(path):
            time.sleep(0.002)
        times.append(os.stat(path).st_mtime_ns / 1e9 - began)
        agent.terminate()
        agent.wait()
    hang.terminate(); ok.terminate(); hang.wait(); ok.wait()
    shutil.rmtree(work)
    return times


def cpu_of(cmd, env=None):
    """(user+sys CPU seconds, peak RSS in KiB) of one run of cmd, children included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, after.ru_maxrss


def peak_rss_kib(cmd):
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    return int(out.stderr.strip().splitlines()[-1])


def footprint(runs):
    """One apply with 10 reachable registries: CPU and peak RSS; the same job done by bash + curl."""
    work = tempfile.mkdtemp(prefix="ccr-bench-")
    ok_file = os.path.join(work, "ok")
    ok = start("ok", 10, ok_file)
    ports = wait_file(ok_file).split()
    mirrors = [f"registry{i}.example,http://127.0.0.1:{p}" for i, p in enumerate(ports)]
    ours_cpu, rss = [], []
    for r in range(runs):
        hosts = os.path.join(work, f"ours{r}")
        cmd = [AGENT, "apply", "--hosts-dir", hosts, *mirrors]
        ours_cpu.append(cpu_of(cmd)[0])
        rss.append(peak_rss_kib([AGENT, "apply", "--hosts-dir", hosts + "b", *mirrors]))
    shell_cpu = []
    script = os.path.join(HERE, "apply-with-curl.sh")
    for r in range(runs):
        hosts = os.path.join(work, f"shell{r}")
        shell_cpu.append(cpu_of(["bash", script, hosts, *mirrors])[0])
    ok.terminate(); ok.wait()
    shutil.rmtree(work)
    return ours_cpu, rss, shell_cpu


def plan_and_check(runs):
    """plan and check wall time with 10 registries of which 3 are dead cluster IPs (packets dropped by
    an iptables rule in a network namespace this function creates and deletes)."""
    ns = f"ccr-bench-{os.getpid()}"
    work = tempfile.mkdtemp(prefix="ccr-bench-")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    inns = ["ip", "netns", "exec", ns]
    server = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "127.0.0.99/8", "dev", "lo"], check=True)
        subprocess.run(inns + ["iptables", "-w", "-I", "INPUT", "-d", "127.0.0.99", "-j", "DROP"], check=True)
        ok_file = os.path.join(work, "ok")
        server = subprocess.Popen(inns + [sys.executable, SERVERS, "ok", "7", ok_file])
        ports = wait_file(ok_file).split()
        mirrors = [f"live{i}.example,http://127.0.0.1:{p}" for i, p in enumerate(ports)]
        mirrors += [f"dead{i}.example,http://127.0.0.99:{5000 + i}" for i in range(3)]
        hosts = os.path.join(work, "certs.d")
        subprocess.run(inns + [AGENT, "apply", "--hosts-dir", hosts, "--deadline", "3s", *mirrors],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        containerd = os.path.join(work, "containerd.toml")
        with open(containerd, "w") as f:
            f.write(f'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "{hosts}"\n')
        config = os.path.join(work, "config.toml")
        with open(config, "w") as f:
            f.write(f'containerd_config = "{containerd}"\n')
        for name in ["plan", "check"]:
            times = []
            for _ in range(runs):
                began = time.time()
                proc = subprocess.run(inns + [AGENT, name, "--config", config, "--hosts-dir", hosts, *mirrors],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times.append(time.time() - began)
            print(f"{name}, 10 registries of which 3 dead (dropped packets), exit {proc.returncode}: "
                  f"{summary(times)}", flush=True)
    finally:
        if server:
            server.terminate(); server.wait()
        subprocess.run(["ip", "netns", "del", ns])
        shutil.rmtree(work, ignore_errors=True)


def scale(registries, deadline_s=5.0, runs=3):
    """apply with `registries` registries whose one mirror each refuses connections (a closed loopback
    port), --deadline 5s: wall time and CPU. The deadline must hold whatever the number of registries."""
    work = tempfile.mkdtemp(prefix="ccr-bench-")
    port = free_ports(1)[0]  # closed again at once: connections to it are refused
    cfg = os.path.join(work, "config.toml")
    with open(cfg, "w") as f:
        for i in range(registries):
            f.write(f'[[registry]]\nupstream = "r{i}.example"\n[[registry.host]]\nurl = "http://127.0.0.1:{port}"\n\n')
    walls, cpus = [], []
    for r in range(runs):
        hosts = os.path.join(work, f"h{r}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.run([AGENT, "apply", "--config", cfg, "--hosts-dir", hosts, "--deadline", f"{deadline_s}s"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        walls.append(time.monotonic() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        if proc.returncode != 69:
            print(f"  (run {r}: exit {proc.returncode}, expected 69)")
    shutil.rmtree(work, ignore_errors=True)
    return walls, cpus


def print_scale(registries):
    walls, cpus = scale(registries)
    print(f"apply, {registries} registries with refusing mirrors, --deadline 5s: wall median "
          f"{statistics.median(walls):.2f}s (max {max(walls):.2f}s), CPU median {statistics.median(cpus):.2f}s "
          f"(max {max(cpus):.2f}s)", flush=True)


def main():
    if "--only-plan-check" in sys.argv:
        plan_and_check(5)
        return
    if "--only-detection" in sys.argv:
        for d in ((0.5, 5) if QUICK else (0.5, 5, 60)):
            print(f"detection, refused then listening, down {d}s: {summary(detection(d, 20))}", flush=True)
            print(f"detection, dropped then let through, down {d}s: {summary(detection_dropped(d, 20))}", flush=True)
        return
    if "--only-scale" in sys.argv:
        for n in (10, 100, 1000):
            print_scale(n)
        return
    trials = 10
    print(f"agent: {AGENT}")
    print(f"binary size: {os.path.getsize(AGENT) / 1e6:.1f} MB")
    downtimes = [0.5, 5] if QUICK else [0.5, 5, 60]
    for d in downtimes:
        print(f"detection latency, mirror down {d}s after start: {summary(detection(d, trials))}", flush=True)
        print(f"detection latency, packets dropped {d}s after start, from the rule's removal: "
              f"{summary(detection_dropped(d, trials))}", flush=True)
    print(f"isolation (1 live + 20 hanging + 20 refusing), start to live file: {summary(isolation(trials))}",
          flush=True)
    plan_and_check(5)
    print_scale(1000)
    ours, rss, shell = footprint(10)
    print(f"apply, 10 reachable registries: CPU median {statistics.median(ours) * 1000:.1f} ms "
          f"(min {min(ours) * 1000:.1f}, max {max(ours) * 1000:.1f}); peak RSS median "
          f"{statistics.median(rss) / 1024:.1f} MB (max {max(rss) / 1024:.1f})")
    print(f"same job in bash + curl:        CPU median {statistics.median(shell) * 1000:.1f} ms "
          f"(min {min(shell) * 1000:.1f}, max {max(shell) * 1000:.1f})")


if __name__ == "__main__":
    main()
