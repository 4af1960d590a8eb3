#!/usr/bin/env python3
"""Benchmark of `watch` following a cache's Service through cluster DNS. Prints figures; asserts nothing.

The Service registry-docker-io.kube-system.svc.cluster.local is answered by a real DNS server (dnsmasq,
playing the cluster DNS, from a hosts file of its own; nothing forwarded) with the address of one of
two real docker-registry pull-through caches. watch runs with the default settings and
`--cluster-dns`, and hosts.toml names that address. A trial moves the Service: the cache at the
current address dies first (killed: connection refused; or dropped: an iptables DROP rule for its
address), then the record changes to the other cache's address (hosts file rewritten, SIGHUP), at a
random point of watch's round. Timed from the record change to hosts.toml naming the new address
(and no longer the old one); the dead cache is then healed, and the next trial moves the Service
back. p50/p95/max over the trials of each kind.

Everything runs in a network namespace this script creates and deletes, on loopback addresses of
that namespace (the caches at 127.0.0.31 and .32, their upstream at .30, the DNS server at .53); the
iptables rules live and die in its tables.

Usage: service_bench.py AGENT [--trials N] [--only refused,dropped] [--keep]   (--keep: the work dir, with
watch's log, is kept and named at the end)
"""
import os, random, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import connects, fmt, p95, rerun_in_netns, stop, wait_for  # noqa: E402

AGENT = os.path.abspath(sys.argv[1])
TRIALS = int(sys.argv[sys.argv.index("--trials") + 1]) if "--trials" in sys.argv else 20
KINDS = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else ["refused", "dropped"]
KEEP = "--keep" in sys.argv
NAME = "registry-docker-io.kube-system.svc.cluster.local"
UPSTREAM = "127.0.0.30"
CACHES = ["127.0.0.31", "127.0.0.32"]
DNS = "127.0.0.53"
REGISTRY = "/usr/bin/docker-registry"
DNSMASQ = "/usr/sbin/dnsmasq"
DIG = "/usr/bin/dig"


def dns_query(name):
    """The A records the DNS server gives for name, asked with dig: a sorted list, or a string saying
    why there is none."""
    out = subprocess.run([DIG, f"@{DNS}", "-p", "53", "+tries=1", "+time=1", "+short", name, "A"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return f"no answer ({(out.stdout + out.stderr).strip()})"
    return sorted(line for line in out.stdout.split() if line)


class World:
    """The registries, the DNS server and the watcher, inside the namespace."""

    def __init__(self, work):
        self.work = work
        self.procs = []
        self.cache = {}
        self.hosts = os.path.join(work, "dns-hosts")
        self.file = os.path.join(work, "certs.d", "docker.io", "hosts.toml")

    def registry(self, name, addr, remote=None):
        d = os.path.join(self.work, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(os.path.join(d, "data"))
        with open(os.path.join(d, "config.yml"), "w") as f:
            f.write("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n")
            f.write(f"storage:\n  filesystem:\n    rootdirectory: {d}/data\n")
            f.write(f"http:\n  addr: {addr}:5000\n  secret: ccr-sbench-{name}\n")
            if remote:
                f.write(f"proxy:\n  remoteurl: {remote}\n")
        proc = subprocess.Popen([REGISTRY, "serve", os.path.join(d, "config.yml")],
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, name + ".log"), "a"))
        self.procs.append(proc)
        wait_for(lambda: connects(addr, 5000), 20, step=0.02)
        return proc

    def start_cache(self, addr):
        self.cache[addr] = self.registry("cache-" + addr, addr, f"http://{UPSTREAM}:5000")

    def start_dns(self, addr):
        self.set_record(addr)
        args = ["--conf-file=/dev/null", "--keep-in-foreground", "--no-resolv", "--no-poll", "--no-hosts",
                f"--addn-hosts={self.hosts}", "--local=/cluster.local/", "--domain-needed",
                f"--listen-address={DNS}", "--bind-interfaces", "--port=53", "--local-ttl=5", "--pid-file=",
                f"--log-facility={os.path.join(self.work, 'dns.log')}"]
        subprocess.run([DNSMASQ, "--test", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.dns = subprocess.Popen([DNSMASQ, *args])
        self.procs.append(self.dns)
        wait_for(lambda: dns_query(NAME) == [addr], 10)

    def set_record(self, addr):
        """The Service's record names addr: the hosts file replaced, then SIGHUP. Returns the time of
        the SIGHUP, and (once served) how long dnsmasq took to answer with it."""
        tmp = self.hosts + ".new"
        with open(tmp, "w") as f:
            f.write(f"{addr} {NAME}\n")
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.hosts)
        if getattr(self, "dns", None) is None:
            return None, None
        self.dns.send_signal(signal.SIGHUP)
        t0 = time.time()
        served = wait_for(lambda: dns_query(NAME) == [addr], 5, step=0.002)
        return t0, served - t0

    def names(self, addr):
        try:
            with open(self.file) as f:
                return f'"http://{addr}:5000"' in f.read()
        except FileNotFoundError:
            return False


DROP = lambda op, addr: [["iptables", "-w", op, chain, flag, f"{addr}/32", "-j", "DROP"]
                         for chain, flag in (("INPUT", "-d"), ("OUTPUT", "-d"))]


def inside(ns):
    """The benchmark proper; runs inside the namespace ns."""
    if os.stat("/proc/self/ns/net").st_ino != os.stat(f"/run/netns/{ns}").st_ino:
        raise SystemExit(f"refusing to run outside the network namespace {ns}")
    work = tempfile.mkdtemp(prefix="ccr-sbench-")
    os.chmod(work, 0o755)  # dnsmasq reads its hosts file as nobody
    world = World(work)
    watch = None
    try:
        world.registry("upstream", UPSTREAM)
        for addr in CACHES:
            world.start_cache(addr)
        cur, nxt = CACHES
        world.start_dns(cur)
        log = os.path.join(work, "watch.log")
        watch = subprocess.Popen([AGENT, "watch", "--hosts-dir", os.path.join(work, "certs.d"), "--log-format",
                                  "json", "--cluster-dns", f"{DNS}:53", f"docker.io,http://{NAME}:5000"],
                                 stderr=open(log, "w"))
        world.procs.append(watch)
        t_start = time.time()
        try:
            wait_for(lambda: world.names(cur) or watch.poll() is not None, 20)
            assert world.names(cur)
        except (RuntimeError, AssertionError):
            print(f"watch wrote no hosts.toml naming http://{cur}:5000 within 20 s; its log:", flush=True)
            print(open(log).read()[-3000:], flush=True)
            return
        print(f"watch started; hosts.toml names http://{cur}:5000 after {time.time() - t_start:.2f}s", flush=True)
        moved = {k: [] for k in KINDS}
        old_out = {k: [] for k in KINDS}
        lag = []
        for trial in range(TRIALS):
            for kind in KINDS:
                time.sleep(random.uniform(0, 2.5))  # anywhere in a round (2 s ±20%)
                if kind == "refused":
                    world.cache[cur].send_signal(signal.SIGKILL)
                    world.cache[cur].wait()
                else:
                    for cmd in DROP("-I", cur):
                        subprocess.run(cmd, check=True)
                t0, served = world.set_record(nxt)
                lag.append(served)
                t_old = None
                end = t0 + 60
                while time.time() < end:
                    now = time.time()
                    has_old, has_new = world.names(cur), world.names(nxt)
                    if t_old is None and not has_old:
                        t_old = now
                    if has_new and not has_old:
                        break
                    time.sleep(0.01)
                else:
                    print(f"trial {trial} ({kind}): hosts.toml did not name http://{nxt}:5000 within 60 s", flush=True)
                    return
                moved[kind].append(now - t0)
                old_out[kind].append(t_old - t0)
                print(f"  trial {trial + 1:2d} {kind:7s} {cur} -> {nxt}: new address in the file after "
                      f"{now - t0:.2f}s, old one out after {t_old - t0:.2f}s", flush=True)
                if connects(cur, 5000):
                    print(f"trial {trial} ({kind}): the old cache {cur} still accepts connections", flush=True)
                    return
                if kind == "refused":
                    world.start_cache(cur)
                else:
                    for cmd in DROP("-D", cur):
                        subprocess.run(cmd, check=True)
                cur, nxt = nxt, cur
        print(f"dnsmasq: SIGHUP -> new record served {fmt(lag)}", flush=True)
        for kind in KINDS:
            how = "killed, connection refused" if kind == "refused" else "packets dropped"
            print(f"watch, Service moved, old cache {how}: record change -> hosts.toml names the new address "
                  f"{fmt(moved[kind])}", flush=True)
            print(f"  old address out of hosts.toml after the record change: {fmt(old_out[kind])}", flush=True)
        every = [v for k in KINDS for v in moved[k]]
        print(f"watch, Service moved, all trials: {fmt(every)}; target p95 < 5 s: "
              f"{'met' if p95(every) < 5 else 'NOT met'}", flush=True)
        changed = sum("service address changed" in line for line in open(log))
        print(f"watch logged \"service address changed\" {changed} times in {len(every)} moves", flush=True)
    finally:
        for p in world.procs:
            stop(p)
        if KEEP:
            print(f"work dir kept: {work} (watch's log: {work}/watch.log)", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main():
    if "--in-netns" in sys.argv:
        inside(sys.argv[sys.argv.index("--in-netns") + 1])
        return
    for path in (AGENT, REGISTRY, DNSMASQ):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"missing {path}")
    print(f"agent: {AGENT}", flush=True)
    sys.exit(rerun_in_netns("ccr-sbench", [UPSTREAM, *CACHES, DNS], __file__))


if __name__ == "__main__":
    main()
