"""consumer_groups through the binary: a consumer runs its group's plugins (its own of the same
name win), consumer-restriction by consumer_group_id, a missing group is a config error, and
over the Admin API a group in use cannot be deleted and its changes reach its consumers."""
import requests

from conftest import route, validate, wait_until
from test_admin_api import error_msg


def key(k):
    return {"apikey": k}


def doc(up, groups=None):
    return {
        "consumer_groups": groups if groups is not None else [
            {"id": "free", "desc": "free tier", "plugins": {"limit-count": {
                "count": 2, "time_window": 60, "rejected_code": 429, "key": "consumer_name"}}}],
        "consumers": [
            {"username": "alice", "group_id": "free", "plugins": {"key-auth": {"key": "a"}}},
            {"username": "bob", "group_id": "free", "plugins": {
                "key-auth": {"key": "b"},
                "limit-count": {"count": 4, "time_window": 60, "rejected_code": 429}}},
            {"username": "carol", "plugins": {"key-auth": {"key": "c"}}}],
        "routes": [
            route("/api/*", [(up.port,)], id="api", plugins={"key-auth": {}}),
            route("/paid/*", [(up.port,)], id="paid", plugins={
                "key-auth": {}, "consumer-restriction": {
                    "type": "consumer_group_id", "blacklist": ["free"]}})]}


def test_a_consumer_runs_its_groups_plugins_its_own_winning(gateway, upstream):
    up = upstream()
    gw = gateway(doc(up))
    assert [gw.get("/api/x", headers=key("a")).status_code for _ in range(3)] == [200, 200, 429]
    # bob's own limit-count replaces the group's
    assert [gw.get("/api/x", headers=key("b")).status_code for _ in range(5)] == [200] * 4 + [429]
    # carol has no group: no limit
    assert all(gw.get("/api/x", headers=key("c")).status_code == 200 for _ in range(5))
    r = gw.get("/paid/x", headers=key("a"))
    assert r.status_code == 403 and r.json()["message"] == "The consumer_group_id is forbidden."
    # As APISIX: a consumer without a group has no value to check.
    r = gw.get("/paid/x", headers=key("c"))
    assert r.status_code == 401 and "consumer_group_id" in r.json()["message"]


def test_a_consumer_in_a_missing_group_is_a_config_error(tmp_path, upstream):
    up = upstream()
    rc, out = validate(tmp_path, doc(up, groups=[]))
    assert rc != 0 and "group_id" in out and "consumer_group" in out, out
    bad = doc(up, groups=[{"id": "free", "plugins": {"key-auth": {"key": "x"}}}])
    rc, out = validate(tmp_path, bad)
    assert rc != 0 and "consumer_groups[0].plugins.key-auth" in out, out
    bad = doc(up, groups=[{"id": "free", "plugins": {"traffic-split": {"rules": []}}}])
    rc, out = validate(tmp_path, bad)
    assert rc != 0 and "consumer_groups[0].plugins.traffic-split" in out, out


def test_a_groups_limit_count_group_must_agree_with_the_routes(tmp_path, upstream):
    up = upstream()
    shared = {"count": 2, "time_window": 60, "group": "shared"}
    d = doc(up, groups=[{"id": "free", "plugins": {"limit-count": shared}}])
    d["routes"][0]["plugins"]["limit-count"] = dict(shared, count=5)
    rc, out = validate(tmp_path, d)
    assert rc != 0 and "limit-count" in out and "group" in out, out
    d["routes"][0]["plugins"]["limit-count"] = shared
    rc, out = validate(tmp_path, d)
    assert rc == 0, out


def test_groups_over_the_admin_api(etcd, gateway, upstream):
    up = upstream()
    gw = gateway(etcd=etcd)
    r = gw.admin("PUT", "/consumers", {"username": "alice", "group_id": "free",
                                       "plugins": {"key-auth": {"key": "a"}}})
    assert r.status_code == 400, r.text  # the group does not exist yet
    assert gw.admin("PUT", "/consumer_groups/free", {"plugins": {"limit-count": {
        "count": 1, "time_window": 60, "rejected_code": 429}}}).status_code == 201
    r = gw.admin("PUT", "/consumers", {"username": "alice", "group_id": "free",
                                       "plugins": {"key-auth": {"key": "a"}}})
    assert r.status_code == 201, r.text
    assert gw.admin("PUT", "/routes/api", route("/api/*", [(up.port,)], id="api",
                                                 plugins={"key-auth": {}})).status_code == 201
    wait_until(lambda: gw.get("/api/x", headers=key("a")).status_code == 429, timeout=5)
    r = gw.admin("DELETE", "/consumer_groups/free")
    assert r.status_code == 400 and "alice" in error_msg(r)
    # A change of the group reaches its consumers.
    assert gw.admin("PUT", "/consumer_groups/free", {"plugins": {"limit-count": {
        "count": 100, "time_window": 60, "rejected_code": 429}}}).status_code == 200
    wait_until(lambda: gw.get("/api/x", headers=key("a")).status_code == 200, timeout=5)
    assert gw.admin("GET", "/consumer_groups/free").json()["value"]["plugins"]["limit-count"][
        "count"] == 100
