#!/usr/bin/env python3
"""Line failover under load (issue: upstream resilience). Two priority levels: a "dedicated" node
(priority 1) and a "public" node with 10 ms extra latency (priority 0). Clients send GETs in a
loop; at T_KILL the dedicated node dies (listener and connections closed), at T_BACK it returns
on the same port. Prints a timeline (per 0.5 s: requests, failures, share on the dedicated
line) and the figures: failed requests, time to move to the public line, time to move back.

With --hang the dedicated node does not die but hangs (accepts, reads, never answers): the cost is
counted in requests that waited for the read timeout (2 s) before going elsewhere.

usage: bench/line_failover.py [build/portico] [--seconds 25] [--clients 8] [--no-retries] [--hang]
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

T_KILL, T_BACK = 5.0, 15.0
CHECKS = {
    "active": {"type": "http", "http_path": "/health", "timeout": 0.5,
               "healthy": {"interval": 0.5, "successes": 2},
               "unhealthy": {"interval": 0.5, "tcp_failures": 2, "http_failures": 2,
                             "timeouts": 2}},
    "passive": {"unhealthy": {"tcp_failures": 1, "timeouts": 1}},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default=os.path.join(HERE, "..", "build", "portico"))
    ap.add_argument("--seconds", type=float, default=25)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--no-retries", action="store_true")
    ap.add_argument("--hang", action="store_true")
    args = ap.parse_args()

    dedicated = TestUpstream(name="dedicated").start()
    public = TestUpstream(name="public", delay_ms=10).start()
    upstream = {"nodes": [{"host": "127.0.0.1", "port": dedicated.port, "weight": 1, "priority": 1},
                          {"host": "127.0.0.1", "port": public.port, "weight": 1, "priority": 0}],
                "checks": CHECKS, "timeout": {"connect": 1, "read": 2}}
    if args.no_retries:
        upstream["retries"] = 0
    gw, port = start_gateway(args.binary, {"routes": [{"id": "im", "uri": "/*", "upstream": upstream}]})
    url = f"http://127.0.0.1:{port}/msg"

    samples = []  # (t, ok, upstream, seconds)
    lock = threading.Lock()
    start = time.time()
    stop = threading.Event()

    def client():
        s = requests.Session()
        while not stop.is_set():
            t = time.time() - start
            try:
                r = s.get(url, timeout=10)
                ok, who = r.status_code == 200, r.headers.get("X-Upstream", "-")
            except requests.RequestException:
                ok, who = False, "-"
            with lock:
                samples.append((t, ok, who, time.time() - start - t))

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    time.sleep(T_KILL)
    if args.hang:
        dedicated.hang = True
        time.sleep(T_BACK - T_KILL)
        dedicated.hang = False
    else:
        dedicated.stop()
        time.sleep(T_BACK - T_KILL)
        dedicated = TestUpstream(name="dedicated", port=dedicated.port).start()
    time.sleep(args.seconds - T_BACK)
    stop.set()
    for t in threads:
        t.join()
    dedicated.stop()
    public.stop()
    stop_process(gw)

    buckets = collections.defaultdict(lambda: [0, 0, 0])  # requests, failures, on dedicated
    for t, ok, who, _ in samples:
        b = buckets[int(t * 2)]
        b[0] += 1
        b[1] += not ok
        b[2] += who == "dedicated"
    print(f"timeline ({args.clients} clients, retries {'off' if args.no_retries else 'on'}; "
          f"dedicated {'hangs' if args.hang else 'killed'} at {T_KILL:.0f} s, back at {T_BACK:.0f} s):")
    print("    t(s)  requests  failed  on dedicated")
    for k in sorted(buckets):
        n, failed, ded = buckets[k]
        print(f"  {k / 2:6.1f}  {n:8d}  {failed:6d}  {100 * ded / n:11.0f}%")
    failed = sum(1 for _, ok, _, _ in samples if not ok)
    waited = sum(1 for _, _, _, d in samples if d >= 1.9)
    after_kill = [t for t, ok, who, _ in samples if T_KILL <= t < T_BACK and who == "dedicated"]
    moved = (max(after_kill) - T_KILL) if after_kill else 0.0
    back = [t for t, ok, who, _ in samples if t >= T_BACK and who == "dedicated"]
    print(f"requests {len(samples)}, failed {failed} ({100 * failed / len(samples):.3f}%), "
          f"waited a read timeout (>= 1.9 s) {waited}")
    print(f"last request on the dedicated line after the kill: +{moved:.2f} s "
          f"(all traffic on the public line from then on)")
    print(f"first request on the dedicated line after it returned: "
          f"+{(min(back) - T_BACK) if back else float('nan'):.2f} s "
          f"(target: healthy interval 0.5 s x 2 successes + 1 s = 2 s)")


if __name__ == "__main__":
    main()
