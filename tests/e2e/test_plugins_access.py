"""Access-control plugins through the binary: basic-auth with consumers, consumer-restriction
(by consumer, route, service and method), ua-restriction and referer-restriction, with APISIX's
answers, and their schema errors."""
import base64

import pytest

from conftest import assert_plugin_errors, route, validate


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def headers_seen(r):
    return {k.lower(): v for k, v in r.json()["headers"]}


# ----------------------------------------------------------------------------- basic-auth

def test_basic_auth_names_the_consumer_and_answers_apisix_401s(gateway, upstream):
    up = upstream()
    gw = gateway({
        "routes": [
            route("/open", [(up.port,)], id="open", plugins={"basic-auth": {}}),
            route("/hidden", [(up.port,)], id="hidden", plugins={
                "basic-auth": {"hide_credentials": True, "realm": "chat"}}),
        ],
        "consumers": [
            {"username": "jack", "plugins": {
                "basic-auth": {"username": "jack", "password": "p:ss word"},
                "proxy-rewrite": {"headers": {"set": {"X-Who": "$consumer_name"}}}}},
            {"username": "rose", "plugins": {"basic-auth": {"username": "rose", "password": "r"}}},
        ]})
    r = gw.get("/open", headers=basic("jack", "p:ss word"))
    assert r.status_code == 200
    seen = headers_seen(r)
    assert seen["x-who"] == "jack" and seen["authorization"].startswith("Basic ")
    assert gw.get("/open", headers=basic("rose", "r")).status_code == 200

    r = gw.get("/open")
    assert r.status_code == 401 and r.json() == {"message": "Missing authorization in request"}
    assert r.headers["WWW-Authenticate"] == 'Basic realm="basic"'
    for bad in ({"Authorization": "Bearer abc"}, {"Authorization": "Basic !!!"},
                {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}):
        r = gw.get("/open", headers=bad)
        assert r.status_code == 401, bad
        assert r.json() == {"message": "Invalid authorization in request"}, bad
    for user, password in (("jack", "p:ss"), ("jack", "P:ss word"), ("nobody", "r"),
                           ("rose", "")):
        r = gw.get("/open", headers=basic(user, password))
        assert r.status_code == 401 and r.json() == {"message": "Invalid user authorization"}

    r = gw.get("/hidden", headers=basic("rose", "r"))
    assert r.status_code == 200 and "authorization" not in headers_seen(r)
    assert gw.get("/hidden").headers["WWW-Authenticate"] == 'Basic realm="chat"'


def test_basic_auth_schema_errors(tmp_path):
    ups = {"nodes": {"127.0.0.1:1": 1}}
    rc, out = validate(tmp_path, {
        "routes": [{"id": "r", "uri": "/a", "upstream": ups,
                    "plugins": {"basic-auth": {"realm": 'a"b'}}}],
        "consumers": [
            {"username": "a", "plugins": {"basic-auth": {"username": "a"}}},
            {"username": "b", "plugins": {"basic-auth": {"username": "x:y", "password": "p"}}},
        ]})
    assert rc != 0
    for want in ("routes[0].plugins.basic-auth.realm", "consumers[0].plugins.basic-auth.password",
                 "consumers[1].plugins.basic-auth.username"):
        assert want in out, f"{want!r} not in:\n{out}"
    rc, out = validate(tmp_path, {
        "routes": [{"id": "r", "uri": "/a", "upstream": ups, "plugins": {"basic-auth": {}}}],
        "consumers": [
            {"username": "c", "plugins": {"basic-auth": {"username": "same", "password": "1"}}},
            {"username": "d", "plugins": {"basic-auth": {"username": "same", "password": "2"}}},
        ]})
    assert rc != 0 and 'consumers[1].plugins.basic-auth: credential already used by consumer "c"' \
        in out, out


# -------------------------------------------------------------------- consumer-restriction

def test_consumer_restriction_by_consumer_name_and_method(gateway, upstream):
    up = upstream()
    gw = gateway({
        "routes": [
            route("/white", [(up.port,)], id="white", plugins={
                "key-auth": {}, "consumer-restriction": {"whitelist": ["jack"]}}),
            route("/black", [(up.port,)], id="black", plugins={
                "key-auth": {}, "consumer-restriction": {
                    "blacklist": ["rose"], "rejected_code": 429, "rejected_msg": "go away"}}),
            route("/methods", [(up.port,)], id="methods", plugins={
                "key-auth": {}, "consumer-restriction": {
                    "allowed_by_methods": [{"user": "rose", "methods": ["GET"]}]}}),
            route("/noauth", [(up.port,)], id="noauth", plugins={
                "consumer-restriction": {"whitelist": ["jack"]}}),
        ],
        "consumers": [
            {"username": "jack", "plugins": {"key-auth": {"key": "jk"}}},
            {"username": "rose", "plugins": {"key-auth": {"key": "rk"}}},
        ]})
    jack, rose = {"apikey": "jk"}, {"apikey": "rk"}
    assert gw.get("/white", headers=jack).status_code == 200
    r = gw.get("/white", headers=rose)
    assert r.status_code == 403 and r.json() == {"message": "The consumer_name is forbidden."}
    assert gw.get("/black", headers=jack).status_code == 200
    r = gw.get("/black", headers=rose)
    assert r.status_code == 429 and r.json() == {"message": "go away"}
    assert gw.get("/methods", headers=rose).status_code == 200
    assert requests_post(gw, "/methods", rose).status_code == 403
    assert requests_post(gw, "/methods", jack).status_code == 200  # jack is not restricted
    r = gw.get("/noauth")
    assert r.status_code == 401
    assert r.json() == {
        "message": "The request is rejected, please check the consumer_name for this request"}
    # Refused requests never reach the upstream: rose got through once (GET /methods).
    assert len([q for q in up.requests if q.header("apikey") == "rk"]) == 1


def requests_post(gw, path, headers):
    import requests
    return requests.post(gw.url(path), headers=headers, data=b"x", timeout=5)


def test_consumer_restriction_on_a_consumer_limits_its_routes(gateway, upstream):
    up = upstream()
    gw = gateway({
        "services": [{"id": "chat", "upstream": {"nodes": {f"127.0.0.1:{up.port}": 1}}}],
        "routes": [
            {"id": "send", "uri": "/send", "service_id": "chat", "plugins": {"key-auth": {}}},
            {"id": "admin", "uri": "/admin", "upstream": {"nodes": {f"127.0.0.1:{up.port}": 1}},
             "plugins": {"key-auth": {}}},
        ],
        "consumers": [{"username": "app", "plugins": {
            "key-auth": {"key": "ak"},
            "consumer-restriction": {"type": "route_id", "whitelist": ["send"]}}},
            {"username": "svc", "plugins": {
                "key-auth": {"key": "sk"},
                "consumer-restriction": {"type": "service_id", "blacklist": ["chat"]}}}]})
    assert gw.get("/send", headers={"apikey": "ak"}).status_code == 200
    r = gw.get("/admin", headers={"apikey": "ak"})
    assert r.status_code == 403 and r.json() == {"message": "The route_id is forbidden."}
    r = gw.get("/send", headers={"apikey": "sk"})
    assert r.status_code == 403 and r.json() == {"message": "The service_id is forbidden."}
    r = gw.get("/admin", headers={"apikey": "sk"})  # a route without a service
    assert r.status_code == 401 and "service_id" in r.json()["message"]


def test_consumer_restriction_schema_errors(tmp_path):
    bad = [({}, "consumer-restriction: needs blacklist"),
           ({"type": "consumer_groups", "whitelist": ["a"]}, "consumer-restriction.type"),
           ({"whitelist": []}, "consumer-restriction.whitelist"),
           ({"allowed_by_methods": [{"user": "a", "methods": ["FETCH"]}]},
            "consumer-restriction.allowed_by_methods[0].methods"),
           ({"whitelist": ["a"], "rejected_code": 99}, "consumer-restriction.rejected_code")]
    assert_plugin_errors(tmp_path, "consumer-restriction", bad)


# --------------------------------------------------------------------------- ua-restriction

def test_ua_restriction_allowlist_and_denylist(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/allow", [(up.port,)], id="allow", plugins={
            "ua-restriction": {"allowlist": [r"^HelloChat/\d+", "curl"]}}),
        route("/deny", [(up.port,)], id="deny", plugins={
            "ua-restriction": {"denylist": ["(?i)bot", "Scrapy"], "message": "no bots"}}),
        route("/bypass", [(up.port,)], id="bypass", plugins={
            "ua-restriction": {"denylist": ["bot"], "bypass_missing": True}}),
    ]})
    assert gw.get("/allow", headers={"User-Agent": "HelloChat/7.1 (iOS)"}).status_code == 200
    assert gw.get("/allow", headers={"User-Agent": "my curl/8"}).status_code == 200  # anywhere
    r = gw.get("/allow", headers={"User-Agent": "Mozilla/5.0 HelloChat/7"})
    assert r.status_code == 403 and r.json() == {"message": "Not allowed"}
    assert gw.get("/deny", headers={"User-Agent": "Mozilla/5.0"}).status_code == 200
    for ua in ("GoogleBot/2.1", "Scrapy/2.0", "xBOTx"):
        r = gw.get("/deny", headers={"User-Agent": ua})
        assert r.status_code == 403 and r.json() == {"message": "no bots"}, ua
    # requests always sends a User-Agent: a missing one needs a raw request.
    assert raw_status(gw, "/deny") == 403
    assert raw_status(gw, "/bypass") == 200
    assert raw_status(gw, "/deny", "User-Agent: fine\r\nUser-Agent: a bot\r\n") == 403


def raw_status(gw, path, extra=""):
    import socket
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_ua_restriction_schema_errors(tmp_path):
    bad = [({}, "ua-restriction.allowlist: exactly one of allowlist or denylist"),
           ({"allowlist": ["a"], "denylist": ["b"]}, "ua-restriction.allowlist: exactly one"),
           ({"denylist": ["(unclosed"]}, "ua-restriction.denylist[0]"),
           ({"allowlist": []}, "ua-restriction.allowlist"),
           ({"denylist": ["a"], "message": ""}, "ua-restriction.message")]
    assert_plugin_errors(tmp_path, "ua-restriction", bad)


# ---------------------------------------------------------------------- referer-restriction

def test_referer_restriction_whitelist_blacklist_and_missing(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/white", [(up.port,)], id="white", plugins={
            "referer-restriction": {"whitelist": ["chat.example.com", "*.cdn.example.com"]}}),
        route("/black", [(up.port,)], id="black", plugins={
            "referer-restriction": {"blacklist": ["evil.test"], "bypass_missing": True,
                                    "message": "not from there"}}),
    ]})

    def status(path, referer=None):
        return gw.get(path, headers={"Referer": referer} if referer else {}).status_code

    assert status("/white", "https://chat.example.com/room?x=1") == 200
    assert status("/white", "http://CHAT.example.com:8080/") == 200
    assert status("/white", "https://a.cdn.example.com/x") == 200
    assert status("/white", "//b.cdn.example.com/x") == 200
    assert status("/white", "https://cdn.example.com/") == 403  # "*." needs a label before
    assert status("/white", "https://chat.example.com@evil.test/") == 403
    r = gw.get("/white", headers={"Referer": "https://evil.test/"})
    assert r.status_code == 403 and r.json() == {"message": "Your referer host is not allowed"}
    assert status("/white") == 403  # missing, no bypass
    assert status("/white", "chat.example.com") == 403  # not a URL: as missing
    assert status("/black", "https://ok.test/") == 200
    assert status("/black") == 200
    r = gw.get("/black", headers={"Referer": "http://Evil.Test/page"})
    assert r.status_code == 403 and r.json() == {"message": "not from there"}
    assert status("/black", "HTTP://evil.test/") == 403  # not taken for a missing Referer
    assert status("/black", "https://evil.test./") == 403


def test_referer_restriction_schema_errors(tmp_path):
    bad = [({}, "referer-restriction.whitelist: exactly one of whitelist or blacklist"),
           ({"whitelist": ["a.com"], "blacklist": ["b.com"]},
            "referer-restriction.whitelist: exactly one"),
           ({"whitelist": ["a.com:80"]}, "referer-restriction.whitelist[0]"),
           ({"blacklist": ["a.*.com"]}, "referer-restriction.blacklist[0]")]
    assert_plugin_errors(tmp_path, "referer-restriction", bad)


# ----------------------------------------------------------------------------- client-control

def test_client_control_limits_bodies_per_route(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/small/*", [(up.port,)], id="small", plugins={"client-control": {"max_body_size": 10}}),
        route("/any/*", [(up.port,)], id="any", plugins={"client-control": {"max_body_size": 0}}),
        route("/free/*", [(up.port,)], id="free")]},
        node={"client_max_body_size": "1k"})
    r = gw.get("/small/x", data=b"0123456789")
    assert r.status_code == 200 and r.json()["body_len"] == 10
    r = gw.get("/small/x", data=b"0123456789a")
    assert r.status_code == 413 and r.json()["error_msg"] == "request body too large"
    assert gw.get("/free/x", data=b"b" * 1000).status_code == 200
    # 0 adds no limit, and the node's still holds.
    assert gw.get("/any/x", data=b"c" * 1000).status_code == 200
    assert gw.get("/any/x", data=b"c" * 1025).status_code == 413
    # A chunked body is cut off once it grows past the size.
    sent = len(up.requests)
    chunks = iter([b"01234", b"56789", b"x"])
    assert gw.get("/small/x", data=chunks).status_code == 413
    assert len(up.requests) == sent  # begun upstream perhaps, never completed
    assert gw.get("/small/x", data=iter([b"01234", b"56789"])).json()["body_len"] == 10


def test_client_control_schema_errors(tmp_path):
    assert_plugin_errors(tmp_path, "client-control", [
        ({"max_body_size": -1}, "client-control.max_body_size"),
        ({"max_body_size": "lots"}, "client-control.max_body_size"),
        ({"max_size": 1}, "client-control.max_size")])
