#!/usr/bin/env python3
"""Writes a routes.yaml with N routes of mixed kinds (exact, prefix, :param, host-bound). The
benchmark path /api/v1/users/12345/profile is matched by the last route, a :param one.
With PORTICO_CHAIN=1 the benchmark route carries the seed's plugin chain: real-ip, the WAF with
the php-injection rules over URI, args and body, limit-req (never rejecting, as anchor C's) and
prometheus."""
import os
import sys

n, port = int(sys.argv[1]), int(sys.argv[2])
print("upstreams:")
print(f"  - id: bench\n    nodes: {{\"127.0.0.1:{port}\": 1}}\n    keepalive_pool: {{size: 64, requests: 1000000}}")
print("routes:")
for i in range(n - 1):
    kind = i % 4
    if kind == 0:
        print(f"  - {{id: e{i}, uri: /svc{i}/items, upstream_id: bench}}")
    elif kind == 1:
        print(f"  - {{id: p{i}, uri: /api/v{i}/*, upstream_id: bench}}")
    elif kind == 2:
        print(f"  - {{id: m{i}, uri: /api/v1/users/:id/p{i}, upstream_id: bench}}")
    else:
        print(f"  - {{id: h{i}, uri: /*, host: h{i}.example.com, upstream_id: bench}}")
bench = ("  - {id: bench, uri: /*, upstream_id: bench" if n == 1 else
         "  - {id: bench, uri: /api/v1/users/:id/profile, upstream_id: bench")
if os.environ.get("PORTICO_CHAIN") == "1":
    bench += (", plugins: {"
              "real-ip: {source: http_x_forwarded_for, trusted_addresses: [127.0.0.1]}, "
              "waf: {rulesets: [php-injection], max_body: 16k}, "
              "limit-req: {rate: 100000000, burst: 100000000, nodelay: true}, "
              "prometheus: {}}")
print(bench + "}")
