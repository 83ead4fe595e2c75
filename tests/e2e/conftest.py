"""Fixtures for end-to-end tests: the real portico binary, real upstream servers on free
loopback ports, configs in temp dirs."""
import os
import signal
import socket
import subprocess
import time

import pytest
import yaml

from upstream import TestUpstream

PORTICO_BIN = os.environ.get("PORTICO_BIN", os.path.join(os.path.dirname(__file__), "../../build/portico"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"port {port} not listening after {timeout}s")


class Gateway:
    """A running portico process with its config files."""

    def __init__(self, tmp_path, routes, node=None, workers=1):
        self.dir = tmp_path
        self.port = free_port()
        self.config_path = tmp_path / "config.yaml"
        self.routes_path = tmp_path / "routes.yaml"
        self.log_path = tmp_path / "error.log"
        self.access_path = tmp_path / "access.log"
        cfg = {
            "node": {"listen": [f"127.0.0.1:{self.port}"], "workers": workers},
            "config": {"provider": "yaml", "file": "routes.yaml"},
            "log": {"access": str(self.access_path), "error": str(self.log_path), "level": "info"},
        }
        for k, v in (node or {}).items():
            cfg["node"][k] = v
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.write_routes(routes)
        self.proc = None

    def write_routes(self, routes):
        text = routes if isinstance(routes, str) else yaml.safe_dump(routes)
        tmp = self.routes_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.routes_path)

    def start(self):
        self.proc = subprocess.Popen([PORTICO_BIN, "start", "-c", str(self.config_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.proc.kill()
            raise RuntimeError("portico did not start: " + self.proc.stderr.read().decode())
        return self

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def error_log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_log(self, text, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.error_log():
                return True
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in error log:\n{self.error_log()}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


@pytest.fixture
def upstream():
    servers = []

    def make(**kw):
        s = TestUpstream(**kw).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def gateway(tmp_path):
    gws = []

    def make(routes, node=None, workers=1, start=True):
        d = tmp_path / f"gw{len(gws)}"
        d.mkdir()
        g = Gateway(d, routes, node, workers)
        gws.append(g)
        return g.start() if start else g

    yield make
    for g in gws:
        g.stop()


def route(uri, nodes, **kw):
    """A route dict with an inline upstream; nodes: list of (port, weight[, priority])."""
    ups = {"type": "roundrobin", "nodes": [
        {"host": "127.0.0.1", "port": n[0], "weight": n[1] if len(n) > 1 else 1,
         "priority": n[2] if len(n) > 2 else 0} for n in nodes]}
    ups.update(kw.pop("upstream", {}))
    r = {"id": kw.pop("id", uri.strip("/*").replace("/", "_").replace(":", "") or "root"),
         "uri": uri, "upstream": ups}
    r.update(kw)
    return r
