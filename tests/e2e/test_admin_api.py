"""The Admin API (/apisix/admin, contract: config plane) against the real binary and a real etcd:
CRUD for every kind with APISIX-shaped bodies, PUT/POST/PATCH/DELETE semantics, references,
validation, keys and roles, the allow list, the generated key, yaml mode, routes/match — and that
what the Admin API writes is what the gateway serves."""
import json
import re
import socket
import threading
import time

import pytest
import requests

from conftest import (ADMIN_KEY, DEFAULT_ADMIN_KEYS, KINDS, VIEWER_KEY, inline_upstream, route,
                      self_signed_cert, served_by, wait_until)
from tcp_relay import TcpRelay

PROTO_1 = ('syntax = "proto3"; package hello; service Greeter { rpc SayHi (HelloRequest) '
           'returns (HelloReply); } message HelloRequest { string name = 1; } '
           'message HelloReply { string message = 1; }')
PROTO_2 = PROTO_1.replace("SayHi", "SayBye")


@pytest.fixture
def egw(etcd, gateway):
    """An etcd-mode gateway on an empty prefix."""
    return gateway(etcd=etcd)


def error_msg(r):
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    return r.json()["error_msg"]


# ---------------------------------------------------------------------------------------------
# what the Admin API writes is served


def test_route_put_serves_traffic_and_delete_makes_it_404(egw, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    assert egw.get("/hello").status_code == 404
    r = egw.admin("PUT", "/routes/r1", {"uri": "/hello", "upstream": inline_upstream(a.port)})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: served_by(egw, "/hello") == "a", 2), served_by(egw, "/hello")

    r = egw.admin("PUT", "/routes/r1", {"uri": "/hello", "upstream": inline_upstream(b.port)})
    assert r.status_code == 200, r.text
    assert wait_until(lambda: served_by(egw, "/hello") == "b", 2)

    r = egw.admin("DELETE", "/routes/r1")
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": "1", "key": egw.key("routes", "r1")}
    assert wait_until(lambda: served_by(egw, "/hello") == 404, 2)
    assert egw.get("/hello").json() == {"error_msg": "404 Route Not Found"}


def test_concurrent_patches_answered_2xx_are_all_written(egw, etcd, upstream):
    # Each PATCH starts from this node's view of the route; when another wrote first, etcd's
    # compare fails and the PATCH must read again, or answer 409: never 200 for a lost write.
    a = upstream(name="a")
    r = egw.admin("PUT", "/routes/r1", {"uri": "/p", "upstream": inline_upstream(a.port)})
    assert r.status_code == 201, r.text
    answers = {}

    def label(n):
        answers[n] = egw.admin("PATCH", f"/routes/r1/labels/k{n}", data=json.dumps(f"v{n}"))
    threads = [threading.Thread(target=label, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    written = etcd.get_json(egw.key("routes", "r1"))["labels"]
    ok = [n for n, r in answers.items() if r.status_code == 200]
    assert ok and all(r.status_code in (200, 409) for r in answers.values()), \
        {n: (r.status_code, r.text) for n, r in answers.items()}
    assert {f"k{n}": f"v{n}" for n in ok}.items() <= written.items(), (ok, written)


def test_odd_paths_and_ttl_get_a_400_and_odd_bytes_in_etcd_do_not_break_listings(egw, etcd):
    for method in ("PUT", "GET", "DELETE"):
        r = egw.admin(method, "/routes/%FF", {"uri": "/x"} if method == "PUT" else None)
        assert r.status_code == 400 and "printable ASCII" in error_msg(r), (method, r.text)
    r = egw.admin("PUT", "/routes/t1", {"uri": "/t"}, params={"ttl": "60"})
    assert r.status_code == 400 and error_msg(r).startswith("ttl: not supported"), r.text
    # An object written to etcd by hand under a key with a byte that is not UTF-8.
    etcd.put(egw.key("upstreams", "").encode() + b"raw\xff", json.dumps({"nodes": {}}))
    assert wait_until(lambda: egw.admin("GET", "/upstreams").json().get("total") == 1, 3)
    assert egw.admin("GET", "/upstreams").status_code == 200


def test_upstream_id_and_service_id_follow_the_referenced_objects(egw, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    assert egw.admin("PUT", "/upstreams/u1", inline_upstream(a.port)).status_code == 201
    assert egw.admin("PUT", "/services/s1", {"upstream_id": "u1"}).status_code == 201
    assert egw.admin("PUT", "/routes/by_up", {"uri": "/u", "upstream_id": "u1"}).status_code == 201
    assert egw.admin("PUT", "/routes/by_svc", {"uri": "/s", "service_id": "s1"}).status_code == 201
    assert wait_until(lambda: served_by(egw, "/u") == "a" and served_by(egw, "/s") == "a", 2)
    # changing the upstream reaches every route that refers to it, directly or via a service
    assert egw.admin("PUT", "/upstreams/u1", inline_upstream(b.port)).status_code == 200
    assert wait_until(lambda: served_by(egw, "/u") == "b" and served_by(egw, "/s") == "b", 2)


# ---------------------------------------------------------------------------------------------
# CRUD for every kind


def bodies(kind, tmp_path):
    """(id, first body, replacement body) with APISIX shapes."""
    ups = inline_upstream(1980)
    ups2 = inline_upstream(1981)
    if kind == "routes":
        return "crud1", {"uri": "/crud", "name": "first", "upstream": ups}, {"uri": "/crud2", "upstream": ups2}
    if kind == "services":
        return "crud1", {"name": "svc", "upstream": ups}, {"upstream": ups2, "hosts": ["svc.test"]}
    if kind == "upstreams":
        return "crud1", dict(ups, name="up"), {"type": "roundrobin", "nodes": {"127.0.0.1:1981": 2}}
    if kind == "consumers":
        return "jack", {"username": "jack", "plugins": {}, "desc": "first"}, {"username": "jack", "plugins": {}}
    if kind == "ssls":
        cert, key = self_signed_cert(tmp_path, "crud.test")
        cert2, key2 = self_signed_cert(tmp_path, "crud2.test")
        return "crud1", {"cert": cert, "key": key, "snis": ["crud.test"]}, \
            {"cert": cert2, "key": key2, "snis": ["crud2.test"]}
    if kind == "global_rules":
        return "crud1", {"plugins": {}}, {"plugins": {}}
    if kind == "plugin_configs":
        return "crud1", {"plugins": {}, "desc": "first"}, {"plugins": {}}
    if kind == "protos":
        return "crud1", {"content": PROTO_1}, {"content": PROTO_2}
    if kind == "stream_routes":
        return "crud1", {"server_port": 9100, "upstream": ups}, {"server_port": 9101, "upstream": ups2}
    raise AssertionError(kind)


def assert_has(value, body, kind):
    for k, v in body.items():
        if kind == "ssls" and k == "key":
            continue  # the private key may be stored encrypted; never compared
        assert value.get(k) == v, (k, value)


@pytest.mark.parametrize("kind", KINDS)
def test_crud_every_kind(egw, etcd, tmp_path, kind):
    id, first, second = bodies(kind, tmp_path)
    key = egw.key(kind, id)
    assert egw.admin("GET", f"/{kind}/{id}").status_code == 404

    # PUT creates: 201 {"key","value"} with id, create_time, update_time
    r = egw.admin("PUT", f"/{kind}/{id}", first)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"] == key
    value = created["value"]
    assert_has(value, first, kind)
    if kind != "consumers":
        assert value["id"] == id
    assert isinstance(value["create_time"], int) and isinstance(value["update_time"], int)
    assert abs(value["create_time"] - time.time()) < 60
    # stored in etcd under <prefix>/<kind>/<id> as the object JSON
    stored = etcd.get_json(key)
    assert stored is not None
    assert_has(stored, first, kind)
    assert stored["create_time"] == value["create_time"]

    # GET one
    r = egw.admin("GET", f"/{kind}/{id}")
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["key"] == key
    assert_has(got["value"], first, kind)
    assert got["value"]["create_time"] == value["create_time"]
    assert isinstance(got["createdIndex"], int) and isinstance(got["modifiedIndex"], int)
    assert got["createdIndex"] == got["modifiedIndex"]
    created_index = got["createdIndex"]

    # list
    r = egw.admin("GET", f"/{kind}")
    assert r.status_code == 200, r.text
    listing = r.json()
    assert listing["total"] == 1
    assert [i["key"] for i in listing["list"]] == [key]
    assert_has(listing["list"][0]["value"], first, kind)

    # PUT replaces: 200, create_time kept, fields not in the new body are gone
    r = egw.admin("PUT", f"/{kind}/{id}", second)
    assert r.status_code == 200, r.text
    value2 = r.json()["value"]
    assert_has(value2, second, kind)
    for k in set(first) - set(second):
        assert k not in value2, (k, value2)
    assert value2["create_time"] == value["create_time"]
    assert value2["update_time"] >= value["update_time"]
    got = egw.admin("GET", f"/{kind}/{id}").json()
    assert got["createdIndex"] == created_index
    assert got["modifiedIndex"] > created_index
    assert_has(got["value"], second, kind)

    # DELETE
    r = egw.admin("DELETE", f"/{kind}/{id}")
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": "1", "key": key}
    r = egw.admin("GET", f"/{kind}/{id}")
    assert r.status_code == 404
    assert error_msg(r)
    assert etcd.get(key) is None
    assert egw.admin("GET", f"/{kind}").json()["total"] == 0
    assert egw.admin("DELETE", f"/{kind}/{id}").status_code == 404


def test_consumer_put_by_username_in_body(egw):
    r = egw.admin("PUT", "/consumers", {"username": "rose", "plugins": {}})
    assert r.status_code == 201, r.text
    assert r.json()["key"] == egw.key("consumers", "rose")
    assert egw.admin("GET", "/consumers/rose").json()["value"]["username"] == "rose"


def test_a_credential_another_consumer_has_is_refused(egw):
    key = {"plugins": {"key-auth": {"key": "k-shared"}}}
    assert egw.admin("PUT", "/consumers", dict(key, username="ann")).status_code == 201
    r = egw.admin("PUT", "/consumers", dict(key, username="bob"))
    assert r.status_code == 400
    assert r.json()["error_msg"] == ('invalid configuration: plugins.key-auth: credential already '
                                     'used by consumer "ann"')
    assert egw.admin("GET", "/consumers/bob").status_code == 404
    # ann may keep (rewrite) her own key; bob may take it once she lets go of it.
    assert egw.admin("PUT", "/consumers", dict(key, username="ann")).status_code == 200
    r = egw.admin("PUT", "/consumers", {"username": "ann", "plugins": {"key-auth": {"key": "k-new"}}})
    assert r.status_code == 200, r.text
    # (the check reads this node's copy of etcd, which the watch updates: not at once under load)
    assert wait_until(lambda: egw.admin("PUT", "/consumers", dict(key, username="bob"))
                      .status_code == 201, 10)


def test_put_with_id_in_body_and_id_mismatch(egw):
    ups = inline_upstream(1980)
    r = egw.admin("PUT", "/routes", {"id": "viabody", "uri": "/vb", "upstream": ups})
    assert r.status_code == 201, r.text
    assert r.json()["key"] == egw.key("routes", "viabody")
    assert egw.admin("GET", "/routes/viabody").status_code == 200

    r = egw.admin("PUT", "/routes/a", {"id": "b", "uri": "/x", "upstream": ups})
    assert r.status_code == 400
    assert error_msg(r)
    assert egw.admin("GET", "/routes/a").status_code == 404
    assert egw.admin("GET", "/routes/b").status_code == 404
    # the same id in body and path is fine
    assert egw.admin("PUT", "/routes/same", {"id": "same", "uri": "/s", "upstream": ups}).status_code == 201


def test_post_generates_ids(egw, etcd, upstream):
    a = upstream(name="a")
    ids = []
    for path in ("/p1", "/p2"):
        r = egw.admin("POST", "/routes", {"uri": path, "upstream": inline_upstream(a.port)})
        assert r.status_code == 201, r.text
        out = r.json()
        id = out["value"]["id"]
        assert isinstance(id, str) and id.isdigit(), id
        assert out["key"] == egw.key("routes", id)
        assert etcd.get_json(out["key"])["uri"] == path
        ids.append(id)
    assert ids[0] != ids[1]
    listed = {i["value"]["id"] for i in egw.admin("GET", "/routes").json()["list"]}
    assert listed == set(ids)
    assert wait_until(lambda: served_by(egw, "/p1") == "a" and served_by(egw, "/p2") == "a", 2)


def test_list_paging_in_key_order(egw):
    ups = inline_upstream(1980)
    for i in range(12, 0, -1):  # written out of order; listed in key order
        assert egw.admin("PUT", f"/routes/r{i:02d}", {"uri": f"/r{i}", "upstream": ups}).status_code == 201
    all_keys = [egw.key("routes", f"r{i:02d}") for i in range(1, 13)]
    out = egw.admin("GET", "/routes").json()
    assert out["total"] == 12
    assert [i["key"] for i in out["list"]] == all_keys
    p1 = egw.admin("GET", "/routes", params={"page": 1, "page_size": 10}).json()
    assert p1["total"] == 12
    assert [i["key"] for i in p1["list"]] == all_keys[:10]
    p2 = egw.admin("GET", "/routes", params={"page": 2, "page_size": 10}).json()
    assert p2["total"] == 12
    assert [i["key"] for i in p2["list"]] == all_keys[10:]
    for item in p2["list"]:
        assert set(item) >= {"key", "value", "createdIndex", "modifiedIndex"}
    p3 = egw.admin("GET", "/routes", params={"page": 3, "page_size": 10}).json()
    assert p3["total"] == 12 and p3["list"] == []


# ---------------------------------------------------------------------------------------------
# PATCH


def test_patch_is_a_json_merge_patch(egw, etcd, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    na, nb = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
    body = {"uri": "/m", "name": "patched", "methods": ["GET", "POST"], "priority": 3,
            "upstream": {"type": "roundrobin", "nodes": {na: 1}, "retries": 1}}
    r = egw.admin("PUT", "/routes/m", body)
    assert r.status_code == 201, r.text
    created = r.json()["value"]
    assert wait_until(lambda: served_by(egw, "/m") == "a", 2)
    time.sleep(1.1)  # create_time and update_time are epoch seconds

    # PUT replace keeps create_time and moves update_time
    r = egw.admin("PUT", "/routes/m", body)
    assert r.status_code == 200, r.text
    assert r.json()["value"]["create_time"] == created["create_time"]
    assert r.json()["value"]["update_time"] > created["create_time"]

    # null removes, scalars and arrays replace, objects merge
    r = egw.admin("PATCH", "/routes/m", {"name": None, "methods": ["GET"], "upstream": {"nodes": {nb: 1}}})
    assert r.status_code == 200, r.text
    v = r.json()["value"]
    assert "name" not in v
    assert v["methods"] == ["GET"]
    assert v["priority"] == 3 and v["uri"] == "/m"
    assert v["upstream"]["type"] == "roundrobin" and v["upstream"]["retries"] == 1
    assert v["upstream"]["nodes"] == {na: 1, nb: 1}
    assert v["create_time"] == created["create_time"]
    assert v["id"] == "m"
    assert etcd.get_json(egw.key("routes", "m"))["upstream"]["nodes"] == {na: 1, nb: 1}
    assert egw.admin("GET", "/routes/m").json()["value"] == v

    # a null inside a nested object removes that member: only b is left
    r = egw.admin("PATCH", "/routes/m", {"upstream": {"nodes": {na: None}}})
    assert r.status_code == 200, r.text
    assert r.json()["value"]["upstream"]["nodes"] == {nb: 1}
    assert wait_until(lambda: all(served_by(egw, "/m") == "b" for _ in range(4)), 2)
    assert requests.post(egw.url("/m"), timeout=5).status_code == 404  # methods now only GET

    # a patch that makes the object invalid is refused and changes nothing
    r = egw.admin("PATCH", "/routes/m", {"uri": 5})
    assert r.status_code == 400
    assert "uri" in error_msg(r)
    assert egw.admin("GET", "/routes/m").json()["value"]["uri"] == "/m"

    r = egw.admin("PATCH", "/routes/missing", {"name": "x"})
    assert r.status_code == 404
    assert egw.admin("GET", "/routes/missing").status_code == 404


def test_patch_sub_path_replaces_that_field(egw, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    na, nb = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
    assert egw.admin("PUT", "/routes/1", {"uri": "/sp", "upstream": {"type": "roundrobin",
                                                                     "nodes": {na: 1}}}).status_code == 201
    assert wait_until(lambda: served_by(egw, "/sp") == "a", 2)
    r = egw.admin("PATCH", "/routes/1/upstream/nodes", {nb: 1})
    assert r.status_code == 200, r.text
    v = r.json()["value"]
    assert v["upstream"]["nodes"] == {nb: 1}  # replaced, not merged
    assert v["upstream"]["type"] == "roundrobin" and v["uri"] == "/sp"
    assert wait_until(lambda: all(served_by(egw, "/sp") == "b" for _ in range(4)), 2)
    # a scalar sub-field
    r = egw.admin("PATCH", "/routes/1/uri", "/sp2")
    assert r.status_code == 200, r.text
    assert r.json()["value"]["uri"] == "/sp2"
    assert wait_until(lambda: served_by(egw, "/sp2") == "b" and served_by(egw, "/sp") == 404, 2)
    # A sub-path may not nest the object deeper than nodes read (64 levels): they would skip it.
    before = egw.admin("GET", "/routes/1").json()["value"]
    deep_body = 1
    for _ in range(50):
        deep_body = {"b": deep_body}
    for segments, body in ((1000, 1), (30, deep_body)):  # each part alone is within the limit
        path = "/routes/1/plugins/key-auth/_meta/filter/" + "/".join(["a"] * segments)
        r = egw.admin("PATCH", path, body)
        assert r.status_code == 400 and "nested deeper than 64 levels" in r.text, (segments, r.text)
    assert egw.admin("GET", "/routes/1").json()["value"] == before


# ---------------------------------------------------------------------------------------------
# references


def test_delete_refused_while_referenced_unless_forced(egw, upstream):
    a = upstream(name="a")
    assert egw.admin("PUT", "/upstreams/u1", inline_upstream(a.port)).status_code == 201
    assert egw.admin("PUT", "/services/s1", {"upstream": inline_upstream(a.port)}).status_code == 201
    assert egw.admin("PUT", "/plugin_configs/pc1", {"plugins": {}}).status_code == 201
    assert egw.admin("PUT", "/routes/r1", {"uri": "/r1", "upstream_id": "u1"}).status_code == 201
    assert egw.admin("PUT", "/routes/r2", {"uri": "/r2", "service_id": "s1"}).status_code == 201
    r = egw.admin("PUT", "/routes/r3", {"uri": "/r3", "upstream": inline_upstream(a.port),
                                        "plugin_config_id": "pc1"})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: [served_by(egw, p) for p in ("/r1", "/r2", "/r3")] == ["a"] * 3, 2)

    r = egw.admin("DELETE", "/upstreams/u1")
    assert r.status_code == 400
    assert error_msg(r) == "can not delete this upstream, route [r1] is still using it now"
    r = egw.admin("DELETE", "/services/s1")
    assert r.status_code == 400 and "r2" in error_msg(r)
    r = egw.admin("DELETE", "/plugin_configs/pc1")
    assert r.status_code == 400 and "r3" in error_msg(r)
    for path in ("/upstreams/u1", "/services/s1", "/plugin_configs/pc1"):
        assert egw.admin("GET", path).status_code == 200
    assert served_by(egw, "/r1") == "a"

    # once the route is gone the service can go without force
    assert egw.admin("DELETE", "/routes/r2").status_code == 200
    assert egw.admin("DELETE", "/services/s1").status_code == 200

    # force: deleted although used; the dangling route is skipped (logged), others keep serving
    r = egw.admin("DELETE", "/upstreams/u1", params={"force": "true"})
    assert r.status_code == 200, r.text
    assert egw.admin("GET", "/upstreams/u1").status_code == 404
    assert wait_until(lambda: served_by(egw, "/r1") == 404, 2)
    egw.wait_log_line("skipped", "routes/r1")
    assert served_by(egw, "/r3") == "a"


def test_unknown_references_on_write_are_400(egw):
    r = egw.admin("PUT", "/routes/rx", {"uri": "/x", "upstream_id": "nope"})
    assert r.status_code == 400
    assert "upstream_id" in error_msg(r)
    r = egw.admin("PUT", "/routes/ry", {"uri": "/y", "service_id": "nope"})
    assert r.status_code == 400
    assert "service_id" in error_msg(r)
    r = egw.admin("PUT", "/services/sx", {"upstream_id": "nope"})
    assert r.status_code == 400
    assert "upstream_id" in error_msg(r)
    for path in ("/routes/rx", "/routes/ry", "/services/sx"):
        assert egw.admin("GET", path).status_code == 404


def test_a_write_that_would_leave_a_route_unserved_is_refused(egw, upstream):
    # Each object is valid alone; what it would do to the served config decides. Answering 200
    # and then skipping the route at compile time is the trap this closes.
    a = upstream(name="a")
    assert egw.admin("PUT", "/upstreams/u1", inline_upstream(a.port)).status_code == 201
    assert egw.admin("PUT", "/services/s1", {"upstream_id": "u1"}).status_code == 201
    assert egw.admin("PUT", "/routes/r1", {"uri": "/r1", "service_id": "s1"}).status_code == 201
    assert wait_until(lambda: served_by(egw, "/r1") == "a", 2)

    r = egw.admin("PATCH", "/services/s1", {"upstream_id": None})
    assert r.status_code == 400
    assert error_msg(r) == ('invalid configuration: routes/r1.service_id: needs an upstream: '
                            'neither this route nor service "s1" has one (this change would '
                            'leave route "r1" out)')
    assert egw.admin("GET", "/services/s1").json()["value"]["upstream_id"] == "u1"
    r = egw.admin("PUT", "/services/s1", {"name": "no upstream"})
    assert r.status_code == 400 and "routes/r1.service_id" in error_msg(r), r.text

    # A service without an upstream is fine until a route relies on it for one.
    assert egw.admin("PUT", "/services/bare", {"hosts": ["x.test"]}).status_code == 201
    r = egw.admin("PUT", "/routes/r2", {"uri": "/r2", "service_id": "bare"})
    assert r.status_code == 400
    assert error_msg(r) == ('invalid configuration: service_id: needs an upstream: neither this '
                            'route nor service "bare" has one')
    assert egw.admin("GET", "/routes/r2").status_code == 404
    r = egw.admin("PUT", "/routes/r2", {"uri": "/r2", "service_id": "bare", "upstream_id": "u1"})
    assert r.status_code == 201, r.text
    assert served_by(egw, "/r1") == "a"


def test_a_limit_count_group_keeps_one_set_of_settings_across_writes(egw, upstream):
    a = upstream(name="a")

    def counted(uri, count):
        return {"uri": uri, "upstream": inline_upstream(a.port),
                "plugins": {"limit-count": {"count": count, "time_window": 60, "group": "g"}}}
    assert egw.admin("PUT", "/routes/g1", counted("/g1", 100)).status_code == 201
    assert egw.admin("PUT", "/routes/g2", counted("/g2", 100)).status_code == 201
    assert wait_until(lambda: served_by(egw, "/g1") == "a" and served_by(egw, "/g2") == "a", 2)

    # A new member with other settings would be the one left out...
    r = egw.admin("PUT", "/routes/g3", counted("/g3", 5))
    assert r.status_code == 400
    assert error_msg(r).startswith('invalid configuration: plugins.limit-count.group: group "g" '
                                   'is configured differently at routes/g1.plugins.limit-count')
    # ...and the oldest member changed alone would push the others out.
    r = egw.admin("PATCH", "/routes/g1/plugins/limit-count/count", data="5")
    assert r.status_code == 400
    assert "routes/g2.plugins.limit-count.group" in error_msg(r), r.text
    assert 'leave route "g2" out' in error_msg(r), r.text
    assert egw.admin("GET", "/routes/g1").json()["value"]["plugins"]["limit-count"]["count"] == 100
    # Leaving the group is fine.
    r = egw.admin("PATCH", "/routes/g1/plugins/limit-count", {"count": 5, "time_window": 60})
    assert r.status_code == 200, r.text
    assert served_by(egw, "/g1") == "a" and served_by(egw, "/g2") == "a"


@pytest.fixture
def two_nodes(etcd, gateway):
    """(node A, node B, B's relay): two gateways on one etcd, B through a TcpRelay that can
    freeze B's connections (B's watch goes quiet, its view lags; new connections still work)."""
    relay = TcpRelay(etcd.client_port)
    node_a = gateway(etcd=etcd)
    node_b = gateway(etcd=etcd, endpoints=[f"http://127.0.0.1:{relay.port}"],
                     etcd_options={"timeout": 1})
    yield node_a, node_b, relay
    relay.close()


def test_a_chain_written_through_another_node_is_judged_as_etcd_has_it(two_nodes, upstream):
    # Node B's view lags: the upstream and the service that node A just wrote are not in it. A
    # route on B using the service is judged on what etcd holds, down the chain (route ->
    # service -> upstream), not refused as "unknown upstream".
    node_a, node_b, relay = two_nodes
    a = upstream(name="a")
    relay.freeze()
    assert node_a.admin("PUT", "/upstreams/u1", inline_upstream(a.port)).status_code == 201
    assert node_a.admin("PUT", "/services/s1", {"upstream_id": "u1"}).status_code == 201
    r = node_b.admin("PUT", "/routes/r1", {"uri": "/r1", "service_id": "s1"})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: served_by(node_a, "/r1") == "a", 5)


class WriteAnswersLost(TcpRelay):
    """Passes everything but the answers to the first `lost` transactions (writes), which etcd
    applies: a link that died at the worst moment."""

    def __init__(self, target_port, lost=1):
        super().__init__(target_port)
        self.to_lose = lost

    def on_data(self, data, to_target, state):
        if to_target and data.startswith(b"POST /v3/kv/txn ") and self.to_lose > 0:
            self.to_lose -= 1
            state["lose_answer"] = True
        return not (not to_target and state.get("lose_answer"))


def test_a_write_whose_answer_was_lost_is_sent_again_and_applies_once(etcd, gateway):
    # The transaction is sent again on a new connection. Its compares hold for one copy only:
    # the POST's second copy finds its id taken by the first, sees its own value there and
    # answers 201 (not a second upstream under a new id); the DELETE's finds the key gone.
    relay = WriteAnswersLost(etcd.client_port, lost=0)
    try:
        node = gateway(etcd=etcd, endpoints=[f"http://127.0.0.1:{relay.port}"],
                       etcd_options={"timeout": 1})
        relay.to_lose = 1
        r = node.admin("POST", "/upstreams", inline_upstream(1980))
        assert r.status_code == 201, r.text
        stored = etcd.get_prefix(node.key("upstreams", ""))
        assert len(stored) == 1 and r.json()["key"] in stored
        node.wait_log_line("may or may not have been applied; sending it once more")
        uid = r.json()["value"]["id"]

        relay.to_lose = 1
        r = node.admin("PATCH", f"/upstreams/{uid}", {"desc": "patched"})
        assert r.status_code == 200, r.text
        assert etcd.get_json(node.key("upstreams", uid))["desc"] == "patched"
        assert etcd.version(node.key("upstreams", uid)) == 2  # created, then patched once

        relay.to_lose = 1
        r = node.admin("DELETE", f"/upstreams/{uid}")
        assert r.status_code == 200, r.text
        assert etcd.get_prefix(node.key("upstreams", "")) == {}

        # both copies' answers lost: the outcome cannot be known, and the client is told so
        relay.to_lose = 2
        r = node.admin("POST", "/upstreams", inline_upstream(1981))
        assert r.status_code == 503, r.text
        assert "may or may not have been applied" in error_msg(r), r.text
        assert len(etcd.get_prefix(node.key("upstreams", ""))) == 1  # applied once, not twice
        r = node.admin("POST", "/upstreams", inline_upstream(1982))
        assert r.status_code == 201, r.text
        assert len(etcd.get_prefix(node.key("upstreams", ""))) == 2
    finally:
        relay.close()


def test_a_delete_racing_a_write_on_another_node_leaves_no_dangling_reference(two_nodes,
                                                                              upstream, etcd):
    # Node A writes a route that uses u1; B, whose view lags, has not seen it and must not
    # delete u1 from under it.
    node_a, node_b, relay = two_nodes
    a = upstream(name="a")
    assert node_a.admin("PUT", "/upstreams/u1", inline_upstream(a.port)).status_code == 201
    assert wait_until(lambda: node_b.admin("GET", "/upstreams/u1").status_code == 200, 5)
    relay.freeze()
    # B's pooled connections are frozen too: one read pays the timeout and replaces them.
    assert node_b.admin("GET", "/upstreams/u1").status_code == 200
    r = node_a.admin("PUT", "/routes/r1", {"uri": "/r1", "upstream_id": "u1"})
    assert r.status_code == 201, r.text
    r = node_b.admin("DELETE", "/upstreams/u1")
    assert r.status_code in (400, 409), r.text
    assert etcd.get_json(node_a.key("upstreams", "u1")) is not None
    assert wait_until(lambda: served_by(node_a, "/r1") == "a", 5)


def test_an_update_racing_a_write_on_another_node_does_not_break_it(two_nodes, upstream, etcd):
    # Node A writes a route that relies on service s1's upstream; B, whose view lags, has not
    # seen it and must not take that upstream away (the route would fall out of the config).
    node_a, node_b, relay = two_nodes
    a = upstream(name="a")
    assert node_a.admin("PUT", "/upstreams/u1", inline_upstream(a.port)).status_code == 201
    assert node_a.admin("PUT", "/services/s1", {"upstream_id": "u1"}).status_code == 201
    assert wait_until(lambda: node_b.admin("GET", "/services/s1").status_code == 200, 5)
    relay.freeze()
    assert node_b.admin("GET", "/services/s1").status_code == 200  # replaces frozen connections
    r = node_a.admin("PUT", "/routes/r1", {"uri": "/r1", "service_id": "s1"})
    assert r.status_code == 201, r.text
    # what B's transaction compares: one key that every route write through the API touches
    assert etcd.get(node_a.key(".portico/changed", "routes")) == ""
    r = node_b.admin("PATCH", "/services/s1", {"upstream_id": None})
    # 409 while B's view stays behind; 400 naming r1 once B's watch was found dead and renewed
    assert (r.status_code == 409 and "kept changing" in error_msg(r)) or (
        r.status_code == 400 and '"r1"' in error_msg(r)), r.text
    assert etcd.get_json(node_a.key("services", "s1"))["upstream_id"] == "u1"
    assert wait_until(lambda: served_by(node_a, "/r1") == "a", 5)


# ---------------------------------------------------------------------------------------------
# validation and request errors


BAD_OBJECTS = [
    ("/routes/v1", {"upstream": inline_upstream(1980)}, "uri"),
    ("/routes/v2", {"uri": "/x", "upstream": {"type": "roundrobin", "nodes": [
        {"host": "127.0.0.1", "port": 70000, "weight": 1}]}}, "upstream.nodes[0].port"),
    ("/routes/v3", {"uri": 5, "upstream": inline_upstream(1980)}, "uri"),
    ("/routes/v4", {"uri": "/x", "upstream": inline_upstream(1980), "bogus_field": 1}, "bogus_field"),
    ("/routes/v5", {"uri": "/x", "methods": ["FETCH"], "upstream": inline_upstream(1980)}, "methods"),
    ("/upstreams/v6", {"type": "nonsense", "nodes": {"127.0.0.1:1980": 1}}, "type"),
    ("/upstreams/v7", {"nodes": [{"host": "127.0.0.1", "port": 0, "weight": 1}]}, "nodes[0].port"),
    ("/consumers", {"plugins": {}}, "username"),
    ("/protos/v8", {}, "content"),
]


@pytest.mark.parametrize("path,body,field", BAD_OBJECTS, ids=[b[0] + ":" + b[2] for b in BAD_OBJECTS])
def test_validation_errors_name_the_field(egw, etcd, path, body, field):
    r = egw.admin("PUT", path, body)
    assert r.status_code == 400, r.text
    msg = error_msg(r)
    assert msg.startswith("invalid configuration: "), msg
    assert field in msg, msg
    assert etcd.get_prefix(egw.prefix + "/") == {}


def test_malformed_json_oversized_and_unknown_kind(egw, etcd):
    hdr = {"Content-Type": "application/json"}
    r = egw.admin("PUT", "/routes/bad", data=b'{"uri": "/x", "upstream": ', headers=hdr)
    assert r.status_code == 400 and error_msg(r)
    r = egw.admin("POST", "/routes", data=b"not json at all", headers=hdr)
    assert r.status_code == 400 and error_msg(r)
    r = egw.admin("PUT", "/routes/arr", data=b"[1, 2]", headers=hdr)
    assert r.status_code == 400 and error_msg(r)
    big = {"uri": "/big", "upstream": inline_upstream(1980), "desc": "x" * (2 << 20)}
    r = egw.admin("PUT", "/routes/big", big)  # over the default admin.max_body (1m)
    assert r.status_code == 413
    # a value nested 100k deep would crash anything that serialises it recursively
    deep = b'{"uri": "/deep", "labels": {"x": ' + b"[" * 100000 + b"]" * 100000 + b"}}"
    r = egw.admin("PUT", "/routes/deep", data=deep, headers=hdr)
    assert r.status_code == 400 and "nested deeper than 64 levels" in error_msg(r)
    r = egw.admin("PATCH", "/routes/deep", data=deep, headers=hdr)
    assert r.status_code == 400 and "nested deeper" in error_msg(r)
    assert etcd.get_prefix(egw.prefix + "/") == {}
    # written straight into etcd: skipped with a reason, the node keeps serving
    etcd.put(egw.prefix + "/routes/deep", deep.decode())
    egw.wait_log_line("routes/deep", "nested deeper than 64 levels")
    assert egw.control("/v1/health").status_code == 200
    etcd.delete(egw.prefix + "/routes/deep")

    assert egw.admin("GET", "/nonsense").status_code == 404
    assert egw.admin("GET", "/nonsense/1").status_code == 404
    assert egw.admin("PUT", "/nonsense/1", {"a": 1}).status_code == 404
    r = egw.admin("GET", "/routes/missing")
    assert r.status_code == 404 and error_msg(r)


# ---------------------------------------------------------------------------------------------
# keys, roles, allow list


def test_keys_and_roles(egw, etcd):
    ups = inline_upstream(1980)
    for key in (None, "wrong-key"):
        r = egw.admin("GET", "/routes", key=key)
        assert r.status_code == 401
        assert r.json() == {"error_msg": "failed to check token"}
        assert egw.admin("PUT", "/routes/x", {"uri": "/x", "upstream": ups}, key=key).status_code == 401

    assert egw.admin("PUT", "/routes/r1", {"uri": "/r1", "upstream": ups}, key=ADMIN_KEY).status_code == 201
    r = egw.admin("GET", "/routes/r1", key=VIEWER_KEY)
    assert r.status_code == 200 and r.json()["value"]["uri"] == "/r1"
    assert egw.admin("GET", "/routes", key=VIEWER_KEY).json()["total"] == 1

    before = etcd.get_prefix(egw.prefix + "/")
    assert egw.admin("PUT", "/routes/r2", {"uri": "/r2", "upstream": ups}, key=VIEWER_KEY).status_code == 403
    assert egw.admin("POST", "/routes", {"uri": "/r3", "upstream": ups}, key=VIEWER_KEY).status_code == 403
    assert egw.admin("PATCH", "/routes/r1", {"uri": "/changed"}, key=VIEWER_KEY).status_code == 403
    assert egw.admin("DELETE", "/routes/r1", key=VIEWER_KEY).status_code == 403
    assert etcd.get_prefix(egw.prefix + "/") == before


def test_allow_list_refuses_other_addresses(gateway):
    gw = gateway({"routes": []}, admin={"keys": DEFAULT_ADMIN_KEYS, "allow": ["10.0.0.0/8"]})
    r = gw.admin("GET", "/routes")
    assert r.status_code == 403
    assert gw.admin("PUT", "/routes/x", {"uri": "/x", "upstream": inline_upstream(1980)}).status_code == 403
    # loopback is allowed by default
    gw2 = gateway({"routes": []})
    assert gw2.admin("GET", "/routes").status_code == 200


def test_peers_outside_the_allow_list_cannot_hold_the_admin_api(gateway):
    # 127.0.0.2 is loopback too, but not in the list: it is answered 403 at once, and slow
    # requests from it (more than the 256 connections the Admin API serves) take no slot.
    gw = gateway({"routes": []}, admin={"keys": DEFAULT_ADMIN_KEYS, "allow": ["127.0.0.1/32"]})
    held = []
    try:
        for _ in range(300):
            s = socket.socket()
            s.settimeout(5)
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", gw.admin_port))
            s.sendall(b"GET /apisix/admin/routes HTTP/1.1\r\nHost: a\r\n")  # never finished
            held.append(s)
        answer = held[0].recv(4096).decode()
        assert answer.startswith("HTTP/1.1 403") and "127.0.0.2 is not in admin.allow" in answer
        assert gw.admin("GET", "/routes").status_code == 200
    finally:
        for s in held:
            s.close()


GENERATED = re.compile(r"portico: generated an Admin API key \(role admin\) and saved it in (.+) "
                       r"under admin\.keys: ([0-9a-f]{32})")


@pytest.mark.parametrize("admin", [{"keys": []}, {}], ids=["empty-keys", "no-keys"])
def test_generated_admin_key_is_saved_and_reused(gateway, upstream, admin):
    a = upstream(name="a")
    gw = gateway({"routes": [route("/*", [(a.port,)], id="r")]}, admin=admin)
    assert wait_until(lambda: gw.config()["admin"].get("keys"), 5), gw.config_path.read_text()
    cfg = gw.config()
    keys = cfg["admin"]["keys"]
    assert len(keys) == 1 and keys[0]["role"] == "admin", keys
    key = keys[0]["key"]
    assert re.fullmatch(r"[0-9a-f]{32}", key), key
    # the rest of the config file survived the rewrite
    assert cfg["node"]["listen"] == [f"127.0.0.1:{gw.port}"]
    assert cfg["admin"]["listen"] == f"127.0.0.1:{gw.admin_port}"
    assert cfg["config"]["provider"] == "yaml"
    assert gw.admin("GET", "/routes", key=key).status_code == 200
    assert gw.admin("GET", "/routes", key=None).status_code == 401
    assert served_by(gw, "/x") == "a"
    assert gw.stop() == 0
    lines = [line for line in gw.stdout().splitlines() if "generated an Admin API key" in line]
    assert len(lines) == 1, gw.stdout()
    m = GENERATED.fullmatch(lines[0].strip())
    assert m, lines[0]
    assert m.group(1) == str(gw.config_path) and m.group(2) == key

    # a second start finds the key and generates nothing
    gw.start()
    assert gw.config()["admin"]["keys"] == keys
    assert gw.admin("GET", "/routes", key=key).status_code == 200
    assert gw.stop() == 0
    assert "generated" not in gw.stdout()


# ---------------------------------------------------------------------------------------------
# yaml mode


def test_yaml_mode_reads_from_the_file_and_refuses_writes(gateway, upstream):
    a = upstream(name="a")
    objects = {
        "upstreams": [{"id": "u1", "nodes": {f"127.0.0.1:{a.port}": 1}}],
        "services": [{"id": "s1", "upstream_id": "u1"}],
        "routes": [route("/a", [(a.port,)], id="r1"), {"id": "r2", "uri": "/b", "service_id": "s1"}],
        "consumers": [{"username": "jack", "plugins": {}}],
    }
    gw = gateway(objects)
    out = gw.admin("GET", "/routes").json()
    assert out["total"] == 2
    assert {i["value"]["id"] for i in out["list"]} == {"r1", "r2"}
    r = gw.admin("GET", "/routes/r1")
    assert r.status_code == 200 and r.json()["value"]["uri"] == "/a"
    assert gw.admin("GET", "/upstreams/u1").json()["value"]["nodes"] == {f"127.0.0.1:{a.port}": 1}
    assert gw.admin("GET", "/services/s1").json()["value"]["upstream_id"] == "u1"
    assert gw.admin("GET", "/consumers/jack").json()["value"]["username"] == "jack"
    assert gw.admin("GET", "/routes/nope").status_code == 404
    assert gw.admin("GET", "/routes/r1", key=VIEWER_KEY).status_code == 200

    text = gw.routes_path.read_text()
    ups = inline_upstream(a.port)
    for method, path, body in [("PUT", "/routes/r3", {"uri": "/c", "upstream": ups}),
                               ("POST", "/routes", {"uri": "/c", "upstream": ups}),
                               ("PATCH", "/routes/r1", {"uri": "/z"}),
                               ("DELETE", "/routes/r1", None)]:
        r = gw.admin(method, path, body)
        assert r.status_code == 400, (method, r.text)
        msg = error_msg(r)
        assert "source of truth" in msg and "routes.yaml" in msg, msg
    assert gw.routes_path.read_text() == text
    assert served_by(gw, "/a") == "a" and served_by(gw, "/b") == "a"

    # reads follow the file when it changes
    gw.write_routes({"routes": [route("/a", [(a.port,)], id="r1"), route("/n", [(a.port,)], id="new")]})
    assert wait_until(lambda: gw.admin("GET", "/routes/new").status_code == 200, 5)
    assert gw.admin("GET", "/routes").json()["total"] == 2


def test_routes_match_explains(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/api/*", [(up.port,)], id="api", methods=["POST"]),
        route("/api/v1/*", [(up.port,)], id="v1"),
        route("/static/*", [(up.port,)], id="static"),
        route("/office/*", [(up.port,)], id="office", remote_addrs=["10.0.0.0/8"]),
    ]})
    r = gw.admin("GET", "/routes/match", params={"method": "POST", "host": "x.test",
                                                 "uri": "/api/v1/chat", "remote_addr": "1.2.3.4"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["matched"] == "v1"
    assert "match: route v1" in out["explain"]
    cands = {c["id"]: c["result"] for c in out["candidates"]}
    assert {"api", "static"} <= set(cands)
    assert cands.get("v1", "match") == "match"  # the winner may or may not be listed
    assert cands["api"] == "match"  # matches too, loses on precedence
    assert cands["static"] != "match" and "uri" in cands["static"]

    out = gw.admin("GET", "/routes/match", params={"method": "GET", "uri": "/api/x",
                                                   "remote_addr": "1.2.3.4"}).json()
    assert out["matched"] is None
    assert "no route matches" in out["explain"]
    cands = {c["id"]: c["result"] for c in out["candidates"]}
    assert "method" in cands["api"] and "GET" in cands["api"]

    def office(addr):
        return gw.admin("GET", "/routes/match", params={"method": "GET", "uri": "/office/1",
                                                        "remote_addr": addr}).json()["matched"]
    assert office("10.1.2.3") == "office"
    assert office("1.2.3.4") is None
    # viewers may ask too
    assert gw.admin("GET", "/routes/match", key=VIEWER_KEY,
                    params={"method": "GET", "uri": "/static/x"}).json()["matched"] == "static"
    # a remote_addr that is not an address is a bad request, not "any client"
    r = gw.admin("GET", "/routes/match", params={"uri": "/office/1", "remote_addr": "garbage"})
    assert r.status_code == 400 and "remote_addr" in error_msg(r)


def test_bad_query_and_paths_are_400_not_crashes(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/a", [(up.port,)], id="a")]})
    for params in ({"page": "0"}, {"page": "99999999999999999999"}, {"page_size": "abc"},
                   {"page_size": "100000"}):
        r = gw.admin("GET", "/routes", params=params)
        assert r.status_code == 400, (params, r.text)
    r = gw.admin("GET", "/routes/a/upstream")
    assert r.status_code == 400 and "sub-path" in error_msg(r)
    assert gw.admin("GET", "/routes/a").status_code == 200  # and the node is still there"


def test_plugin_list_and_plugin_writes(egw, upstream):
    names = egw.admin("GET", "/plugins/list").json()
    for name in ("limit-req", "limit-count", "key-auth", "jwt-auth", "real-ip", "proxy-rewrite"):
        assert name in names
    assert egw.admin("GET", "/plugins/limit-req").json()["priority"] == 1001
    assert egw.admin("GET", "/plugins/no-such").status_code == 404
    up = upstream()
    bad = {"uri": "/p", "upstream": {"nodes": {f"127.0.0.1:{up.port}": 1}},
           "plugins": {"limit-req": {"rate": -1, "burst": 0}}}
    r = egw.admin("PUT", "/routes/p", bad)
    assert r.status_code == 400 and "plugins.limit-req.rate" in error_msg(r)
    good = dict(bad, plugins={"response-rewrite": {"headers": {"set": {"X-Via": "admin"}}}})
    assert egw.admin("PUT", "/routes/p", good).status_code == 201
    assert egw.wait_until(lambda: egw.get("/p").headers.get("X-Via") == "admin")
