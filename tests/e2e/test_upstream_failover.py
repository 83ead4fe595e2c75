"""Upstream failures: 502/504 statuses, retries on the next node, priority levels, retry
limits, retry_timeout, and no retry of non-idempotent requests after sending."""
import time

import requests

from conftest import free_port, route


def dead_port():
    return free_port()  # nothing listens there: connection refused


def test_refused_is_502_and_timeout_is_504(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/refused", [(dead_port(),)]),
        route("/hang", [(up.port,)], upstream={"timeout": {"connect": 1, "send": 1, "read": 0.5}}),
        route("/reset", [(up.port,)]),
    ]})
    r = requests.get(gw.url("/refused"))
    assert r.status_code == 502 and "connect" in r.json()["error_msg"]
    start = time.time()
    r = requests.get(gw.url("/hang"))
    assert r.status_code == 504
    assert time.time() - start < 3
    assert requests.get(gw.url("/reset")).status_code == 502


def test_retry_goes_to_next_node_on_connect_failure(gateway, upstream):
    up = upstream(name="alive")
    gw = gateway({"routes": [route("/*", [(dead_port(),), (up.port,)])]})
    for _ in range(10):
        r = requests.get(gw.url("/x"))
        assert r.status_code == 200 and r.json()["upstream"] == "alive"
    # POST is retried too when the connection was never established
    assert requests.post(gw.url("/x"), data="b").status_code == 200


def test_retry_on_timeout_only_for_idempotent_requests(gateway, upstream):
    slow, fast = upstream(name="slow"), upstream(name="fast")
    gw = gateway({"routes": [route("/*", [(slow.port,), (fast.port,)],
                                   upstream={"timeout": {"connect": 1, "send": 1, "read": 0.5}})]})
    statuses = [requests.get(gw.url("/hang")).status_code for _ in range(2)]
    # /hang hangs on both nodes: each GET tries both, then answers 504
    assert statuses == [504, 504]
    assert len(slow.requests) == 2 and len(fast.requests) == 2
    before = len(slow.requests) + len(fast.requests)
    assert requests.post(gw.url("/hang"), data="x").status_code == 504
    assert len(slow.requests) + len(fast.requests) == before + 1  # POST: not retried


def test_retries_limit(gateway, upstream):
    up = upstream()
    ports = [dead_port() for _ in range(3)]
    gw = gateway({"routes": [route("/*", [(p,) for p in ports] + [(up.port,)],
                                   upstream={"retries": 1})]})
    results = [requests.get(gw.url("/x")).status_code for _ in range(8)]
    # With 1 retry only 2 nodes are tried per request: some requests never reach the live one.
    assert 502 in results
    lines = gw.access_path  # attempts are logged
    gw.stop()
    import json
    for line in lines.read_text().splitlines():
        assert json.loads(line)["attempts"] <= 2


def test_retry_timeout_bounds_total_retry_time(gateway, upstream):
    ups = [upstream(name=f"h{i}") for i in range(4)]
    gw = gateway({"routes": [route("/*", [(u.port,) for u in ups],
                                   upstream={"timeout": {"connect": 1, "send": 1, "read": 0.4},
                                             "retry_timeout": 0.6})]})
    start = time.time()
    assert requests.get(gw.url("/hang")).status_code == 504
    elapsed = time.time() - start
    assert elapsed < 1.5  # 4 nodes x 0.4 s would be 1.6 s
    assert sum(len(u.requests) for u in ups) == 2


def test_priority_levels_lower_only_when_higher_failed(gateway, upstream):
    primary, backup = upstream(name="primary"), upstream(name="backup")
    gw = gateway({"routes": [route("/*", [(primary.port, 1, 10), (backup.port, 1, 0)])]})
    for _ in range(10):
        assert requests.get(gw.url("/x")).json()["upstream"] == "primary"
    assert backup.requests == []
    primary.stop()
    for _ in range(5):
        assert requests.get(gw.url("/x")).json()["upstream"] == "backup"


def test_weighted_round_robin_distribution(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    gw = gateway({"routes": [route("/*", [(a.port, 3), (b.port, 1)])]})
    seen = [requests.get(gw.url("/x")).json()["upstream"] for _ in range(40)]
    assert seen.count("a") == 30 and seen.count("b") == 10
    # smooth: b's turns are spread out, never two b in a row
    assert "bb" not in "".join(s[0] for s in seen)


def test_stale_pooled_connection_is_retried_transparently(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    assert requests.get(gw.url("/x")).status_code == 200
    up.drop_connections()  # the node closes its idle keep-alive connections
    time.sleep(0.1)
    assert requests.post(gw.url("/x"), data="again").status_code == 200
