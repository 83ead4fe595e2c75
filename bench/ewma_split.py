#!/usr/bin/env python3
"""ewma under load: a 4 ms node and a 14 ms node behind one route (type ewma, one level), N
concurrent clients for S seconds; prints the share of requests each node served.

usage: bench/ewma_split.py [build/portico] [--seconds 10] [--clients 8] [--workers 2]
"""
import argparse
import collections
import os
import sys
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from processes import stop_process  # noqa: E402
from upstream import TestUpstream  # noqa: E402
from yaml_gateway import start_gateway  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default=os.path.join(HERE, "..", "build", "portico"))
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    fast = TestUpstream(name="fast", delay_ms=4).start()
    slow = TestUpstream(name="slow", delay_ms=14).start()
    nodes = [{"host": "127.0.0.1", "port": u.port, "weight": 1} for u in (fast, slow)]
    gw, port = start_gateway(args.binary, {"routes": [
        {"id": "r", "uri": "/*", "upstream": {"type": "ewma", "nodes": nodes}}]}, args.workers)
    url = f"http://127.0.0.1:{port}/x"
    counts = collections.Counter()
    lock = threading.Lock()
    deadline = time.time() + args.seconds

    def client():
        s = requests.Session()
        local = collections.Counter()
        while time.time() < deadline:
            local[s.get(url, timeout=5).headers.get("X-Upstream", "error")] += 1
        with lock:
            counts.update(local)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop_process(gw)
    fast.stop()
    slow.stop()
    total = sum(counts.values())
    print(f"ewma, {args.clients} clients, {args.workers} workers, {args.seconds:.0f} s: "
          f"{total} requests; fast (4 ms) {100 * counts['fast'] / total:.1f}%, "
          f"slow (14 ms) {100 * counts['slow'] / total:.1f}%, errors {counts['error']}")


if __name__ == "__main__":
    main()
