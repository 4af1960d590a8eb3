"""What the benchmark scripts share: waiting, stopping what they started, and summing figures up."""
import os, signal, socket, statistics, struct, subprocess, sys, time


def wait_for(predicate, timeout, step=0.01, what="a condition"):
    """Polls predicate every step seconds; returns the time.time() at which it held, or raises
    RuntimeError naming what was waited for once timeout seconds have passed."""
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return time.time()
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def stop(proc):
    """SIGTERM, then SIGKILL after 10 s; nothing for a process that is gone (or None)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def connects(addr, port, timeout=0.5):
    """True when a TCP connection to addr:port is accepted."""
    try:
        socket.create_connection((addr, port), timeout).close()
        return True
    except OSError:
        return False


def p95(values):
    """The 95th percentile, nearest rank."""
    values = sorted(values)
    return values[max(0, -(-len(values) * 95 // 100) - 1)]


def fmt(values):
    """n, p50, p95 (nearest rank) and max, in seconds."""
    values = sorted(values)
    return f"n={len(values)} p50={statistics.median(values):.2f}s p95={p95(values):.2f}s max={values[-1]:.2f}s"


def a_records(name, server, port=53):
    """The A records the DNS server at server:port gives for name (one UDP query), or None without an
    answer."""
    qid = os.getpid() & 0xFFFF
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        try:
            s.connect((server, port))
            s.send(query)
            msg = s.recv(4096)
        except OSError:
            return None
    if len(msg) < 12 or struct.unpack(">H", msg[:2])[0] != qid:
        return None
    i, found = 12 + len(qname) + 4, []
    for _ in range(struct.unpack(">H", msg[6:8])[0]):
        while msg[i] != 0 and msg[i] & 0xC0 != 0xC0:
            i += msg[i] + 1
        i += 2 if msg[i] & 0xC0 == 0xC0 else 1
        rtype, _, _, length = struct.unpack(">HHIH", msg[i:i + 10])
        i += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(msg[i:i + 4]))
        i += length
    return found


def rerun_in_netns(prefix, addresses, script):
    """Runs `script` again with this process's arguments plus --in-netns NS, inside a network
    namespace NS made for it (loopback up, `addresses` on it) and deleted after, with whatever the run
    left there killed; returns the run's exit code."""
    ns = f"{prefix}-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        for addr in addresses:
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{addr}/8", "dev", "lo"], check=True)
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(script),
                               *sys.argv[1:], "--in-netns", ns]).returncode
    finally:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in out.split():
            try:
                os.kill(int(pid), signal.SIGKILL)  # left by a killed inner run: ours, inside our namespace
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns])
