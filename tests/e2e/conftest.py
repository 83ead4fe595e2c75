"""Fixtures for end-to-end tests: the real portico binary, real upstream servers on free
loopback ports, configs in temp dirs."""
import copy
import itertools
import os
import socket
import subprocess
import time

import pytest
import requests
import yaml

from etcd_server import EtcdServer
from im_demo import ImDemoBackend
from processes import free_port, stop_process  # noqa: F401 (free_port is used by tests)
from upstream import TestUpstream

PORTICO_BIN = os.environ.get("PORTICO_BIN", os.path.join(os.path.dirname(__file__), "../../build/portico"))


def wait_port(port, timeout=10.0, proc=None):
    """Waits until something listens on the loopback port; fails early when `proc` exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"portico exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"port {port} not listening after {timeout}s")

ADMIN_KEY = "test-admin-key-e2e"  # the implementation requires keys of 16+ characters
VIEWER_KEY = "test-viewer-key-e2e"
DEFAULT_ADMIN_KEYS = [{"key": ADMIN_KEY, "role": "admin"}, {"key": VIEWER_KEY, "role": "viewer"}]
# The kinds of configuration objects, as in routes.yaml and under <prefix>/<kind>/<id> in etcd.
KINDS = ["routes", "services", "upstreams", "consumers", "ssls", "global_rules", "plugin_configs",
         "protos", "stream_routes"]


def wait_until(fn, timeout=5.0, interval=0.05):
    """Polls fn until it returns something truthy (returned) or timeout passes (returns the last
    value, falsy). Connection errors count as "not yet"."""
    deadline = time.time() + timeout
    value = None
    while True:
        try:
            value = fn()
        except (requests.RequestException, OSError, ValueError, yaml.YAMLError):
            value = None
        if value or time.time() >= deadline:
            return value
        time.sleep(interval)


def port_of(listen):
    return int(str(listen).rsplit(":", 1)[1])


class Gateway:
    """A running portico process with its config files.

    yaml mode (default): `routes` is written to routes.yaml.
    etcd mode (`etcd=` an EtcdServer or an endpoint URL): no routes file; config.etcd points at
    it (or at `endpoints` when given) with `prefix` (shared by every gateway of one test unless
    given) and `etcd_options` (timeout, startup_timeout, ...) added;
    `routes`, if given, is a {kind: [objects]} dict seeded into etcd before start.
    admin.listen and control.listen always get free ports; admin.keys are DEFAULT_ADMIN_KEYS
    unless the test passes its own `admin` section."""

    def __init__(self, tmp_path, routes, node=None, workers=1, admin=None, control=None, etcd=None,
                 prefix="/portico", etcd_options=None, endpoints=None):
        self.dir = tmp_path
        self.port = free_port()
        self.config_path = tmp_path / "config.yaml"
        self.routes_path = tmp_path / "routes.yaml"
        self.log_path = tmp_path / "error.log"
        self.access_path = tmp_path / "access.log"
        self.stdout_path = tmp_path / "stdout.txt"
        self.stderr_path = tmp_path / "stderr.txt"
        self.etcd = etcd if hasattr(etcd, "put_json") else None  # the EtcdServer, if any
        self.etcd_mode = etcd is not None
        self.prefix = prefix
        admin = copy.deepcopy({"keys": DEFAULT_ADMIN_KEYS} if admin is None else admin)
        admin.setdefault("listen", f"127.0.0.1:{free_port()}")
        control = dict(control or {})
        control.setdefault("listen", f"127.0.0.1:{free_port()}")
        self.admin_port, self.control_port = port_of(admin["listen"]), port_of(control["listen"])
        keys = [k.get("key") for k in admin.get("keys") or [] if k.get("role", "admin") == "admin"]
        self.admin_key = keys[0] if keys else None  # None: generated at start (see config())
        cfg = {
            "node": {"listen": [f"127.0.0.1:{self.port}"], "workers": workers},
            "config": {"provider": "yaml", "file": "routes.yaml"},
            "admin": admin,
            "control": control,
            "log": {"access": str(self.access_path), "error": str(self.log_path), "level": "info"},
        }
        for k, v in (node or {}).items():
            cfg["node"][k] = v
        if etcd is not None:
            if endpoints is None:
                endpoints = [etcd.url] if self.etcd is not None else [etcd]
            cfg["config"] = {"provider": "etcd",
                             "etcd": dict({"endpoints": endpoints, "prefix": prefix}, **(etcd_options or {}))}
        self.config_path.write_text(yaml.safe_dump(cfg))
        if etcd is None:
            self.write_routes(routes if routes is not None else {})
        elif routes:
            self.seed(routes)
        self.proc = None
        self.wrapper = []  # a command the binary runs under (e.g. unshare), set before start()

    def config(self):
        return yaml.safe_load(self.config_path.read_text())

    def write_routes(self, routes):
        text = routes if isinstance(routes, str) else yaml.safe_dump(routes)
        tmp = self.routes_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.routes_path)

    # ------------------------------------------------------------------ etcd helpers
    def key(self, kind, id):
        return f"{self.prefix}/{kind}/{id}"

    def seed(self, objects):
        """Writes {kind: [objects]} straight into etcd, as a hand-written config would be."""
        now = int(time.time())
        for kind, items in objects.items():
            for obj in items:
                obj = dict(obj)
                id = str(obj.get("id") or obj.get("username"))
                obj.setdefault("create_time", now)
                obj.setdefault("update_time", now)
                self.etcd.put_json(self.key(kind, id), obj)

    # ------------------------------------------------------------------ process
    def launch(self):
        """Starts the process without waiting for anything."""
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([*self.wrapper, PORTICO_BIN, "start", "-c", str(self.config_path)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        return self

    def start(self, timeout=10.0):
        """Starts and waits for the HTTP listener (in etcd mode it opens after the first full
        read of the prefix), then for the admin and control listeners, which open just after
        it: a test may talk to any of them at once."""
        self.launch()
        try:
            for port in (self.port, self.admin_port, self.control_port):
                self.wait_port(port, timeout)
        except (TimeoutError, RuntimeError) as e:
            self.stop(timeout=2)
            raise RuntimeError(f"portico did not start ({e}): {self.stderr()}\n{self.error_log()[-3000:]}")
        return self

    def restart(self):
        self.stop()
        return self.start()

    def wait_port(self, port, timeout=10.0):
        try:
            wait_port(port, timeout, self.proc)
        except RuntimeError as e:  # the process exited: say why
            raise RuntimeError(f"{e}\n{self.error_log()[-3000:]}") from None

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stdout(self):
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self):
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path, **kw):
        """A request through the gateway's HTTP listener (a new connection each time)."""
        kw.setdefault("timeout", 5)
        return requests.get(self.url(path), **kw)

    # ------------------------------------------------------------------ admin and control APIs
    def admin(self, method, path, json=None, key=ADMIN_KEY, params=None, data=None, headers=None,
              timeout=10):
        """A request to http://127.0.0.1:<admin port>/apisix/admin<path>; key=None sends none."""
        self.wait_port(self.admin_port, 5)
        h = {}
        if key is not None:
            h["X-API-KEY"] = key
        h.update(headers or {})
        # a new connection each time: the Admin API's keep-alive handling is not under test here
        return requests.request(method, f"http://127.0.0.1:{self.admin_port}/apisix/admin{path}",
                                json=json, data=data, params=params, headers=h, timeout=timeout)

    def control(self, path, timeout=5):
        self.wait_port(self.control_port, 5)
        return requests.get(f"http://127.0.0.1:{self.control_port}{path}", timeout=timeout)

    def health(self):
        return self.control("/v1/health").json()

    wait_until = staticmethod(wait_until)

    # ------------------------------------------------------------------ logs
    def error_log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.error_log():
                return True
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in error log:\n{self.error_log()}")

    def wait_log_line(self, *parts, timeout=5.0):
        """Waits for one error-log line containing every part; returns it."""
        deadline = time.time() + timeout
        while True:
            for line in self.error_log().splitlines():
                if all(p in line for p in parts):
                    return line
            if time.time() >= deadline:
                raise AssertionError(f"no error-log line with {parts!r}:\n{self.error_log()[-5000:]}")
            time.sleep(0.05)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        return stop_process(self.proc, timeout) if self.proc else None

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


_prefixes = itertools.count(1)


@pytest.fixture
def gateway(tmp_path):
    """make(routes, node=None, workers=1, start=True, admin=None, control=None, etcd=None,
    prefix=None, etcd_options=None, endpoints=None) -> Gateway. Every etcd-mode gateway of one
    test shares one prefix (unique to the test) unless `prefix` is given."""
    gws = []
    test_prefix = f"/portico-e2e-{os.getpid()}-{next(_prefixes)}"

    def make(routes=None, node=None, workers=1, start=True, admin=None, control=None, etcd=None,
             prefix=None, etcd_options=None, endpoints=None):
        d = tmp_path / f"gw{len(gws)}"
        d.mkdir()
        g = Gateway(d, routes, node, workers, admin=admin, control=control, etcd=etcd,
                    prefix=prefix or test_prefix, etcd_options=etcd_options, endpoints=endpoints)
        gws.append(g)
        return g.start() if start else g

    yield make
    for g in gws:
        g.stop()


@pytest.fixture
def backends():
    """start(name, **kw) -> a started ImDemoBackend (portico-im-demo); stopped at teardown
    unless the test stopped it already."""
    started = []

    def start(name, **kw):
        b = ImDemoBackend(name=name, **kw)
        started.append(b)
        return b
    yield start
    for b in started:
        if b.proc.poll() is None:
            b.stop()


@pytest.fixture
def etcd(tmp_path):
    """A started real etcd with its data in this test's temp dir; stopped at teardown."""
    d = tmp_path / "etcd"
    d.mkdir()
    server = EtcdServer(d).start()
    yield server
    server.stop()


def validate(tmp_path, doc):
    """`portico validate` of a config whose routes.yaml is `doc`: (exit code, stdout + stderr)."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "node": {"listen": ["127.0.0.1:1"]}, "config": {"provider": "yaml", "file": "routes.yaml"}}))
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(doc))
    p = subprocess.run([PORTICO_BIN, "validate", "-c", str(tmp_path / "config.yaml")],
                       capture_output=True, text=True, timeout=10)
    return p.returncode, p.stdout + p.stderr


def assert_plugin_errors(tmp_path, plugin, cases, **doc):
    """`portico validate` of one route per case, each with `plugin` set to the case's config:
    every case's field (under routes[i].plugins.) must be named. `doc`: more of routes.yaml."""
    ups = {"nodes": {"127.0.0.1:1": 1}}
    rc, out = validate(tmp_path, dict(doc, routes=[
        {"id": f"r{i}", "uri": f"/{i}", "upstream": ups, "plugins": {plugin: conf}}
        for i, (conf, _) in enumerate(cases)]))
    assert rc != 0
    for i, (_, want) in enumerate(cases):
        assert f"routes[{i}].plugins.{want}" in out, f"{want!r} not in:\n{out}"
    return out


def read_to_close(s):
    """Everything the peer sends until it closes (or the socket's timeout passes)."""
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
    return out


def raw(port, data, read_until_close=True, timeout=5):
    """Sends raw bytes and returns everything the gateway answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if not read_until_close:
            return s.recv(65536)
        return read_to_close(s)


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


def self_signed_cert(directory, cn="test.com"):
    """(cert_pem, key_pem) of a fresh self-signed certificate for cn, made by the openssl CLI."""
    key, cert = directory / f"{cn}.key", directory / f"{cn}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", f"/CN={cn}",
                    "-addext", f"subjectAltName=DNS:{cn}"], check=True, capture_output=True)
    return cert.read_text(), key.read_text()


def inline_upstream(*ports, **kw):
    """An APISIX upstream object with hash-form nodes {"127.0.0.1:port": 1}."""
    ups = {"type": "roundrobin", "nodes": {f"127.0.0.1:{p}": 1 for p in ports}}
    ups.update(kw)
    return ups


def served_by(gw, path, **kw):
    """The name of the TestUpstream that answered path through gw, or the status code when the
    answer did not come from one (e.g. 404 from the gateway)."""
    r = gw.get(path, **kw)
    if r.status_code == 200 and r.headers.get("X-Upstream"):
        return r.headers["X-Upstream"]
    return r.status_code
