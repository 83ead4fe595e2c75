"""traffic-split through the binary: weighted splits to upstreams by id and inline (exact shares,
interleaved), rules matched on request variables, the chosen upstream's own settings and health
checks, references held by the Admin API, and schema errors."""
import collections

import requests

from conftest import assert_plugin_errors, inline_upstream, route, served_by, wait_until
from test_health_checks import ACTIVE, node_states


def nodes(*ups):
    return {f"127.0.0.1:{u.port}": 1 for u in ups}


def spread(gw, path, n, headers=None):
    s = requests.Session()
    got = [s.get(gw.url(path), headers=headers or {}).headers.get("X-Upstream", "none")
           for _ in range(n)]
    return collections.Counter(got), got


def test_weighted_split_is_exact_and_interleaved(gateway, upstream):
    stable, canary = upstream(name="stable"), upstream(name="canary")
    gw = gateway({
        "upstreams": [{"id": "canary", "nodes": nodes(canary)}],
        "routes": [route("/api/*", [(stable.port,)], id="api", plugins={"traffic-split": {
            "rules": [{"weighted_upstreams": [{"upstream_id": "canary", "weight": 1},
                                              {"weight": 3}]}]}})]}, workers=2)
    counts, order = spread(gw, "/api/x", 400)
    assert counts == {"canary": 100, "stable": 300}  # one shared cycle, whatever the worker
    # Smooth round robin: never two canary picks in a row.
    assert all(not (a == b == "canary") for a, b in zip(order, order[1:]))


def test_rules_match_request_variables_first_rule_wins(gateway, upstream):
    stable, beta, vip = upstream(name="stable"), upstream(name="beta"), upstream(name="vip")
    gw = gateway({"routes": [route("/chat", [(stable.port,)], id="chat", plugins={
        "traffic-split": {"rules": [
            {"match": [{"vars": [["http_x_release", "==", "beta"]]},
                       {"vars": [["arg_beta", "==", "1"]]}],
             "weighted_upstreams": [{"upstream": {"nodes": nodes(beta)}}]},
            {"match": [{"vars": [["cookie_tier", "==", "vip"], ["request_method", "==", "GET"]]}],
             "weighted_upstreams": [{"upstream": {"nodes": nodes(vip)}, "weight": 1}]},
        ]}})]})
    assert served_by(gw, "/chat") == "stable"
    assert spread(gw, "/chat", 5, {"X-Release": "beta"})[0] == {"beta": 5}
    assert served_by(gw, "/chat?beta=1") == "beta"  # the rule's second match item
    assert spread(gw, "/chat", 5, {"Cookie": "tier=vip"})[0] == {"vip": 5}
    r = requests.post(gw.url("/chat"), headers={"Cookie": "tier=vip"}, data=b"x", timeout=5)
    assert r.headers["X-Upstream"] == "stable"  # both conditions of a vars list must hold
    both = {"X-Release": "beta", "Cookie": "tier=vip"}
    assert spread(gw, "/chat", 3, both)[0] == {"beta": 3}  # the first rule that matches


def test_the_chosen_upstream_brings_its_own_settings(gateway, upstream):
    stable, canary = upstream(name="stable"), upstream(name="canary")
    gw = gateway({"routes": [route("/s", [(stable.port,)], id="s", plugins={"traffic-split": {
        "rules": [{"match": [{"vars": [["arg_c", "==", "1"]]}], "weighted_upstreams": [
            {"upstream": {"nodes": nodes(canary), "pass_host": "rewrite",
                          "upstream_host": "canary.internal"}}]}]}})]})
    r = gw.get("/s?c=1", headers={"Host": "chat.example.com"})
    assert r.headers["X-Upstream"] == "canary"
    assert dict((k.lower(), v) for k, v in r.json()["headers"])["host"] == "canary.internal"
    r = gw.get("/s", headers={"Host": "chat.example.com"})
    assert r.headers["X-Upstream"] == "stable"
    assert dict((k.lower(), v) for k, v in r.json()["headers"])["host"] == "chat.example.com"


def test_inline_split_upstreams_are_health_checked(gateway, upstream):
    stable, a, b = upstream(name="stable"), upstream(name="a"), upstream(name="b")
    b.health_status = 500
    gw = gateway({"routes": [route("/h", [(stable.port,)], id="h", plugins={"traffic-split": {
        "rules": [{"weighted_upstreams": [
            {"upstream": {"nodes": nodes(a, b), "checks": ACTIVE}}]}]}})]})
    # Probed from the start, before any request (APISIX leaves such upstreams unchecked).
    assert wait_until(lambda: node_states(gw).get(f"127.0.0.1:{b.port}") == "unhealthy", 3)
    assert spread(gw, "/h", 20)[0] == {"a": 20}
    b.health_status = 200
    assert wait_until(lambda: node_states(gw).get(f"127.0.0.1:{b.port}") == "healthy", 3)
    assert set(spread(gw, "/h", 20)[0]) == {"a", "b"}


def test_admin_api_keeps_split_references(etcd, gateway, upstream):
    stable, canary = upstream(name="stable"), upstream(name="canary")
    gw = gateway(etcd=etcd)
    split = {"traffic-split": {"rules": [{"weighted_upstreams": [{"upstream_id": "c1"}]}]}}
    route = {"uri": "/r1", "upstream": inline_upstream(stable.port), "plugins": split}
    r = gw.admin("PUT", "/routes/r1", route)
    assert r.status_code == 400  # as for a route's own upstream_id
    assert 'weighted_upstreams[0].upstream_id: unknown upstream "c1"' in r.json()["error_msg"]
    assert gw.admin("PUT", "/upstreams/c1", inline_upstream(canary.port)).status_code == 201
    assert gw.admin("PUT", "/routes/r1", route).status_code == 201
    assert wait_until(lambda: served_by(gw, "/r1") == "canary", 3)
    r = gw.admin("DELETE", "/upstreams/c1")
    assert r.status_code == 400 and "r1" in r.json()["error_msg"]
    assert served_by(gw, "/r1") == "canary"
    # A change to the upstream reaches the split without touching the route.
    canary2 = upstream(name="canary2")
    assert gw.admin("PUT", "/upstreams/c1", inline_upstream(canary2.port)).status_code == 200
    assert wait_until(lambda: served_by(gw, "/r1") == "canary2", 3)


def test_traffic_split_schema_errors(tmp_path):
    bad = [({"rules": [{"weighted_upstreams": [{"upstream_id": "nope"}]}]},
            "traffic-split.rules[0].weighted_upstreams[0].upstream_id"),
           ({"rules": [{"weighted_upstreams": []}]}, "traffic-split.rules[0].weighted_upstreams"),
           ({"rules": [{"weighted_upstreams": [{"weight": -1}]}]},
            "traffic-split.rules[0].weighted_upstreams[0].weight"),
           ({"rules": [{"weighted_upstreams": [{"upstream": {"nodes": {"127.0.0.1:0": 1}}}]}]},
            "traffic-split.rules[0].weighted_upstreams[0].upstream.nodes"),
           ({"rules": [{"match": [{"vars": [["arg_a", "=~", "b"]]}]}]},
            "traffic-split.rules[0].match[0].vars"),
           ({"rules": [{"match": [{}]}]}, "traffic-split.rules[0].match[0].vars")]
    out = assert_plugin_errors(tmp_path, "traffic-split", bad, consumers=[
        {"username": "u", "plugins": {"traffic-split": {"rules": []}}}])
    assert "consumers[0].plugins.traffic-split: only routes, services and plugin configs" in out
