"""Process and port helpers shared by the fixtures. Only processes the tests started are
signalled, by PID."""
import random
import signal
import socket
import subprocess
import time


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_given = set()  # ports this test process handed out: never twice, even once they are free again


def free_port():
    """A free loopback port below the kernel's ephemeral range: a port from bind(0) can be taken
    as the local port of some outgoing connection before the server under test binds it (seen
    in CI as a gateway failing to start)."""
    high = _ephemeral_low()
    low = max(1024, high - 12000)
    for _ in range(500):
        port = random.randrange(low, high)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                _given.add(port)
                return port
            except OSError:
                continue
    raise RuntimeError("no free loopback port")


def wait_ready(proc, probe, name, log_tail, timeout, interval=0.02, errors=(OSError,)):
    """Polls probe() until it is truthy; raises with the server's log when the process exits
    or the timeout passes (the process is then killed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_tail()}")
        try:
            if probe():
                return
        except errors:
            pass
        time.sleep(interval)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{name} not ready after {timeout}s:\n{log_tail()}")


def stop_process(proc, timeout=15):
    """SIGTERM to a process we started, then wait (SIGKILL if it does not exit)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
