#!/usr/bin/env python3
"""Config-plane figures (issue: etcd, Admin API), all on loopback with a real etcd:

1. propagation: two Portico nodes on one etcd; 200 route PUTs through either node's Admin API;
   for each, the time until the route serves on BOTH nodes (polled every ~1 ms).
2. scale: 50,000 routes written into etcd; time from starting a node to serving them; then
   proxied-request latency (wrk, saturating and at light load) quiet, and while routes change
   10 times a second (straight into etcd, and through the Admin API).

usage: bench/config_plane.py [build/portico] [--routes 50000] [--changes 200] [--seconds 10]
                             [--rounds 3] [--skip-propagation] [--skip-scale]
"""
import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from etcd_server import EtcdServer  # noqa: E402
from processes import stop_process  # noqa: E402

KEY = "bench-admin-key-0123456789"


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(work, port, cpu):
    conf = os.path.join(work, "up.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; master_process off; error_log {work}/up.log;
pid {work}/up.pid; events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "hello"; }} }} }}""")
    return subprocess.Popen(["taskset", "-c", cpu, "nginx", "-p", work, "-c", conf])


class Node:
    def __init__(self, binary, work, name, etcd, prefix, workers=1, cpu=None):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.port, self.admin_port, self.control_port = free_port(), free_port(), free_port()
        cfg = {"node": {"listen": [f"127.0.0.1:{self.port}"], "workers": workers},
               "admin": {"listen": f"127.0.0.1:{self.admin_port}", "keys": [{"key": KEY, "role": "admin"}]},
               "control": {"listen": f"127.0.0.1:{self.control_port}"},
               "config": {"provider": "etcd", "etcd": {"endpoints": [etcd.url], "prefix": prefix,
                                                       "startup_timeout": "60s"}},
               "log": {"access": "off", "error": os.path.join(self.dir, "error.log")}}
        self.config = os.path.join(self.dir, "config.yaml")
        with open(self.config, "w") as f:
            yaml.safe_dump(cfg, f)
        cmd = [binary, "start", "-c", self.config]
        if cpu is not None:
            cmd = ["taskset", "-c", cpu] + cmd
        self.started = time.time()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        self.session = requests.Session()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def status(self, path):
        try:
            return self.session.get(self.url(path), timeout=2).status_code
        except requests.RequestException:
            return None

    def admin(self, method, path, body=None):
        return self.session.request(method, f"http://127.0.0.1:{self.admin_port}/apisix/admin{path}",
                                    json=body, headers={"X-API-KEY": KEY}, timeout=10)

    def log(self):
        with open(os.path.join(self.dir, "error.log")) as f:
            return f.read()

    def stop(self):
        stop_process(self.proc)


def wait_for(fn, timeout, interval=0.001):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(interval)
    return False


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def propagation(binary, work, etcd, upstream_port, changes):
    prefix = "/bench-propagation"
    a = Node(binary, work, "a", etcd, prefix)
    b = Node(binary, work, "b", etcd, prefix)
    try:
        for n in (a, b):
            assert wait_for(lambda: n.status("/none") == 404, 30), "node did not start"
        up = {"nodes": {f"127.0.0.1:{upstream_port}": 1}}
        assert a.admin("PUT", "/upstreams/bench", up).status_code in (200, 201)
        times = []
        for i in range(changes):
            writer = a if i % 2 == 0 else b
            path = f"/p{i}"
            t0 = time.perf_counter()
            r = writer.admin("PUT", f"/routes/p{i}", {"uri": path, "upstream_id": "bench"})
            assert r.status_code == 201, r.text
            ok = wait_for(lambda: a.status(path) == 200 and b.status(path) == 200, 10)
            assert ok, f"route {path} not served on both nodes"
            times.append((time.perf_counter() - t0) * 1000)
        print(f"propagation over {changes} PUTs (alternating nodes), until served on both nodes:")
        print(f"  p50 {pct(times, 50):.1f} ms  p99 {pct(times, 99):.1f} ms  max {max(times):.1f} ms"
              f"  (includes the PUT itself and ~1 ms polling)")
        return pct(times, 99)
    finally:
        a.stop()
        b.stop()


def seed_routes(etcd, prefix, count, upstream_port):
    """Writes the routes in transactions of 128 puts (etcd's default limit per txn)."""
    def put(key, value):
        return {"request_put": {"key": base64.b64encode(key.encode()).decode(),
                                "value": base64.b64encode(json.dumps(value).encode()).decode()}}
    ops = [put(f"{prefix}/upstreams/bench", {"id": "bench", "nodes": {f"127.0.0.1:{upstream_port}": 1},
                                             "keepalive_pool": {"size": 64, "requests": 1000000}})]
    for i in range(count - 1):
        kind = i % 4
        if kind == 0:
            r = {"uri": f"/svc{i}/items"}
        elif kind == 1:
            r = {"uri": f"/api/v{i}/*"}
        elif kind == 2:
            r = {"uri": f"/api/v1/users/:id/p{i}"}
        else:
            r = {"uri": "/*", "host": f"h{i}.example.com"}
        ops.append(put(f"{prefix}/routes/r{i}", dict(r, id=f"r{i}", upstream_id="bench")))
    ops.append(put(f"{prefix}/routes/bench", {"id": "bench", "uri": "/api/v1/users/:id/profile",
                                              "upstream_id": "bench"}))
    s = requests.Session()
    for i in range(0, len(ops), 128):
        r = s.post(f"{etcd.url}/v3/kv/txn", json={"success": ops[i:i + 128]}, timeout=30)
        r.raise_for_status()


# Light load as the anchors' LAT suite: 10 connections, each waiting a random 0..10 ms between
# requests (~2k req/s): latency not dominated by queueing behind a saturated worker.
LIGHT_LUA = "function delay() return math.random(0, 10) end\n"


def wrk(port, seconds, cpu, light=False):
    cmd = ["taskset", "-c", cpu, "wrk", "-t1", "-c10" if light else "-c20", f"-d{seconds}s", "--latency"]
    if light:
        script = os.path.join(tempfile.gettempdir(), "portico-cfgplane-light.lua")
        with open(script, "w") as f:
            f.write(LIGHT_LUA)
        cmd += ["-s", script]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/api/v1/users/12345/profile?lang=en"],
                         capture_output=True, text=True, check=True).stdout
    fig = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec"):
            fig["rps"] = float(parts[1])
        elif parts[:1] == ["50%"]:
            fig["p50"] = parts[1]
        elif parts[:1] == ["99%"]:
            fig["p99"] = parts[1]
    return fig


def to_ms(text):
    for unit, mult in (("us", 0.001), ("ms", 1), ("s", 1000)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * mult
    return float(text)


def scale(binary, work, etcd, upstream_port, routes, seconds, rounds):
    prefix = "/bench-scale"
    t0 = time.time()
    seed_routes(etcd, prefix, routes, upstream_port)
    print(f"\n{routes} routes written into etcd in {time.time() - t0:.1f} s")
    # The node (worker and its config threads) alone on cpu0; etcd, this script's writer, wrk
    # and the upstream on cpu1: in production etcd and clients are other machines, and this
    # measures what applying changes costs the node itself.
    node = Node(binary, work, "c", etcd, prefix, workers=1, cpu="0")
    subprocess.run(["taskset", "-a", "-p", "-c", "1", str(etcd.proc.pid)], check=True,
                   stdout=subprocess.DEVNULL)
    os.sched_setaffinity(0, {1})
    try:
        ok = wait_for(lambda: node.status("/api/v1/users/1/profile") == 200, 120, 0.01)
        assert ok, "node did not serve"
        print(f"node start -> serving {routes} routes from etcd: {time.time() - node.started:.2f} s")
        applied = [0]

        def with_churn(put, light=False):
            stop = threading.Event()

            def churn():
                i = 0
                while not stop.is_set():
                    t = time.time()
                    n = (i * 7919) % ((routes - 1) // 4) * 4  # an exact-uri route: r0, r4, ...
                    body = {"uri": f"/svc{n}/items{i % 2 or ''}", "upstream_id": "bench"}
                    put(n, body)
                    i += 1
                    time.sleep(max(0, 0.1 - (time.time() - t)))

            changer = threading.Thread(target=churn)
            changer.start()
            fig = wrk(node.port, seconds, "1", light)
            stop.set()
            changer.join()
            return fig

        # Control: the same writes at the same rate, straight into etcd under a prefix the node
        # does not watch: what etcd, the client and the machine cost without Portico's work.
        s = requests.Session()

        def put_raw(where):
            def put(n, body):
                key = base64.b64encode(f"{where}/routes/r{n}".encode()).decode()
                value = base64.b64encode(json.dumps(dict(body, id=f"r{n}")).encode()).decode()
                s.post(f"{etcd.url}/v3/kv/put", json={"key": key, "value": value}, timeout=10)
            return put

        def put_admin(n, body):
            if node.admin("PUT", f"/routes/r{n}", body).status_code == 200:
                applied[0] += 1

        # Interleaved rounds, medians reported: this VM's p99 moves a lot between runs. Each phase
        # at saturation (wrk -c20, closed loop) and at light load.
        runs = {f"{k}{l}": [] for k in ("quiet", "control", "watched", "busy") for l in ("", "_light")}
        for _ in range(rounds):
            for light, suffix in ((False, ""), (True, "_light")):
                runs["quiet" + suffix].append(wrk(node.port, seconds, "1", light))
                runs["control" + suffix].append(with_churn(put_raw("/elsewhere"), light))
                runs["watched" + suffix].append(with_churn(put_raw(prefix), light))
                runs["busy" + suffix].append(with_churn(put_admin, light))

        def median_fig(figs):
            p99s = sorted(to_ms(f["p99"]) for f in figs)
            p50s = sorted(to_ms(f["p50"]) for f in figs)
            rps = sorted(f["rps"] for f in figs)
            return {"rps": rps[len(rps) // 2], "p50": f"{p50s[len(p50s) // 2]:.2f}ms",
                    "p99": f"{p99s[len(p99s) // 2]:.2f}ms", "all_p99": [f["p99"] for f in figs]}

        light = {k: median_fig(runs[k + "_light"]) for k in ("quiet", "control", "watched", "busy")}
        quiet = median_fig(runs["quiet"])
        control = median_fig(runs["control"])
        watched = median_fig(runs["watched"])
        busy = median_fig(runs["busy"])
        time.sleep(1)
        compile_ms = [int(line.split("compiled in ")[1].split(" ")[0])
                      for line in node.log().splitlines() if "(etcd change)" in line and "compiled in" in line]
        stalls = [int(line.split("stall meanwhile ")[1].split(" ")[0])
                  for line in node.log().splitlines() if "(etcd change)" in line and "stall meanwhile" in line]
        print(f"wrk 1 thread 20 connections, {rounds} interleaved rounds of {seconds} s, one worker"
              f" (medians; every p99: quiet {quiet['all_p99']}, control {control['all_p99']},"
              f" etcd-direct {watched['all_p99']}, admin {busy['all_p99']}):")
        print(f"  quiet:               {quiet['rps']:.0f} req/s  p50 {quiet['p50']}  p99 {quiet['p99']}")
        print(f"  10 etcd writes/s elsewhere (control): {control['rps']:.0f} req/s  p50 {control['p50']}"
              f"  p99 {control['p99']}")
        print(f"  10 changes/s written straight into etcd (watch + compile, no Admin API):"
              f" {watched['rps']:.0f} req/s  p50 {watched['p50']}  p99 {watched['p99']}")
        print(f"  10 changes/s through the Admin API: {busy['rps']:.0f} req/s  p50 {busy['p50']}  p99 {busy['p99']}"
              f"  ({applied[0]} PUTs, {len(compile_ms)} compiles)")
        print(f"  p99 ratio changes/quiet: {to_ms(busy['p99']) / to_ms(quiet['p99']):.2f};"
              f" changes/control (same etcd load, Portico's own share): "
              f"{to_ms(busy['p99']) / to_ms(control['p99']):.2f}")
        print(f"light load (wrk -c10, random 0..10 ms between requests), medians (every p99: quiet"
              f" {light['quiet']['all_p99']}, etcd-direct {light['watched']['all_p99']},"
              f" admin {light['busy']['all_p99']}):")
        for k, what in (("quiet", "quiet"), ("control", "control"), ("watched", "etcd-direct"),
                        ("busy", "Admin API")):
            f = light[k]
            print(f"  {what:12} {f['rps']:.0f} req/s  p50 {f['p50']}  p99 {f['p99']}"
                  f"  ({to_ms(f['p99']) / to_ms(light['quiet']['p99']):.2f}x quiet)")
        # Each round's phases ran back to back: per-round ratios cancel the machine's slow drift.
        def paired(k, suffix=""):
            r = sorted(to_ms(c["p99"]) / to_ms(q["p99"])
                       for c, q in zip(runs[k + suffix], runs["quiet" + suffix]))
            return f"{statistics.median(r):.2f} ({', '.join(f'{x:.2f}' for x in r)})"
        for suffix, what in (("", "saturating"), ("_light", "light load")):
            print(f"  p99 / quiet p99 of the same round, median ({what}): control {paired('control', suffix)},"
                  f" etcd-direct {paired('watched', suffix)}, Admin API {paired('busy', suffix)}")
        if compile_ms:
            print(f"  compile per change: median {statistics.median(compile_ms):.0f} ms, max {max(compile_ms)} ms;"
                  f" longest worker stall {max(stalls)} ms")
    finally:
        node.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default=os.path.join(HERE, "..", "build", "portico"))
    ap.add_argument("--routes", type=int, default=50000)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-propagation", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    with tempfile.TemporaryDirectory(prefix="portico-cfgplane.") as work:
        etcd = EtcdServer(work)
        etcd.start()
        upstream_port = free_port()
        nginx = start_nginx(work, upstream_port, "1")
        try:
            if not args.skip_propagation:
                propagation(binary, work, etcd, upstream_port, args.changes)
            if not args.skip_scale:
                scale(binary, work, etcd, upstream_port, args.routes, args.seconds, args.rounds)
        finally:
            stop_process(nginx)
            etcd.stop()


if __name__ == "__main__":
    main()
