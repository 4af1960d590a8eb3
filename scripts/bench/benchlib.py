"""What the benchmark scripts share: waiting, stopping what they started, and summing figures up."""
import signal, socket, statistics, subprocess, time


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
