#!/usr/bin/env python3
"""Idle CPU of `watch` with Service names, against the same config with the addresses written out.

  dns_idle.py AGENT [--seconds N] [--warmup S] [--names N] [--repeat K]
              [--registry-port P] [--dns-port P] [--threads] [--keep]

Starts, on loopback only, a docker-registry on 127.0.0.1:REGISTRY_PORT (5077) and a dnsmasq on
127.0.0.1:DNS_PORT (5354) answering cache-1..N.kube-system.svc.cluster.local with 127.0.0.1 (no
upstream, no /etc/hosts, no resolv.conf). Then runs `AGENT watch --config CFG --hosts-dir DIR` twice,
with one config each:
  plain  N registries rN.example, each with the host http://127.0.0.1:REGISTRY_PORT
  names  the same registries, each with http://cache-N.kube-system.svc.cluster.local:REGISTRY_PORT
Both have containerd_version = "2.1.9", containerd_unit = "" and [discovery] dns_servers =
["127.0.0.1:DNS_PORT"], and the default probe settings (a round every 2 s +-20%). After the warm-up
(5 s; every hosts.toml must then name http://127.0.0.1:REGISTRY_PORT), the agent's CPU (utime + stime
of /proc/PID/stat, which includes threads that have ended) is read, again after N seconds (60), and
reported per hour. --repeat K alternates the two K times and reports the median of each. --threads
adds each thread's share (threads alive at both reads only). Prints figures, asserts nothing; exits 1
when a run could not be measured (agent died, files not written, ports taken).
"""
import argparse, os, shutil, socket, statistics, struct, subprocess, sys, tempfile, time

DNSMASQ = "/usr/sbin/dnsmasq"
REGISTRY = "/usr/bin/docker-registry"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import a_records, connects, stop  # noqa: E402


class Failure(Exception):
    pass


def wait_for(predicate, timeout, what, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(step)
    raise Failure(f"timed out after {timeout} s waiting for {what}")


def udp_port_taken(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))
            return False
        except OSError:
            return True


def name_of(i):
    return f"cache-{i}.kube-system.svc.cluster.local"


def start_registry(work, port):
    d = os.path.join(work, "registry")
    os.makedirs(os.path.join(d, "data"))
    config = os.path.join(d, "config.yml")
    with open(config, "w") as f:
        f.write("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n")
        f.write(f"storage:\n  filesystem:\n    rootdirectory: {d}/data\n")
        f.write(f"http:\n  addr: {LOOPBACK}:{port}\n")
    proc = subprocess.Popen([REGISTRY, "serve", config], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "registry.log"), "w"))
    try:
        wait_for(lambda: connects(LOOPBACK, port) or proc.poll() is not None, 20, f"docker-registry on {LOOPBACK}:{port}")
        if proc.poll() is not None:
            raise Failure(f"docker-registry exited ({proc.returncode}); see {work}/registry.log")
    except Failure:
        stop(proc)
        raise
    return proc


def start_dnsmasq(work, port, names):
    hosts = os.path.join(work, "dns-hosts")
    with open(hosts, "w") as f:
        f.write("".join(f"{LOOPBACK} {name_of(i)}\n" for i in range(1, names + 1)))
    os.chmod(hosts, 0o644)
    log = os.path.join(work, "dnsmasq.log")
    args = ["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
            f"--port={port}", f"--listen-address={LOOPBACK}", "--bind-interfaces", f"--addn-hosts={hosts}",
            "--local=/cluster.local/", "--pid-file=", "--user=root", "--group=root",
            "--log-queries", f"--log-facility={log}"]
    proc = subprocess.Popen([DNSMASQ, *args], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "dnsmasq.stderr"), "w"))
    try:
        wait_for(lambda: a_records(name_of(1), LOOPBACK, port) == [LOOPBACK] or proc.poll() is not None, 10,
                 f"dnsmasq on {LOOPBACK}:{port}")
        if proc.poll() is not None:
            raise Failure(f"dnsmasq exited ({proc.returncode}); see {work}/dnsmasq.stderr")
    except Failure:
        stop(proc)
        raise
    return proc, log


def write_config(path, hosts, dns_port):
    with open(path, "w") as f:
        f.write('containerd_version = "2.1.9"\ncontainerd_unit = ""\n\n')
        f.write(f'[discovery]\ndns_servers = ["{LOOPBACK}:{dns_port}"]\n')
        for i, url in enumerate(hosts, 1):
            f.write(f'\n[[registry]]\nupstream = "r{i}.example"\n  [[registry.host]]\n  url = "{url}"\n')


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def thread_ticks(pid):
    """{tid: (name, ticks)} of the threads alive now."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[tid] = (name, int(fields[11]) + int(fields[12]))
    return out


def count_queries(log):
    try:
        with open(log) as f:
            return sum(1 for line in f if "query[A] cache-" in line)
    except FileNotFoundError:
        return 0


def measure(agent, work, label, config, args, names, dns_log):
    """One watch run: (CPU seconds per hour over the window, a detail line)."""
    hosts_dir = os.path.join(work, f"hosts-{label}")
    shutil.rmtree(hosts_dir, ignore_errors=True)
    os.makedirs(hosts_dir)
    log = open(os.path.join(work, f"watch-{label}.log"), "a")
    watch = subprocess.Popen([agent, "watch", "--config", config, "--hosts-dir", hosts_dir],
                             stdout=log, stderr=log)
    try:
        time.sleep(args.warmup)
        if watch.poll() is not None:
            raise Failure(f"{label}: the agent exited ({watch.returncode}); see {log.name}")
        want = f'[host."http://{LOOPBACK}:{args.registry_port}"]'
        for i in range(1, names + 1):
            path = os.path.join(hosts_dir, f"r{i}.example", "hosts.toml")
            try:
                with open(path) as f:
                    written = want in f.read()
            except FileNotFoundError:
                written = False
            if not written:
                raise Failure(f"{label}: {path} does not name {want} after the warm-up; see {log.name}")
        queries0 = count_queries(dns_log)
        threads0 = thread_ticks(watch.pid)
        t0, cpu0 = time.monotonic(), cpu_ticks(watch.pid)
        time.sleep(args.seconds)
        t1, cpu1 = time.monotonic(), cpu_ticks(watch.pid)
        threads1 = thread_ticks(watch.pid)
        queries = count_queries(dns_log) - queries0
        if watch.poll() is not None:
            raise Failure(f"{label}: the agent exited ({watch.returncode}) during the window; see {log.name}")
    finally:
        stop(watch)
        log.close()
    seconds = (cpu1 - cpu0) / CLK_TCK
    per_hour = seconds * 3600 / (t1 - t0)
    detail = f"CPU {seconds * 1000:.0f} ms over {t1 - t0:.1f} s, {len(threads1)} threads"
    if label == "names":
        detail += f", {queries} A queries at dnsmasq ({queries * 3600 / (t1 - t0):.0f}/h)"
    if args.threads:
        shares = {}
        for tid, (name, ticks) in threads1.items():
            if tid in threads0:
                shares[name] = shares.get(name, 0) + ticks - threads0[tid][1]
        gone = (cpu1 - cpu0) - sum(shares.values())
        parts = [f"{n} {t * 1000 // CLK_TCK} ms" for n, t in sorted(shares.items(), key=lambda x: -x[1]) if t]
        parts.append(f"not attributed (threads that came or went, rounding) {gone * 1000 // CLK_TCK} ms")
        detail += "\n      by thread: " + ", ".join(parts)
    return per_hour, detail


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("agent", help="the configure-containerd-registries binary")
    parser.add_argument("--seconds", type=float, default=60, help="measured window per run (60)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds before the window (5)")
    parser.add_argument("--names", type=int, default=10, help="registries, one Service name each (10)")
    parser.add_argument("--repeat", type=int, default=1, help="plain/names pairs, alternated (1)")
    parser.add_argument("--registry-port", type=int, default=5077)
    parser.add_argument("--dns-port", type=int, default=5354)
    parser.add_argument("--threads", action="store_true", help="CPU per thread too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    agent = os.path.abspath(args.agent)
    for binary in (agent, DNSMASQ, REGISTRY):
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary} is missing or not executable")
    if connects(LOOPBACK, args.registry_port):
        sys.exit(f"something already listens on {LOOPBACK}:{args.registry_port} (--registry-port)")
    if udp_port_taken(args.dns_port):
        sys.exit(f"UDP {LOOPBACK}:{args.dns_port} is taken (--dns-port)")

    work = tempfile.mkdtemp(prefix="ccr-dnsidle-")
    os.chmod(work, 0o755)
    registry = dns = None
    results = {"plain": [], "names": []}
    try:
        registry = start_registry(work, args.registry_port)
        dns, dns_log = start_dnsmasq(work, args.dns_port, args.names)
        configs = {
            "plain": [f"http://{LOOPBACK}:{args.registry_port}"] * args.names,
            "names": [f"http://{name_of(i)}:{args.registry_port}" for i in range(1, args.names + 1)],
        }
        paths = {}
        for label, hosts in configs.items():
            paths[label] = os.path.join(work, f"{label}.toml")
            write_config(paths[label], hosts, args.dns_port)
        print(f"agent {agent}; {args.names} registries; window {args.seconds:g} s after {args.warmup:g} s; "
              f"registry {LOOPBACK}:{args.registry_port}, dnsmasq {LOOPBACK}:{args.dns_port}", flush=True)
        for run in range(args.repeat):
            for label in ("plain", "names"):
                per_hour, detail = measure(agent, work, label, paths[label], args, args.names, dns_log)
                results[label].append(per_hour)
                prefix = f"[{run + 1}/{args.repeat}] " if args.repeat > 1 else ""
                print(f"{prefix}{label:5}  {per_hour:6.2f} s/h  ({detail})", flush=True)
    except Failure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        stop(dns)
        stop(registry)
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    plain = statistics.median(results["plain"])
    names = statistics.median(results["names"])
    how = f"median of {args.repeat}" if args.repeat > 1 else "one run each"
    print(f"plain ({args.names} x http://{LOOPBACK}:{args.registry_port}): {plain:.2f} s/h")
    print(f"names ({args.names} x http://cache-N.kube-system.svc.cluster.local:{args.registry_port}): {names:.2f} s/h")
    print(f"difference (names - plain): {names - plain:+.2f} s/h  ({how}; /proc ticks are "
          f"{1000 // CLK_TCK} ms, i.e. {3600 / CLK_TCK / args.seconds:.2f} s/h per tick over {args.seconds:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
