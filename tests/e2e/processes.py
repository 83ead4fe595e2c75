"""Process and port helpers shared by the fixtures. Only processes the tests started are
signalled, by PID."""
import atexit
import os
import random
import signal
import socket
import subprocess
import tempfile
import time


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_given = set()  # ports this test process handed out: never twice, even once they are free again

# Ports handed out by every test process on this machine (ctest runs two at once): a port one
# process picked but has not bound yet looks free to the other (seen in CI as etcd failing
# with "address already in use"). A file per port, named by the port and holding the owner's
# PID, claims it; files of processes that are gone are taken over.
_CLAIMS = os.path.join(tempfile.gettempdir(), f"portico-test-ports-{os.getuid()}")
_claimed = []


def _claim(port):
    os.makedirs(_CLAIMS, exist_ok=True)
    path = os.path.join(_CLAIMS, str(port))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                with open(path) as f:
                    owner = int(f.read() or 0)
                if owner == os.getpid():
                    return False
                os.kill(owner, 0)  # alive: the port is theirs
                return False
            except ProcessLookupError:
                _unlink(path)  # the owner is gone
                continue
            except (OSError, ValueError):
                return False  # being written, or unreadable: leave it
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        _claimed.append(path)
        return True
    return False


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


@atexit.register
def _release_claims():
    for path in _claimed:
        _unlink(path)


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
            except OSError:
                continue
        if not _claim(port):
            continue
        _given.add(port)
        return port
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
