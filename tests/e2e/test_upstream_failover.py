"""Upstream failures: 502/504 statuses, retries on the next node, priority levels, retry
limits, retry_timeout, and no retry of non-idempotent requests after sending."""
import concurrent.futures
import time

import requests

from conftest import free_port, route, validate


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


def test_a_retry_budget_keeps_a_slow_upstream_from_getting_every_request_twice(gateway, upstream):
    slow = [upstream(name=f"s{i}") for i in range(2)]
    gw = gateway({"routes": [route("/*", [(u.port,) for u in slow], upstream={
        "timeout": {"connect": 1, "send": 1, "read": 1},
        "retry_budget": {"percent": 0, "min_concurrency": 2}})]})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: requests.get(gw.url("/hang")).status_code, range(8)))
    assert statuses == [504] * 8
    # 8 first attempts, and only 2 of them were sent again at once (not 8)
    assert sum(len(u.requests) for u in slow) == 10
    up = gw.control("/v1/healthcheck").json()["upstreams"][0]
    assert up["retries_over_budget"] == 6
    # connect failures are not held back: a dead node is always skipped
    dead = free_port()
    gw2 = gateway({"routes": [route("/*", [(dead,), (slow[0].port,)], upstream={
        "retry_budget": {"percent": 0, "min_concurrency": 0}})]})
    assert requests.get(gw2.url("/x")).status_code == 200


def test_retry_budget_schema(tmp_path):
    code, out = validate(tmp_path, {"routes": [route("/*", [(1,)], upstream={
        "retry_budget": {"percent": 150, "min": 1}})]})
    assert code != 0
    assert "routes[0].upstream.retry_budget.percent" in out
    assert "routes[0].upstream.retry_budget.min" in out


def test_the_retry_budget_is_given_back_when_the_attempts_are_over(gateway, upstream):
    """A resent request that became a WebSocket (hours) or a long download holds no slot of the
    budget once answered: the next resend still goes."""
    import socket
    dead_line, public = upstream(name="dedicated"), upstream(name="public")
    dead_line.hang = True  # connects, never answers: read timeouts
    gw = gateway({"routes": [route("/*", [(dead_line.port, 1, 1), (public.port, 1, 0)],
                                   enable_websocket=True, upstream={
                                       "timeout": {"connect": 1, "send": 1, "read": 0.5},
                                       "retry_budget": {"percent": 0, "min_concurrency": 1}})]})

    def upgrade():
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            got = s.recv(4096)
            if not got:
                break
            head += got
        return s, head.split(b"\r\n")[0]
    first, status = upgrade()
    assert b" 101 " in status  # the dedicated line timed out; resent to the public one
    second, status = upgrade()  # the first still relays: its slot was given back all the same
    assert b" 101 " in status
    first.close()
    second.close()
