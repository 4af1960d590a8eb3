#!/usr/bin/env python3
"""What watch costs a fleet's registry caches and cluster DNS, per node and projected to 1,000 and
10,000 nodes, grounded by the cache's own cost per operation; and N watchers against one cache, to show
whether they fall into lockstep. Prints figures; asserts nothing.

Everything runs in a network namespace this script creates and deletes, on loopback addresses of that
namespace only:
  127.0.0.30:5001  the upstream registry the cache proxies (asked once, when the cache starts)
  *:5000           the cache: docker-registry (distribution 2.8) as a pull-through cache, with
                   distribution's default logging (level info, text, access log on); its stdout (access
                   log) and stderr (app log) are read line by line as they come
  127.0.0.41       the cache as the node's first mirror names it (docker.io, by address)
  127.0.0.42       the cache's Service address, registry-ghcr-io.kube-system.svc.cluster.local (ghcr.io)
  127.0.0.43       where the calibration client connects
  127.0.0.44       where the fleet's watchers connect
  127.0.0.53:53    dnsmasq playing the cluster DNS (--log-queries; its stderr read line by line)
The cache answers on every address, so each mirror is a host of its own for watch, and its requests are
told apart by their Host (the app log's http.request.host). New TCP connections are counted per address
by iptables rules in the namespace (-p tcp --syn, no target: a counter that changes nothing).

Phases, in order:
  calibrate  the cache's CPU per operation, with nothing else talking to it (--ops each): GET /v2/ on a
             kept-alive connection, GET /v2/ on a fresh connection, a bare TCP connect+close, and a
             connect+RST; then --idle-conns connections held open: CPU and RSS per held connection
  steady     one watch, default settings, both mirrors, for --seconds after --warmup: per mirror HTTP
             requests/s, new connections/s and connections held (ss), the cache's log lines/s and bytes,
             its CPU ms/s, dnsmasq's A and AAAA queries/s and CPU, the watch's CPU ms/s, RSS and log
             lines/s; projected linearly to 1,000 and 10,000 nodes
  fleet      --fleet watchers (each its own config and hosts dir, one mirror) started together against
             the cache for --fleet-seconds: requests and new connections per second and per 10 s, with
             mean, stdev, max and variance/mean (about 1 when spread at random; lockstep is far above)
  scale      the operations of N nodes (--scale, 1,000 and 10,000) replayed against the cache at their
             Poisson rates for --scale-seconds: each node's GET /v2/ on a fresh connection, its half-open
             connection checks and one held connection, at the steady phase's per-mirror rates (or
             --rates REQUESTS,CHECKS: 0.5,0 is an HTTP probe every 2 s round, the schedule before); the
             cache's CPU and log lines at those rates (its cost per operation falls as they grow, which a
             linear projection from one node misses). The replay is this script, not the agent.

CPU is utime+stime of /proc/PID/stat (10 ms ticks), and for the cache also the sum of its threads'
/proc/PID/task/TID/schedstat run time (ns).

Usage: fleet_cost.py AGENT [--seconds 300] [--warmup 10] [--ops 2000] [--idle-conns 1000]
                     [--fleet 100] [--fleet-seconds 90] [--scale 1000,10000] [--scale-seconds 30] [--rates R,C]
                     [--skip calibrate,steady,fleet,scale] [--quick] [--keep]
"""
import argparse, os, re, resource, shutil, signal, socket, statistics, struct, subprocess, sys, tempfile
import random, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import a_records, connects, rerun_in_netns, stop, wait_for  # noqa: E402

REGISTRY = "/usr/bin/docker-registry"
DNSMASQ = "/usr/sbin/dnsmasq"
CLK_TCK = os.sysconf("SC_CLK_TCK")
UPSTREAM = "127.0.0.30"
BY_ADDRESS = "127.0.0.41"
SERVICE_ADDRESS = "127.0.0.42"
CALIBRATION = "127.0.0.43"
FLEET = "127.0.0.44"
DNS = "127.0.0.53"
ADDRESSES = [UPSTREAM, BY_ADDRESS, SERVICE_ADDRESS, CALIBRATION, FLEET, DNS]
SERVICE = "registry-ghcr-io.kube-system.svc.cluster.local"
MIRRORS = [("docker.io", BY_ADDRESS, f"http://{BY_ADDRESS}:5000", "by address"),
           ("ghcr.io", SERVICE_ADDRESS, f"http://{SERVICE}:5000", "by Service name")]
NODES = [1, 1000, 10000]
ACCESS_LINE = re.compile(rb'^\S+ - \S+ \[[^\]]+\] "')
REQUEST_HOST = re.compile(rb'msg="response completed".*?http\.request\.host="?([^" ]+)')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("agent")
    parser.add_argument("--seconds", type=float, help="steady window (300; --quick 60)")
    parser.add_argument("--warmup", type=float, default=10, help="skipped after watch starts (10)")
    parser.add_argument("--ops", type=int, help="operations per calibration (2000; --quick 500)")
    parser.add_argument("--idle-conns", type=int, help="connections held open in the calibration (1000; --quick 200)")
    parser.add_argument("--fleet", type=int, default=100, help="watchers in the fleet run (100)")
    parser.add_argument("--fleet-seconds", type=float, help="length of the fleet run (90; --quick 40)")
    parser.add_argument("--fleet-skip", type=float, default=20, help="fleet seconds left out of mean/stdev/max (20)")
    parser.add_argument("--scale", default="1000,10000", help="nodes whose traffic the scale phase replays (1000,10000)")
    parser.add_argument("--rates", help="REQUESTS,CHECKS per node and second for the scale phase instead of the "
                        "steady phase's (e.g. 0.5,0: an HTTP probe every 2 s round, request_interval = watch_interval)")
    parser.add_argument("--scale-seconds", type=float, help="each scale run (30; --quick 10)")
    parser.add_argument("--skip", default="", help="phases left out: calibrate,steady,fleet,scale")
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (every log)")
    parser.add_argument("--in-netns", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.agent = os.path.abspath(args.agent)
    args.seconds = args.seconds or (60 if args.quick else 300)
    args.ops = args.ops or (500 if args.quick else 2000)
    args.idle_conns = args.idle_conns or (200 if args.quick else 1000)
    args.fleet_seconds = args.fleet_seconds or (40 if args.quick else 90)
    args.skip = [s for s in args.skip.split(",") if s]
    args.scale = [int(n) for n in args.scale.split(",") if n]
    if args.rates:
        try:
            args.rates = tuple(float(x) for x in args.rates.split(","))
            assert len(args.rates) == 2 and min(args.rates) >= 0
        except (ValueError, AssertionError):
            parser.error("--rates: REQUESTS,CHECKS, two numbers per node and second, e.g. 0.5,0")
    args.scale_seconds = args.scale_seconds or (10 if args.quick else 30)
    for s in args.skip:
        if s not in ("calibrate", "steady", "fleet", "scale"):
            parser.error(f"--skip: unknown phase {s!r}")
    return args


# --- reading processes ----------------------------------------------------------------------------------

def stat_ticks(pid):
    """utime + stime of the process (its ended threads included), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def task_ns(pid):
    """The run time of the process's threads alive now (schedstat), in ns."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class Cpu:
    """A reading of a process's CPU: ticks and (threads alive now) ns."""

    def __init__(self, pid):
        self.pid, self.t, self.ticks, self.ns = pid, time.time(), stat_ticks(pid), task_ns(pid)

    def ms_since(self, before):
        """CPU ms between two readings: (from ticks, from schedstat)."""
        return ((self.ticks - before.ticks) * 1000 / CLK_TCK, (self.ns - before.ns) / 1e6)


class Lines:
    """Every line a stream gives, stamped with time.time() as it arrives (copied to a file too)."""

    def __init__(self, stream, copy):
        self.items = []
        self.thread = threading.Thread(target=self._run, args=(stream, copy), daemon=True)
        self.thread.start()

    def _run(self, stream, copy):
        with open(copy, "wb") as out:
            for raw in iter(stream.readline, b""):
                self.items.append((time.time(), raw))
                out.write(raw)
                out.flush()

    def between(self, t0, t1):
        return [raw for t, raw in list(self.items) if t0 <= t < t1]

    def stamped(self, t0, t1):
        return [(t, raw) for t, raw in list(self.items) if t0 <= t < t1]


def syn_counts():
    """New TCP connections (SYNs) counted so far, per address of ours."""
    out = subprocess.run(["iptables", "-w", "-S", "INPUT", "-v"], capture_output=True, text=True, check=True).stdout
    counts = {}
    for line in out.splitlines():
        m = re.search(r'--comment "?ccr-syn-([^" ]+)"? -c (\d+) \d+', line)
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


def held_connections():
    """Connections established at the cache now, per address they came to."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :5000 )"],
                         capture_output=True, text=True).stdout
    held = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            addr = fields[2].rsplit(":", 1)[0].strip("[]")  # the cache listens on a dual-stack socket
            addr = addr[len("::ffff:"):] if addr.startswith("::ffff:") else addr
            held[addr] = held.get(addr, 0) + 1
    return held


# --- the world ------------------------------------------------------------------------------------------

class World:
    def __init__(self, work):
        self.work = work
        self.procs = []

    def registry(self, name, addr, port, level, accesslog, remote=None):
        d = os.path.join(self.work, name)
        os.makedirs(os.path.join(d, "data"))
        config = os.path.join(d, "config.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: {level}\n  formatter: text\n  accesslog:\n"
                    f"    disabled: {'false' if accesslog else 'true'}\n")
            f.write(f"storage:\n  filesystem:\n    rootdirectory: {d}/data\n")
            f.write(f"http:\n  addr: \"{addr}:{port}\"\n  secret: ccr-fleet-cost-{name}\n")
            if remote:
                f.write(f"proxy:\n  remoteurl: {remote}\n")
        return config

    def start_upstream(self):
        config = self.registry("upstream", UPSTREAM, 5001, "warn", False)
        proc = subprocess.Popen([REGISTRY, "serve", config], stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(self.work, "upstream.log"), "w"))
        self.procs.append(proc)
        wait_for(lambda: connects(UPSTREAM, 5001), 20, step=0.02, what="the upstream registry")

    def start_cache(self):
        config = self.registry("cache", "", 5000, "info", True, f"http://{UPSTREAM}:5001")
        self.cache = subprocess.Popen([REGISTRY, "serve", config], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(self.cache)
        self.access = Lines(self.cache.stdout, os.path.join(self.work, "cache.stdout"))
        self.app = Lines(self.cache.stderr, os.path.join(self.work, "cache.stderr"))
        wait_for(lambda: connects(BY_ADDRESS, 5000) or self.cache.poll() is not None, 20, step=0.02,
                 what="the cache")
        if self.cache.poll() is not None:
            raise SystemExit(f"the cache exited ({self.cache.returncode}); see {self.work}/cache.stderr")

    def start_dns(self):
        hosts = os.path.join(self.work, "dns-hosts")
        with open(hosts, "w") as f:
            f.write(f"{SERVICE_ADDRESS} {SERVICE}\n")
        os.chmod(hosts, 0o644)
        args = ["--conf-file=/dev/null", "--keep-in-foreground", "--no-resolv", "--no-poll", "--no-hosts",
                f"--addn-hosts={hosts}", "--local=/cluster.local/", "--domain-needed", f"--listen-address={DNS}",
                "--bind-interfaces", "--port=53", "--local-ttl=5", "--pid-file=", "--log-queries",
                "--log-facility=-"]
        self.dns = subprocess.Popen([DNSMASQ, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(self.dns)
        self.queries = Lines(self.dns.stderr, os.path.join(self.work, "dnsmasq.log"))
        wait_for(lambda: a_records(SERVICE, DNS) == [SERVICE_ADDRESS] or self.dns.poll() is not None, 10,
                 what="dnsmasq")
        if self.dns.poll() is not None:
            raise SystemExit(f"dnsmasq exited ({self.dns.returncode}); see {self.work}/dnsmasq.log")

    def counters(self):
        for addr in (BY_ADDRESS, SERVICE_ADDRESS, CALIBRATION, FLEET):
            subprocess.run(["iptables", "-w", "-A", "INPUT", "-d", f"{addr}/32", "-p", "tcp", "--dport", "5000",
                            "--syn", "-m", "comment", "--comment", f"ccr-syn-{addr}"], check=True)

    def requests(self, t0, t1):
        """Requests the cache logged as completed, per Host (address:port)."""
        per = {}
        for raw in self.app.between(t0, t1):
            m = REQUEST_HOST.search(raw)
            if m:
                host = m.group(1).decode()
                per[host] = per.get(host, 0) + 1
        return per

    def log_lines(self, t0, t1):
        """(lines, bytes, access-log lines, app-log lines) the cache printed in [t0, t1)."""
        access, app = self.access.between(t0, t1), self.app.between(t0, t1)
        return (len(access) + len(app), sum(map(len, access)) + sum(map(len, app)),
                sum(1 for raw in access if ACCESS_LINE.match(raw)), len(app))


# --- calibration ----------------------------------------------------------------------------------------

REQUEST = f"GET /v2/ HTTP/1.1\r\nHost: {CALIBRATION}:5000\r\nUser-Agent: ccr-fleet-cost\r\n\r\n".encode()


def get(conn):
    """One GET /v2/ on conn; reads the whole answer (headers and the 2-byte body)."""
    conn.sendall(REQUEST)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise OSError("connection closed before the answer")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"unexpected answer {head[:40]!r}")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += conn.recv(4096)


def op_keepalive(state):
    if state.get("conn") is None:
        state["conn"] = socket.create_connection((CALIBRATION, 5000), 2)
    get(state["conn"])


def fresh_get(address):
    conn = socket.create_connection((address, 5000), 2)
    try:
        get(conn)
    finally:
        conn.close()


def op_fresh(state):
    fresh_get(CALIBRATION)


def op_connect(state):
    socket.create_connection((CALIBRATION, 5000), 2).close()


def op_reset(state):
    conn = socket.create_connection((CALIBRATION, 5000), 2)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def half_open(address):
    """watch's connection check: a connect with TCP_DEFER_ACCEPT (the SYN-ACK's ACK held back), then a
    reset; the cache's listener drops the half-made connection before it is queued for accept."""
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    conn.settimeout(2)
    conn.connect((address, 5000))
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def op_halfopen(state):
    half_open(CALIBRATION)


ROUNDS = 4
OPS = [("keepalive", "GET /v2/ on a kept-alive connection", op_keepalive),
       ("fresh", "GET /v2/ on a fresh connection (connect, GET, close)", op_fresh),
       ("connect", "bare TCP connect + close (FIN)", op_connect),
       ("reset", "bare TCP connect + close with RST (SO_LINGER 0)", op_reset),
       ("halfopen", "half-open connect + RST (watch's connection check)", op_halfopen)]


def hold_open(address, n):
    """n idle connections to the cache at address (the file limit raised as needed); fewer when the
    system refuses more, with the reason."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    held = []
    try:
        for _ in range(n):
            held.append(socket.create_connection((address, 5000), 2))
    except OSError as e:
        return held, str(e)
    return held, None


def calibrate(world, args):
    pid = world.cache.pid
    print(f"\n== calibration: the cache's CPU per operation, {args.ops} of each, nothing else talking to it",
          flush=True)
    time.sleep(1)
    before = Cpu(pid)
    time.sleep(5)
    idle_ticks, idle_ns = Cpu(pid).ms_since(before)
    idle = {"ticks": idle_ticks / (time.time() - before.t), "ns": idle_ns / (time.time() - before.t)}
    print(f"  idle: {idle['ticks']:.3f} ms/s (ticks), {idle['ns']:.3f} ms/s (schedstat)", flush=True)
    result = {"idle": idle}
    # The kinds take turns, in ROUNDS blocks each, so that a drift of the cache (its heap, its GC pacing)
    # falls on all of them alike; the spread of the blocks is shown.
    block = max(1, args.ops // ROUNDS)
    acc = {key: {"ticks": 0, "ns": 0, "span": 0, "lines": 0, "bytes": 0, "conns": 0, "client": 0, "n": 0, "blocks": []}
           for key, _, _ in OPS}
    for _ in range(ROUNDS):
        for key, label, op in OPS:
            state = {}
            for _ in range(10):  # warm up the path (and the kept-alive connection)
                op(state)
            time.sleep(0.3)
            c0 = Cpu(pid)
            conns0 = syn_counts().get(CALIBRATION, 0)
            t0 = time.time()
            for _ in range(block):
                op(state)
            t_ops = time.time() - t0
            time.sleep(0.3)  # the log lines of the last operations
            c1 = Cpu(pid)
            if state.get("conn") is not None:
                state["conn"].close()
            a = acc[key]
            a["conns"] += syn_counts().get(CALIBRATION, 0) - conns0
            lines, nbytes, _, _ = world.log_lines(t0, c1.t)
            ticks, ns = c1.ms_since(c0)
            a["lines"] += lines
            a["bytes"] += nbytes
            a["ticks"] += ticks
            a["ns"] += ns
            a["span"] += c1.t - c0.t
            a["client"] += t_ops
            a["n"] += block
            a["blocks"].append((ns - idle["ns"] * (c1.t - c0.t)) / block)
    for key, label, _ in OPS:
        a = acc[key]
        per_ticks = (a["ticks"] - idle["ticks"] * a["span"]) / a["n"]
        per_ns = (a["ns"] - idle["ns"] * a["span"]) / a["n"]
        result[key] = {"ticks": per_ticks, "ns": per_ns, "lines": a["lines"] / a["n"],
                       "bytes": a["bytes"] / max(a["lines"], 1), "client_ms": a["client"] * 1000 / a["n"],
                       "conns": a["conns"] / a["n"], "min": min(a["blocks"]), "max": max(a["blocks"])}
        print(f"  {label}: cache CPU {per_ticks * 1000:.1f} us/op (ticks), {per_ns * 1000:.1f} us/op (schedstat; "
              f"blocks of {block}: {min(a['blocks']) * 1000:.0f}-{max(a['blocks']) * 1000:.0f}); "
              f"{a['lines'] / a['n']:.2f} log lines/op ({a['bytes'] / max(a['lines'], 1):.0f} bytes each); "
              f"{a['conns'] / a['n']:.2f} new connections/op; {a['client'] * 1000 / a['n']:.3f} ms/op at the client",
              flush=True)
    # connections held open, saying nothing
    n = args.idle_conns
    rss0 = rss_kb(pid)
    held, error = hold_open(CALIBRATION, n)
    if error:
        print(f"  held connections: opened only {len(held)} of {n}: {error}", flush=True)
    n = len(held)
    time.sleep(2)
    seen = held_connections().get(CALIBRATION, 0)
    c0 = Cpu(pid)
    time.sleep(10)
    c1 = Cpu(pid)
    rss1 = rss_kb(pid)
    for conn in held:
        conn.close()
    span = c1.t - c0.t
    ticks, ns = c1.ms_since(c0)
    result["held"] = {"n": n, "kb": (rss1 - rss0) / max(n, 1), "ticks": (ticks / span - idle["ticks"]) / max(n, 1),
                      "ns": (ns / span - idle["ns"]) / max(n, 1)}
    print(f"  {n} connections held open, idle ({seen} seen established by ss): cache RSS {rss0 / 1024:.1f} -> "
          f"{rss1 / 1024:.1f} MB = {result['held']['kb']:.1f} KB per connection; CPU while held "
          f"{ticks / span:.3f} ms/s (ticks), {ns / span:.3f} ms/s (schedstat), idle {idle['ns']:.3f} ms/s", flush=True)
    time.sleep(1)
    return result


# --- one node's watch -----------------------------------------------------------------------------------

def write_config(path, mirrors, discovery=True):
    with open(path, "w") as f:
        f.write('containerd_version = "2.1.9"\ncontainerd_unit = ""\n')
        if discovery:
            f.write(f'\n[discovery]\ndns_servers = ["{DNS}:53"]\ndomain = "cluster.local"\n')
        for upstream, url in mirrors:
            f.write(f'\n[[registry]]\nupstream = "{upstream}"\n  [[registry.host]]\n  url = "{url}"\n')


def names(path, addr):
    try:
        with open(path) as f:
            return f'"http://{addr}:5000"' in f.read()
    except FileNotFoundError:
        return False


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def steady(world, args):
    print(f"\n== steady: one watch, default settings, {len(MIRRORS)} mirrors ("
          + ", ".join(f"{u} {how} {url}" for u, _, url, how in MIRRORS)
          + f"), {args.seconds:g} s after {args.warmup:g} s", flush=True)
    config = os.path.join(world.work, "node.toml")
    write_config(config, [(u, url) for u, _, url, _ in MIRRORS])
    hosts = os.path.join(world.work, "node-certs.d")
    log_path = os.path.join(world.work, "watch.log")
    start = time.time()
    watch = subprocess.Popen([args.agent, "watch", "--config", config, "--hosts-dir", hosts],
                             stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    world.procs.append(watch)
    files = {u: (os.path.join(hosts, u, "hosts.toml"), addr) for u, addr, _, _ in MIRRORS}
    try:
        wait_for(lambda: all(names(p, a) for p, a in files.values()) or watch.poll() is not None, 20,
                 what="both hosts.toml naming their cache")
    except RuntimeError:
        pass
    if watch.poll() is not None or not all(names(p, a) for p, a in files.values()):
        print("  watch did not write both files; its log:\n" + open(log_path).read()[-3000:], flush=True)
        stop(watch)
        return None
    first = time.time() - start
    time.sleep(max(0, start + args.warmup - time.time()))
    out_seconds = {u: 0 for u in files}
    held_samples = {addr: [] for _, addr, _, _ in MIRRORS}
    rss_samples = []
    done = threading.Event()

    def sample():
        tick = 0
        while not done.wait(1):
            tick += 1
            for u, (p, a) in files.items():
                if not names(p, a):
                    out_seconds[u] += 1
            if tick % 5 == 0:
                held = held_connections()
                for addr in held_samples:
                    held_samples[addr].append(held.get(addr, 0))
                try:
                    rss_samples.append(rss_kb(watch.pid))
                except OSError:
                    pass

    c_cache0, c_watch0, c_dns0 = Cpu(world.cache.pid), Cpu(watch.pid), Cpu(world.dns.pid)
    syn0, wlog0, rss0 = syn_counts(), count_lines(log_path), rss_kb(watch.pid)
    t0 = time.time()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(args.seconds)
    t1 = time.time()
    c_cache1, c_watch1, c_dns1 = Cpu(world.cache.pid), Cpu(watch.pid), Cpu(world.dns.pid)
    syn1, wlog1, rss1 = syn_counts(), count_lines(log_path), rss_kb(watch.pid)
    done.set()
    sampler.join()
    alive = watch.poll() is None
    stop(watch)
    span = t1 - t0
    requests = world.requests(t0, t1)
    lines, nbytes, access, app = world.log_lines(t0, t1)
    queries = {"A": 0, "AAAA": 0, "other": 0}
    for raw in world.queries.between(t0, t1):
        m = re.search(rb"query\[(\w+)\] (\S+)", raw)
        if m:
            kind = m.group(1).decode()
            queries[kind if kind in queries else "other"] += 1
    cache_ticks, cache_ns = c_cache1.ms_since(c_cache0)
    watch_ticks, watch_ns = c_watch1.ms_since(c_watch0)
    _, dns_ns = c_dns1.ms_since(c_dns0)  # one thread: schedstat is exact, ticks too coarse here
    per_mirror = {}
    for upstream, addr, url, how in MIRRORS:
        per_mirror[upstream] = {
            "how": how, "addr": addr,
            "requests": requests.get(f"{addr}:5000", 0) / span,
            "conns": (syn1.get(addr, 0) - syn0.get(addr, 0)) / span,
            "held": statistics.mean(held_samples[addr]) if held_samples[addr] else 0,
            "held_max": max(held_samples[addr]) if held_samples[addr] else 0,
            "out": out_seconds[upstream]}
    other = sum(v for k, v in requests.items() if k not in {f"{a}:5000" for _, a, _, _ in MIRRORS})
    r = {"span": span, "mirrors": per_mirror, "lines": lines / span, "bytes": nbytes / max(lines, 1),
         "access": access / span, "app": app / span, "other_requests": other,
         "cache_ticks": cache_ticks / span, "cache_ns": cache_ns / span, "dns_cpu": dns_ns / span,
         "A": queries["A"] / span, "AAAA": queries["AAAA"] / span, "other_queries": queries["other"] / span,
         "watch_cpu": watch_ticks / span, "watch_ns": watch_ns / span, "rss0": rss0, "rss1": rss1, "rss_max": max(rss_samples + [rss0, rss1]),
         "watch_lines": (wlog1 - wlog0) / span, "first": first, "alive": alive}
    print(f"  watch wrote both files {first:.2f} s after its start; window {span:.1f} s; watch "
          f"{'alive' if alive else 'DIED'} at the end", flush=True)
    for upstream, m in per_mirror.items():
        print(f"  {upstream} ({m['how']}, {m['addr']}): {m['requests']:.3f} HTTP requests/s, {m['conns']:.3f} new "
              f"TCP connections/s, {m['held']:.1f} connections held (mean of ss every 5 s; max {m['held_max']}); "
              f"out of hosts.toml {m['out']} s of the window", flush=True)
    if other:
        print(f"  requests with another Host: {other}", flush=True)
    print(f"  cache: {r['lines']:.3f} log lines/s ({r['access']:.3f} access, {r['app']:.3f} app; {r['bytes']:.0f} "
          f"bytes/line), CPU {r['cache_ticks']:.3f} ms/s (ticks), {r['cache_ns']:.3f} ms/s (schedstat)", flush=True)
    print(f"  dnsmasq: {r['A']:.3f} A + {r['AAAA']:.3f} AAAA queries/s (other {r['other_queries']:.3f}), CPU "
          f"{r['dns_cpu']:.3f} ms/s (schedstat)", flush=True)
    print(f"  watch: CPU {r['watch_cpu']:.3f} ms/s ({r['watch_cpu'] * 3.6:.2f} s/h; schedstat of the threads alive "
          f"at both ends {r['watch_ns']:.3f} ms/s), RSS {rss0 / 1024:.1f} -> "
          f"{rss1 / 1024:.1f} MB (max {r['rss_max'] / 1024:.1f}), {r['watch_lines']:.3f} log lines/s", flush=True)
    return r


# --- the fleet ------------------------------------------------------------------------------------------

def histogram(label, bins, skip):
    steady = bins[skip:]
    out = [f"  {label}, from {skip} s on: "]
    if steady and statistics.mean(steady) > 0:
        mean = statistics.mean(steady)
        out.append(f"mean {mean:.2f}/s, stdev {statistics.pstdev(steady):.2f}, max {max(steady)}/s, "
                   f"variance/mean {statistics.pvariance(steady) / mean:.2f}")
    else:
        out.append("none")
    print("".join(out), flush=True)


def fleet(world, args):
    n, seconds = args.fleet, args.fleet_seconds
    print(f"\n== fleet: {n} watchers started together, one mirror each (docker.io http://{FLEET}:5000), "
          f"default settings, {seconds:g} s", flush=True)
    work = os.path.join(world.work, "fleet")
    os.makedirs(work)
    config = os.path.join(work, "config.toml")
    write_config(config, [("docker.io", f"http://{FLEET}:5000")], discovery=False)
    samples = []
    done = threading.Event()
    c0 = Cpu(world.cache.pid)
    start = time.time()

    def sample():
        k = 0
        while True:
            samples.append((k, syn_counts().get(FLEET, 0)))
            k += 1
            if done.wait(max(0, start + k - time.time())):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    watchers = [subprocess.Popen([args.agent, "watch", "--config", config, "--hosts-dir",
                                  os.path.join(work, f"h{i}")], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL) for i in range(n)]
    world.procs.extend(watchers)
    skip = int(min(args.fleet_skip, seconds / 2))
    time.sleep(max(0, start + skip - time.time()))
    c_skip = Cpu(world.cache.pid)
    time.sleep(max(0, start + seconds - time.time()))
    c_end = Cpu(world.cache.pid)
    t_end = time.time()
    written = sum(names(os.path.join(work, f"h{i}", "docker.io", "hosts.toml"), FLEET) for i in range(n))
    alive = sum(w.poll() is None for w in watchers)
    done.set()
    sampler.join()
    for w in watchers:
        w.send_signal(signal.SIGTERM)
    for w in watchers:
        stop(w)
    size = int(seconds)
    req_bins = [0] * size
    for t, raw in world.app.stamped(start, start + size):
        m = REQUEST_HOST.search(raw)
        if m and m.group(1).decode() == f"{FLEET}:5000":
            req_bins[int(t - start)] += 1
    conn_bins = [0] * size
    counts = dict(samples)
    for k in range(size):
        if k in counts and k + 1 in counts:
            conn_bins[k] = counts[k + 1] - counts[k]
    print(f"  {alive} of {n} watchers alive at the end, {written} with hosts.toml naming the cache; "
          f"{sum(req_bins)} requests and {sum(conn_bins)} new TCP connections at the cache", flush=True)
    print("  second  requests  connections   (each # = 2 requests)")
    for k in range(size):
        print(f"  {k:4d}s  {req_bins[k]:8d}  {conn_bins[k]:11d}   {'#' * (req_bins[k] // 2)}")
    print("  per 10 s:   requests  connections")
    for k in range(0, size, 10):
        print(f"  {k:3d}-{min(k + 10, size):3d}s  {sum(req_bins[k:k + 10]):8d}  {sum(conn_bins[k:k + 10]):11d}")
    histogram("requests per second", req_bins, skip)
    histogram("new connections per second", conn_bins, skip)
    ticks, ns = c_end.ms_since(c_skip)
    span = c_end.t - c_skip.t
    whole_ticks, _ = c_end.ms_since(c0)
    steady = req_bins[skip:]
    result = {"n": n, "skip": skip, "req_mean": statistics.mean(steady) if steady else 0,
              "req_sd": statistics.pstdev(steady) if steady else 0, "req_max": max(steady) if steady else 0,
              "conn_mean": statistics.mean(conn_bins[skip:]) if steady else 0,
              "conn_max": max(conn_bins[skip:]) if steady else 0,
              "req_vm": (statistics.pvariance(steady) / statistics.mean(steady)) if steady and statistics.mean(steady) else 0,
              "per10": [sum(req_bins[k:k + 10]) for k in range(0, size, 10)],
              "cache_ticks": ticks / span, "cache_ns": ns / span}
    print(f"  cache CPU from {skip} s on: {ticks / span:.2f} ms/s (ticks), {ns / span:.2f} ms/s (schedstat) = "
          f"{ticks / span / n:.3f} ms/s per watcher (whole run {whole_ticks / (t_end - start):.2f} ms/s)", flush=True)
    return result


# --- a fleet's rates, replayed ----------------------------------------------------------------------------

def paced(rate, seconds, op, counts, key, errors):
    """op() at the instants of a Poisson process of `rate` per second for `seconds`; counts[key] += 1 each."""
    rng = random.Random(rate)
    t0 = time.time()
    at = 0.0
    while True:
        at += rng.expovariate(rate)
        if at >= seconds:
            return
        delay = t0 + at - time.time()
        if delay > 0:
            time.sleep(delay)
        try:
            op()
            counts[key] += 1
        except OSError as e:
            errors.append(str(e))


def at_scale(world, args, st):
    """The operations N nodes' watches send one cache, at their rates: each node's HTTP requests (GET
    /v2/ on a fresh connection, as curl sends them), its connection checks (half-open) and its held
    connection, with the per-mirror rates of the steady phase (1/30 requests and 0.45 checks a second
    when it did not run). Not the agent: what the cache does at those rates, since the cost per
    operation falls as the rate grows (the Go runtime's wake-ups are shared)."""
    if args.rates:
        req, checks = args.rates
        source = "the rates given with --rates"
    elif st:
        m = next(v for v in st["mirrors"].values() if v["how"] == "by address")
        req, checks = m["requests"], max(0.0, m["conns"] - m["requests"])
        source = "the steady phase's rates for the mirror named by address"
    else:
        req, checks, source = 1 / 30, 0.45, "the default schedule's rates (steady phase skipped)"
    out = []
    print(f"\n== at scale: the cache under N nodes' probe traffic, replayed for {args.scale_seconds:g} s each ({source}: "
          f"{req:.4f} requests/s and {checks:.3f} half-open checks/s per node, one held connection each)", flush=True)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for n in args.scale:
        if hard < n + 500:
            print(f"  {n:,} nodes: skipped, {n + 500} file descriptors needed and the limit is {hard}", flush=True)
            continue
        held, error = hold_open(CALIBRATION, n)
        if error:
            print(f"  {n:,} nodes: held only {len(held)} connections: {error}", flush=True)
        time.sleep(2)
        counts = {"get": 0, "check": 0}
        errors = []
        syn0 = syn_counts().get(CALIBRATION, 0)
        c0 = Cpu(world.cache.pid)
        threads = [threading.Thread(target=paced, args=(req * n, args.scale_seconds, lambda: fresh_get(CALIBRATION),
                                                        counts, "get", errors)),
                   threading.Thread(target=paced, args=(checks * n, args.scale_seconds, lambda: half_open(CALIBRATION),
                                                        counts, "check", errors))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.3)  # the last log lines
        c1 = Cpu(world.cache.pid)
        span = c1.t - c0.t
        lines, _, _, _ = world.log_lines(c0.t, c1.t)
        syns = syn_counts().get(CALIBRATION, 0) - syn0
        ticks, ns = c1.ms_since(c0)
        for conn in held:
            conn.close()
        r = {"n": n, "get": counts["get"] / span, "check": counts["check"] / span, "want_get": req * n,
             "want_check": checks * n, "held": len(held), "ms": ns / span, "ticks": ticks / span,
             "lines": lines / span, "syns": syns / span, "errors": len(errors)}
        out.append(r)
        print(f"  {n:,} nodes: {r['get']:.1f} requests/s (wanted {r['want_get']:.1f}), {r['check']:.0f} checks/s "
              f"(wanted {r['want_check']:.0f}), {r['held']:,} held, {r['syns']:.0f} SYNs/s; cache CPU {r['ms']:.1f} ms/s "
              f"(schedstat; {r['ticks']:.1f} by ticks) = {r['ms'] / 10:.1f}% of a core; {r['lines']:.1f} log lines/s"
              + (f"; {len(errors)} errors, first: {errors[0]}" if errors else ""), flush=True)
        time.sleep(2)
    return out


# --- the summary ----------------------------------------------------------------------------------------

def big(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.01 or x == 0:
        return f"{x:.3f}" if x < 1 else f"{x:.2f}"
    return f"{x:.2g}"


def summary(args, cal, st, fl, sc):
    print("\n== summary", flush=True)
    print(f"agent: {args.agent}", flush=True)
    if cal:
        print("\ncache (docker-registry 2.8, default logging) CPU per operation, idle subtracted:")
        print(f"  {'operation':55s} {'us (ticks)':>10s} {'us (sched)':>10s} {'lines':>6s} {'client ms':>9s}")
        for key, label, _ in OPS:
            c = cal[key]
            print(f"  {label:55s} {c['ticks'] * 1000:10.1f} {c['ns'] * 1000:10.1f} {c['lines']:6.2f} {c['client_ms']:9.3f}")
        h = cal["held"]
        print(f"  {'a connection held open, idle (per connection)':55s} {h['ns'] * 1000:10.2f} us/s, "
              f"{h['kb']:.1f} KB RSS ({h['n']} held)")
        print(f"  fresh - kept-alive = {(cal['fresh']['ns'] - cal['keepalive']['ns']) * 1000:.1f} us "
              f"(schedstat), against a bare connect+close {cal['connect']['ns'] * 1000:.1f} us")
    if st:
        m = st["mirrors"]
        span = st["span"]
        req = sum(v["requests"] for v in m.values())
        conns = sum(v["conns"] for v in m.values())
        held = sum(v["held"] for v in m.values())
        lookups = st["A"] + st["AAAA"]
        print(f"\nper node (one watch, {len(m)} mirrors on one cache), steady window {span:.0f} s:")
        cols = list(m)
        print(f"  {'':34s}" + "".join(f"{u + ' (' + m[u]['how'] + ')':>28s}" for u in cols) + f"{'node':>12s}")
        print(f"  {'HTTP requests/s':34s}" + "".join(f"{m[u]['requests']:28.3f}" for u in cols) + f"{req:12.3f}")
        print(f"  {'new TCP connections/s':34s}" + "".join(f"{m[u]['conns']:28.3f}" for u in cols) + f"{conns:12.3f}")
        print(f"  {'connections held at the cache':34s}" + "".join(f"{m[u]['held']:28.1f}" for u in cols) + f"{held:12.1f}")
        lpr = st["lines"] / req if req else 0
        print(f"  {'cache log lines/s':34s}" + "".join(f"{m[u]['requests'] * lpr:28.3f}" for u in cols)
              + f"{st['lines']:12.3f}")
        print(f"  {'cache CPU ms/s (ticks / schedstat)':34s}" + "".join(f"{'(one process)':>28s}" for u in cols)
              + f"{st['cache_ticks']:6.3f}/{st['cache_ns']:.3f}")
        print(f"  {'DNS lookups/s (A + AAAA)':34s}" + "".join(
            f"{(str(round(st['A'], 3)) + ' + ' + str(round(st['AAAA'], 3))) if m[u]['how'] == 'by Service name' else '-':>28s}"
            for u in cols) + f"{lookups:12.3f}")
        print(f"  watch: CPU {st['watch_cpu']:.3f} ms/s, RSS {st['rss1'] / 1024:.1f} MB (max {st['rss_max'] / 1024:.1f}), "
              f"{st['watch_lines']:.3f} log lines/s; dnsmasq CPU {st['dns_cpu']:.3f} ms/s; "
              f"{st['bytes']:.0f} bytes per cache log line, {lpr:.2f} lines per request")
        calibrated = None
        if cal:
            # Each new connection is taken to carry at most one request: requests on fresh connections
            # cost a fresh GET, the rest a kept-alive GET; connections that carry none are watch's
            # connection checks, half-open (the held connections' few reconnects are among them).
            fresh = min(req, conns)
            held_cost = max(0, cal["held"]["ns"])
            calibrated = (fresh * cal["fresh"]["ns"] + (req - fresh) * cal["keepalive"]["ns"]
                          + (conns - fresh) * max(0, cal["halfopen"]["ns"]) + held * held_cost)
            print(f"  cache CPU from the calibration: {fresh:.3f} req/s on fresh connections x "
                  f"{cal['fresh']['ns'] * 1000:.0f} us + {req - fresh:.3f} on kept-alive ones x "
                  f"{cal['keepalive']['ns'] * 1000:.0f} us + {conns - fresh:.3f} half-open checks/s x "
                  f"{cal['halfopen']['ns'] * 1000:.0f} us + {held:.1f} held x {held_cost * 1000:.2f} us/s = "
                  f"{calibrated:.3f} ms/s (measured {st['cache_ns']:.3f}; the calibration's operations run back to back)")
        print("\nprojection, linear in nodes (each mirror's cache sees its own row; 'all' = both caches):")
        print(f"  {'':46s}" + "".join(f"{f'{n:,} node' + ('s' if n > 1 else ''):>16s}" for n in NODES))
        rows = []
        for u in cols:
            rows.append((f"HTTP requests/s, {u} cache", m[u]["requests"]))
        rows.append(("HTTP requests/s, all", req))
        rows.append(("new TCP connections/s, all", conns))
        rows.append(("connections held open at the caches, all", held))
        rows.append(("cache log lines/s, all", st["lines"]))
        rows.append((f"cache log GB/day, all ({st['bytes']:.0f} B/line)", st["lines"] * st["bytes"] * 86400 / 1e9))
        rows.append(("cache CPU cores, all (measured)", st["cache_ns"] / 1000))
        if calibrated is not None:
            rows.append(("cache CPU cores, all (calibrated)", calibrated / 1000))
            rows.append(("cache RSS for held connections, MB", held * cal["held"]["kb"] / 1024))
        rows.append(("cluster DNS lookups/s (A + AAAA)", lookups))
        rows.append(("watch CPU cores, summed over the nodes", st["watch_cpu"] / 1000))
        for label, per_node in rows:
            print(f"  {label:46s}" + "".join(f"{big(per_node * n):>16s}" for n in NODES))
    if fl:
        print(f"\nfleet ({fl['n']} watchers, one mirror each, from {fl['skip']} s on): requests/s mean "
              f"{fl['req_mean']:.2f}, stdev {fl['req_sd']:.2f}, max {fl['req_max']}, variance/mean {fl['req_vm']:.2f}; "
              f"new connections/s mean {fl['conn_mean']:.2f}, max {fl['conn_max']}; per 10 s: "
              + " ".join(map(str, fl["per10"])) + f"; cache CPU {fl['cache_ns']:.2f} ms/s "
              f"({fl['cache_ns'] / fl['n']:.3f} per watcher)")
    if sc:
        print("\nat scale (the operations of N nodes replayed against the cache at their rates, measured):")
        for r in sc:
            print(f"  {r['n']:>7,} nodes: {r['get']:7.1f} requests/s, {r['check']:6.0f} half-open checks/s, {r['held']:,} held: "
                  f"cache CPU {r['ms'] / 10:5.1f}% of a core, {r['lines']:6.1f} log lines/s")
    print("\nmethod: requests from the cache's own log (its 'response completed' lines, by Host), connections "
          "from SYN counters in the namespace, lookups from dnsmasq's query log, CPU from /proc; the cache, "
          "dnsmasq and watch share 2 cores with this script.", flush=True)


def inside(args):
    ns = args.in_netns
    if os.stat("/proc/self/ns/net").st_ino != os.stat(f"/run/netns/{ns}").st_ino:
        raise SystemExit(f"refusing to run outside the network namespace {ns}")
    work = tempfile.mkdtemp(prefix="ccr-fleetcost-")
    os.chmod(work, 0o755)  # dnsmasq reads its hosts file as nobody
    world = World(work)
    cal = st = fl = sc = None
    try:
        world.counters()
        world.start_upstream()
        world.start_cache()
        world.start_dns()
        print(f"cache pid {world.cache.pid} on *:5000, dnsmasq pid {world.dns.pid} on {DNS}:53 "
              f"({SERVICE} -> {SERVICE_ADDRESS}); work dir {work}", flush=True)
        if "calibrate" not in args.skip:
            cal = calibrate(world, args)
        if "steady" not in args.skip:
            st = steady(world, args)
        if "fleet" not in args.skip:
            fl = fleet(world, args)
        if "scale" not in args.skip:
            sc = at_scale(world, args, st)
        summary(args, cal, st, fl, sc)
    finally:
        for p in world.procs:
            stop(p)
        if args.keep:
            print(f"work dir kept: {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main():
    args = parse_args()
    if args.in_netns:
        inside(args)
        return 0
    for path in (args.agent, REGISTRY, DNSMASQ, shutil.which("iptables"), shutil.which("ss")):
        if not path or not os.access(path, os.X_OK):
            raise SystemExit(f"missing {path}")
    print(f"agent: {args.agent}", flush=True)
    phases = [p for p in ("calibrate", "steady", "fleet", "scale") if p not in args.skip]
    print(f"phases: {', '.join(phases)}; steady {args.seconds:g} s after {args.warmup:g} s; {args.ops} ops per "
          f"calibration; fleet {args.fleet} watchers for {args.fleet_seconds:g} s", flush=True)
    return rerun_in_netns("ccr-fleetcost", ADDRESSES, __file__)


if __name__ == "__main__":
    sys.exit(main())
