"""A real Redis (Debian's /usr/bin/redis-server 7, or $REDIS_SERVER) for end-to-end tests: one
server on a free loopback port, its files in a temp dir, no persistence, optional requirepass.
stop() and start() again keep the port, for "Redis down" tests; restarted, it is empty. A tiny
RESP client (command()) lets tests look at the keys. Processes are only ever signalled by the
PID this class started."""
import os
import socket
import subprocess
import time

from processes import free_port, stop_process, wait_ready

REDIS_BIN = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")
REDIS_CLI = os.environ.get("REDIS_CLI", "/usr/bin/redis-cli")


class RedisError(Exception):
    """An error reply (-ERR ...)."""


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError(f"bad RESP line {line!r}")


class RedisServer:
    """requirepass: the password clients must send (AUTH). host is always 127.0.0.1."""

    def __init__(self, tmp_dir, requirepass=None, extra_args=(), tls=None):
        """tls: (ca, leaf) certificates (pki.CertKey): TLS is served on self.tls_port too (no
        client certificate asked), beside the plain port command() uses."""
        self.dir = str(tmp_dir)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.requirepass = requirepass
        self.extra_args = list(extra_args)
        self.tls_port = None
        if tls:
            ca, leaf = tls
            self.tls_port = free_port()
            self.extra_args += ["--tls-port", str(self.tls_port), "--tls-cert-file", leaf.cert,
                                "--tls-key-file", leaf.key, "--tls-ca-cert-file", ca.cert,
                                "--tls-auth-clients", "no"]
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        """Starts on self.port (the same port after a stop) and waits until it answers."""
        assert not self.running, "redis already running"
        args = [REDIS_BIN,
                "--port", str(self.port),
                "--bind", self.host,
                "--save", "",
                "--appendonly", "no",
                "--dir", self.dir,
                "--logfile", self.log_path]
        if self.requirepass:
            args += ["--requirepass", self.requirepass, "--masterauth", self.requirepass]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_ready(self.proc, lambda: self.command("PING") == "PONG", "redis-server",
                   self.log_tail, timeout, errors=(OSError, ConnectionError, RedisError))
        return self

    def stop(self, timeout=10.0):
        """SIGTERM to the process we started, then wait (SIGKILL if it does not exit)."""
        if self.proc is None:
            return None
        return stop_process(self.proc, timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        """Stops and starts again on the same port (empty: nothing is persisted)."""
        self.stop()
        return self.start()

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ commands
    def command(self, *args, db=0, timeout=2.0):
        """One command on a fresh connection (AUTH and SELECT first when needed); returns the
        reply (str, int, None or list) or raises RedisError for an error reply."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            prelude = []
            if self.requirepass:
                prelude.append(["AUTH", self.requirepass])
            if db:
                prelude.append(["SELECT", db])
            s.sendall(b"".join(_encode(p) for p in prelude + [list(args)]))
            reader = _Reader(s)
            for _ in prelude:
                reader.reply()
            return reader.reply()

    def commands(self, *commands):
        """Several commands on one connection (ASKING then a command); the last one's reply."""
        with socket.create_connection((self.host, self.port), timeout=2.0) as s:
            prelude = [["AUTH", self.requirepass]] if self.requirepass else []
            s.sendall(b"".join(_encode(list(c)) for c in prelude + list(commands)))
            reader = _Reader(s)
            for _ in prelude + list(commands)[:-1]:
                reader.reply()
            return reader.reply()

    def keys(self, pattern="*", db=0):
        return sorted(self.command("KEYS", pattern, db=db))

    def get(self, key, db=0):
        return self.command("GET", key, db=db)

    def flushall(self):
        return self.command("FLUSHALL")


class RedisCluster:
    """A real three-master Redis Cluster (no replicas): each node a RedisServer in cluster mode
    with its own directory and cluster bus port, joined by `redis-cli --cluster create`. Helpers
    find a key's node and move a slot between masters (a finished move: MOVED; a half-finished
    one: ASK)."""

    def __init__(self, tmp_dir, masters=3, requirepass=None, tls=None):
        """tls: (ca, leaf) as RedisServer's (the leaf for both usages: the cluster bus is TLS
        too); clients then reach the nodes on tls_addresses, and a TLS client's CLUSTER SLOTS
        names the TLS ports (a plain one's, the plain ports the helpers use)."""
        self.nodes = []
        for i in range(masters):
            d = os.path.join(str(tmp_dir), f"node{i}")
            os.makedirs(d, exist_ok=True)
            self.nodes.append(RedisServer(d, requirepass, [
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--cluster-port", str(free_port())]
                + (["--tls-cluster", "yes"] if tls else []), tls=tls))
        self.requirepass = requirepass
        self.tls = tls

    @property
    def addresses(self):
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    @property
    def tls_addresses(self):
        return [f"127.0.0.1:{n.tls_port}" for n in self.nodes]

    def start(self, timeout=30.0):
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # (no node left running when the cluster could not be made)
            raise

    def _start(self, timeout):
        for n in self.nodes:
            n.start()
        tls = ["--tls", "--cacert", self.tls[0].cert] if self.tls else []
        addresses = self.tls_addresses if self.tls else self.addresses
        args = [REDIS_CLI, *tls, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                "--cluster-yes"]
        if self.requirepass:
            args += ["-a", self.requirepass, "--no-auth-warning"]
        subprocess.run(args, check=True, capture_output=True, timeout=timeout)
        deadline = time.time() + timeout
        while not all(self._ready(n) for n in self.nodes):
            if time.time() > deadline:
                raise RuntimeError("redis cluster did not become ready")
            time.sleep(0.1)
        return self

    def _ready(self, node):
        lines = node.command("CLUSTER", "INFO").split("\r\n")
        return "cluster_state:ok" in lines and f"cluster_known_nodes:{len(self.nodes)}" in lines

    def stop(self):
        for n in self.nodes:
            n.stop()

    def node_id(self, node):
        return node.command("CLUSTER", "MYID")

    def slot_of(self, key):
        return self.nodes[0].command("CLUSTER", "KEYSLOT", key)

    def owner(self, slot):
        """The node serving `slot` now."""
        for start, end, master, *_ in self.nodes[0].command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == master[1])
        raise KeyError(slot)

    def begin_move(self, slot, dst):
        """Marks `slot` as moving from its owner to `dst` (the source answers ASK for keys it
        does not hold)."""
        src = self.owner(slot)
        dst.command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(src))
        src.command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(dst))
        return src

    def finish_move(self, slot, src, dst):
        """Moves the slot's keys from `src` to `dst` and gives `dst` the slot on every master (a
        client with the old map then gets MOVED)."""
        while True:
            keys = src.command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            auth = ["AUTH", self.requirepass] if self.requirepass else []
            src.command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, *auth, "KEYS", *keys)
        for n in self.nodes:
            n.command("CLUSTER", "SETSLOT", slot, "NODE", self.node_id(dst))

    def move(self, slot, dst):
        src = self.begin_move(slot, dst)
        self.finish_move(slot, src, dst)
