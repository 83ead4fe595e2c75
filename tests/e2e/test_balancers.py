"""Balancers through the real binary: chash (header, variable, cookie), least_conn and ewma."""
import collections
import concurrent.futures

import requests

from conftest import route


def three(upstream, **kw):
    return [upstream(name=n, **kw) for n in ("a", "b", "c")]


def test_chash_on_a_header_keeps_each_user_on_one_node(gateway, upstream):
    ups = three(upstream)
    gw = gateway({"routes": [route("/chat/*", [(u.port,) for u in ups],
                                   upstream={"type": "chash", "hash_on": "header", "key": "X-User"})]},
                 workers=2)
    owners = {}
    s = requests.Session()
    for user in range(40):
        seen = {s.get(gw.url("/chat/x"), headers={"X-User": f"user{user}"}).headers["X-Upstream"]
                for _ in range(4)}
        assert len(seen) == 1, (user, seen)  # every request of a user on the same node
        owners[user] = seen.pop()
    counts = collections.Counter(owners.values())
    assert len(counts) == 3 and min(counts.values()) >= 5, counts  # users spread over all nodes


def test_chash_on_a_query_variable_and_a_cookie(gateway, upstream):
    ups = three(upstream)
    nodes = [(u.port,) for u in ups]
    gw = gateway({"routes": [
        route("/arg/*", nodes, id="arg", upstream={"type": "chash", "key": "arg_uid"}),
        route("/cookie/*", nodes, id="cookie",
              upstream={"type": "chash", "hash_on": "cookie", "key": "sid"}),
    ]})
    s = requests.Session()
    for uid in range(10):
        a = {s.get(gw.url(f"/arg/x?lang=en&uid={uid}")).headers["X-Upstream"] for _ in range(3)}
        c = {requests.get(gw.url("/cookie/x"), cookies={"sid": f"s{uid}", "other": "1"})
             .headers["X-Upstream"] for _ in range(3)}
        assert len(a) == 1 and len(c) == 1


def test_chash_needs_a_key_and_a_known_variable(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/a", [(up.port,)])]})
    gw.write_routes({"routes": [route("/b", [(up.port,)], upstream={"type": "chash"}),
                                route("/c", [(up.port,)], upstream={"type": "chash", "key": "nope"})]})
    gw.wait_log("routes[0].upstream.key: is required for type chash")
    assert "routes[1].upstream.key: unknown variable" in gw.error_log()
    assert gw.get("/a").status_code == 200  # the old config still serves


def test_least_conn_sends_new_requests_to_the_idle_node(gateway, upstream):
    slow = upstream(name="slow", delay_ms=400)
    fast = upstream(name="fast")
    gw = gateway({"routes": [route("/*", [(slow.port,), (fast.port,)], id="all",
                                   upstream={"type": "least_conn"})]})
    # While requests sit on the slow node, least_conn steers the others to the fast one; plain
    # round-robin would send half of them to the slow node.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: requests.get(gw.url("/x")).headers["X-Upstream"], range(40)))
    counts = collections.Counter(answers)
    assert counts["fast"] >= 30, counts


def test_ewma_prefers_the_faster_line(gateway, upstream):
    fast = upstream(name="fast", delay_ms=4)
    slow = upstream(name="slow", delay_ms=14)
    gw = gateway({"routes": [route("/*", [(fast.port,), (slow.port,)], id="all",
                                   upstream={"type": "ewma"})]})
    s = requests.Session()
    answers = [s.get(gw.url("/x")).headers["X-Upstream"] for _ in range(200)]
    counts = collections.Counter(answers)
    assert counts["fast"] >= 0.8 * len(answers), counts
    assert counts["slow"] >= 1  # measured at least once


def test_ewma_does_not_favour_a_node_that_fails_fast(gateway, upstream):
    # Every other answer of `broken` is an immediate 503: as latency alone it would look the
    # fastest node and draw the traffic. A 5xx counts as a failure for the estimate.
    broken = upstream(name="broken")
    broken.fail_status = 503
    steady = upstream(name="steady", delay_ms=10)
    gw = gateway({"routes": [route("/*", [(broken.port,), (steady.port,)], id="all",
                                   upstream={"type": "ewma", "retries": 0})]})
    s = requests.Session()
    answers = [s.get(gw.url("/x")).headers.get("X-Upstream", "broken") for _ in range(100)]
    counts = collections.Counter(answers)
    assert counts["steady"] >= 0.8 * len(answers), counts
