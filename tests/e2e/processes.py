"""Process helpers shared by the fixtures. Only processes the tests started are signalled, by PID."""
import signal
import subprocess


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
