"""A real etcd (the /usr/bin/etcd 3.4 binary) for end-to-end tests: one member on free loopback
ports, its data dir in a temp dir, and small helpers over the v3 JSON gateway (keys and values
are base64 there). With tls=True it serves https with throwaway certificates (see pki.py), and
with client_cert_auth=True it also requires a client certificate signed by its CA. Processes are
only ever signalled by the PID this class started."""
import base64
import contextlib
import json
import os
import subprocess

import requests

import pki
from processes import free_port, stop_process, wait_ready

ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")


def _b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def _unb64(s):
    return base64.b64decode(s).decode()


def _prefix_end(prefix):
    """The range_end that selects every key starting with prefix (etcd's WithPrefix)."""
    b = bytearray(prefix.encode())
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


class EtcdServer:
    """tls=True: the client URL is https, with a CA (self.ca) made for this server, a server
    certificate for server_sans (self.server_cert) and a client certificate (self.client_cert),
    all pki.CertKey. client_cert_auth=True: etcd refuses clients without a certificate signed by
    self.ca. The peer URL stays plain http (one member, loopback). It always listens on
    127.0.0.1; `host` is the name in self.url (e.g. "localhost", for a certificate that only
    names localhost)."""

    def __init__(self, tmp_dir, name="portico-test", tls=False, client_cert_auth=False,
                 server_sans=("IP:127.0.0.1", "DNS:localhost"), host="127.0.0.1"):
        self.dir = tmp_dir
        self.host = host
        self.name = name
        self.data_dir = os.path.join(str(tmp_dir), "etcd-data")
        self.log_path = os.path.join(str(tmp_dir), "etcd.log")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc = None
        self.tls = tls or client_cert_auth
        self.client_cert_auth = client_cert_auth
        self.ca = self.server_cert = self.client_cert = None
        if self.tls:
            pki_dir = os.path.join(str(tmp_dir), "pki")
            self.ca = pki.make_ca(pki_dir, "etcd test CA")
            # etcd 3.4's JSON gateway dials etcd's own gRPC port with the server certificate as
            # its client certificate when client certificates are required: it needs both usages.
            self.server_cert = pki.issue(self.ca, pki_dir, "etcd-server", server_sans,
                                         usage="serverAuth,clientAuth")
            self.client_cert = pki.issue(self.ca, pki_dir, "etcd-client", usage="clientAuth")
        self.http = self._session()

    def _session(self):
        s = requests.Session()
        if self.tls:
            s.cert = (self.client_cert.cert, self.client_cert.key)
        return s

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.client_port}"

    @property
    def listen_url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=15.0):
        assert not self.running, "etcd already running"
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [ETCD_BIN,
                "--name", self.name,
                "--data-dir", self.data_dir,
                "--listen-client-urls", self.listen_url,
                "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{self.name}={peer}",
                "--initial-cluster-state", "new",
                "--initial-cluster-token", "portico-e2e",
                "--heartbeat-interval", "20", "--election-timeout", "200",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"]
        if self.tls:
            args += ["--cert-file", self.server_cert.cert, "--key-file", self.server_cert.key]
        if self.client_cert_auth:
            args += ["--client-cert-auth", "--trusted-ca-file", self.ca.cert]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        probe = {"key": _b64("health-probe")}
        wait_ready(self.proc, lambda: self._post("/v3/kv/range", probe, timeout=0.5) is not None,
                   "etcd", self.log_tail, timeout, interval=0.05,
                   errors=(requests.RequestException, ValueError, RuntimeError))
        return self

    def stop(self, timeout=10.0):
        """SIGTERM to the process we started, then wait (SIGKILL if it does not exit)."""
        if self.proc is None:
            return None
        self.http.close()
        return stop_process(self.proc, timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.http.close()

    def restart(self):
        """Stops and starts again on the same ports and the same data dir."""
        self.stop()
        return self.start()

    @contextlib.contextmanager
    def offline(self):
        """Hides this etcd from its clients while keeping it usable from the test: it is
        restarted (same data dir) on a private client port for the body of the with-block,
        then restarted on its usual port. Clients see it down for the whole block."""
        usual = self.client_port
        self.stop()
        self.client_port = free_port()
        try:
            self.start()
            yield self
        finally:
            self.stop()
            self.client_port = usual
        self.start()

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ auth
    def enable_auth(self, user, password, prefix):
        """Turns on etcd authentication: a root user (used by these helpers from now on) and
        `user` with read-write access to keys under prefix only."""
        self.root_password = "root-" + base64.b16encode(os.urandom(8)).decode()
        calls = [("/v3/auth/user/add", {"name": "root", "password": self.root_password}),
                 ("/v3/auth/role/add", {"name": "root"}),
                 ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                 ("/v3/auth/user/add", {"name": user, "password": password}),
                 ("/v3/auth/role/add", {"name": user}),
                 ("/v3/auth/role/grant", {"name": user, "perm": {
                     "permType": "READWRITE", "key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}}),
                 ("/v3/auth/user/grant", {"user": user, "role": user}),
                 ("/v3/auth/enable", {})]
        for path, body in calls:
            self._post(path, body)
        self.token = None
        self._authenticate()

    def _authenticate(self):
        out = self._post("/v3/auth/authenticate", {"name": "root", "password": self.root_password},
                         authenticate=False)
        self.token = out["token"]

    # ------------------------------------------------------------------ v3 JSON gateway
    root_password = None
    token = None

    def _post(self, path, body, timeout=5.0, authenticate=True):
        for attempt in (1, 2):
            headers = {"Authorization": self.token} if self.token and authenticate else {}
            # verify per request: REQUESTS_CA_BUNDLE in the environment overrides Session.verify
            r = self.http.post(self.url + path, data=json.dumps(body), headers=headers, timeout=timeout,
                               verify=self.ca.cert if self.tls else True)
            if (r.status_code != 200 and attempt == 1 and authenticate and self.root_password
                    and "token" in r.text):  # tokens do not survive a restart: log in again
                self._authenticate()
                continue
            break
        if r.status_code != 200:
            raise RuntimeError(f"etcd {path} -> {r.status_code}: {r.text}")
        return r.json()

    def put(self, key, value):
        """Stores value (str or bytes) at key; returns the new revision."""
        out = self._post("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(out["header"]["revision"])

    def put_json(self, key, obj):
        return self.put(key, json.dumps(obj))

    def get(self, key):
        out = self._post("/v3/kv/range", {"key": _b64(key)})
        kvs = out.get("kvs") or []
        return _unb64(kvs[0].get("value", "")) if kvs else None

    def version(self, key):
        """How many times key was written since it was created (0: absent)."""
        out = self._post("/v3/kv/range", {"key": _b64(key)})
        kvs = out.get("kvs") or []
        return int(kvs[0].get("version", 0)) if kvs else 0

    def get_json(self, key):
        v = self.get(key)
        return None if v is None else json.loads(v)

    def get_prefix(self, prefix):
        """{key: value} for every key under prefix, in key order."""
        out = self._post("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))})
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in out.get("kvs") or []}

    def delete(self, key):
        """Deletes key; returns how many keys were deleted (0 or 1)."""
        out = self._post("/v3/kv/deleterange", {"key": _b64(key)})
        return int(out.get("deleted", 0))

    def delete_prefix(self, prefix):
        out = self._post("/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))})
        return int(out.get("deleted", 0))

    def revision(self):
        out = self._post("/v3/kv/range", {"key": _b64("revision-probe"), "count_only": True})
        return int(out["header"]["revision"])

    def compact(self, revision):
        """Compacts the key-value history up to revision (physically, i.e. waits for it)."""
        self._post("/v3/kv/compaction", {"revision": int(revision), "physical": True})
