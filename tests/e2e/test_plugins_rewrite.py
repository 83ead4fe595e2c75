"""Rewriting plugins through the binary: proxy-rewrite (uri, regex_uri, method, host, headers),
response-rewrite (on upstream answers and on plugin answers), request-id, cors."""
import json
import re
import socket

import requests

from conftest import assert_plugin_errors, route, validate

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def headers_seen(r):
    out = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


# --------------------------------------------------------------------------- proxy-rewrite

def test_proxy_rewrite_uri_regex_method_host(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/old", [(up.port,)], id="fixed", plugins={"proxy-rewrite": {"uri": "/new"}}),
        route("/api/*", [(up.port,)], id="regex", plugins={"proxy-rewrite": {
            "regex_uri": ["^/api/(\\w+)/(\\d+)$", "/v2/$2/$1"]}}),
        route("/with-query", [(up.port,)], id="with-query",
              plugins={"proxy-rewrite": {"uri": "/new?fixed=1"}}),
        route("/post", [(up.port,)], id="method", plugins={"proxy-rewrite": {
            "method": "POST", "host": "backend.internal"}}),
    ]})
    r = gw.get("/old?a=1&b=2")
    assert r.json()["target"] == "/new?a=1&b=2"  # the query is kept
    assert gw.get("/old").json()["target"] == "/new"
    # A uri with its own query gets the request's after '&' (APISIX).
    assert gw.get("/with-query?a=1").json()["target"] == "/new?fixed=1&a=1"
    assert gw.get("/with-query").json()["target"] == "/new?fixed=1"
    assert gw.get("/api/users/42?x=y").json()["target"] == "/v2/42/users?x=y"
    assert gw.get("/api/no/match/here").json()["target"] == "/api/no/match/here"
    r = gw.get("/post")
    assert r.json()["method"] == "POST"
    assert headers_seen(r)["host"] == ["backend.internal"]


def test_proxy_rewrite_headers_add_set_remove(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/ops", [(up.port,)], id="ops", plugins={"proxy-rewrite": {"headers": {
            "add": {"X-Add": "added"},
            "set": {"X-Set": "new", "X-Both": "set"},
            "remove": ["X-Remove", "X-Both"]}}}),
        route("/flat", [(up.port,)], id="flat", plugins={"proxy-rewrite": {"headers": {
            "X-Flat": "v", "X-Gone": ""}}}),
    ]})
    h = headers_seen(gw.get("/ops", headers={
        "X-Set": "old", "X-Remove": "1", "X-Add": "client", "X-Both": "client"}))
    assert h["x-set"] == ["new"]
    assert "x-remove" not in h
    assert h["x-add"] == ["client", "added"]
    # APISIX runs add, remove, then set: a header both removed and set ends up set, once.
    assert h["x-both"] == ["set"]
    h = headers_seen(gw.get("/flat", headers={"X-Gone": "1", "X-Flat": "old"}))
    assert h["x-flat"] == ["v"] and "x-gone" not in h


# ------------------------------------------------------------------------ response-rewrite

def test_response_rewrite_on_upstream_answers(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/all", [(up.port,)], id="all", plugins={"response-rewrite": {
            "status_code": 202, "body": "replaced\n",
            "headers": {"set": {"X-Resp": "1"}, "remove": ["X-Upstream"],
                        "add": ["X-Added: a", "X-Added: b"]}}}),
        route("/status/*", [(up.port,)], id="st", plugins={"response-rewrite": {
            "status_code": 200}}),
        route("/b64", [(up.port,)], id="b64", plugins={"response-rewrite": {
            "body": "aGVsbG8=", "body_base64": True}}),
    ]})
    r = gw.get("/all")
    assert r.status_code == 202 and r.text == "replaced\n"
    assert r.headers["Content-Length"] == str(len("replaced\n"))
    assert r.headers["X-Resp"] == "1" and "X-Upstream" not in r.headers
    assert r.headers["X-Added"] == "a, b"
    r = gw.get("/status/404")  # status only: the upstream's body goes through
    assert r.status_code == 200 and r.text == "status 404\n"
    assert gw.get("/b64").text == "hello"
    # keep-alive still works after a replaced body (the upstream's is not read)
    with requests.Session() as s:
        for _ in range(3):
            assert s.get(gw.url("/all")).text == "replaced\n"


def test_response_rewrite_body_is_not_sent_where_no_body_may_go(gateway, upstream):
    """HEAD, 204 and 304 answers carry no body, a configured one included; the connection stays
    usable for the next request."""
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)], id="all", plugins={
        "response-rewrite": {"body": "hello\n", "headers": {"X-Rewritten": "1"}}})]})
    for first in (b"HEAD /x", b"GET /status/204", b"GET /status/304"):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(first + b" HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"hello\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        assert b"X-Rewritten: 1" in head, data
        assert rest.startswith(b"HTTP/1.1 200"), data  # no body bytes before the next answer
        assert rest.endswith(b"\r\n\r\nhello\n"), data


def test_response_rewrite_vars_choose_the_responses_it_rewrites(gateway, upstream):
    """APISIX's `vars`: the rewrite (status, headers, body, filters) applies only to responses
    the conditions match; they may read the response status and the request's variables."""
    up = upstream()
    gw = gateway({"routes": [
        route("/status/*", [(up.port,)], id="mask", plugins={"response-rewrite": {
            "vars": [["status", ">=", 500]], "status_code": 503,
            "body": "{\"error\":\"try later\"}", "headers": {"set": {"X-Masked": "1"}}}}),
        route("/echo/*", [(up.port,)], id="debug", plugins={"response-rewrite": {
            "vars": [["arg_debug", "==", "1"], ["upstream_status", "==", 200]],
            "filters": [{"regex": "/echo/", "replace": "/ECHO/", "scope": "global"}]}}),
        route("/guarded", [(up.port,)], id="guarded", plugins={
            "key-auth": {},
            "response-rewrite": {"vars": [["upstream_status", "==", 401]], "body": "never"}}),
    ], "consumers": [{"username": "u", "plugins": {"key-auth": {"key": "k"}}}]})
    r = gw.get("/status/502")
    assert r.status_code == 503 and r.json() == {"error": "try later"}
    assert r.headers["X-Masked"] == "1"
    r = gw.get("/status/404")  # not matched: the upstream's answer, untouched
    assert r.status_code == 404 and r.text == "status 404\n" and "X-Masked" not in r.headers
    assert "/ECHO/x" in gw.get("/echo/x?debug=1").text
    assert "/echo/x" in gw.get("/echo/x?debug=0").text
    # key-auth's own 401 has no upstream status: not rewritten
    r = gw.get("/guarded")
    assert r.status_code == 401 and r.text != "never"


def test_response_rewrite_on_plugin_answers(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/guarded", [(up.port,)], id="guarded", plugins={
        "key-auth": {},
        "response-rewrite": {"status_code": 403, "body": "{\"error\":\"forbidden\"}",
                             "headers": {"set": {"Content-Type": "application/problem+json"}}}})],
        "consumers": [{"username": "u", "plugins": {"key-auth": {"key": "k"}}}]})
    r = gw.get("/guarded")
    assert r.status_code == 403 and r.json() == {"error": "forbidden"}
    assert r.headers["Content-Type"] == "application/problem+json"
    r = gw.get("/guarded", headers={"apikey": "k"})  # and on the upstream's answer too
    assert r.status_code == 403 and r.text == "{\"error\":\"forbidden\"}"


# ------------------------------------------------------------------------------ request-id

def test_request_id_generated_kept_and_logged(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/rid", [(up.port,)], id="rid", plugins={"request-id": {}}),
        route("/custom", [(up.port,)], id="custom", plugins={"request-id": {
            "header_name": "X-Trace", "include_in_response": False}}),
    ]})
    r = gw.get("/rid")
    rid = r.headers["X-Request-Id"]
    assert UUID.match(rid), rid
    assert headers_seen(r)["x-request-id"] == [rid]  # the same id upstream
    assert gw.get("/rid").headers["X-Request-Id"] != rid
    r = gw.get("/rid", headers={"X-Request-Id": "from-client-123"})
    assert r.headers["X-Request-Id"] == "from-client-123"
    assert headers_seen(r)["x-request-id"] == ["from-client-123"]
    r = gw.get("/custom")
    assert "X-Trace" not in r.headers and UUID.match(headers_seen(r)["x-trace"][0])
    gw.stop()
    logged = [json.loads(l).get("request_id") for l in gw.access_path.read_text().splitlines()]
    assert logged[0] == rid and logged[2] == "from-client-123", logged


def test_request_id_in_a_global_rule_and_a_route_gives_one_id(gateway, upstream):
    up = upstream()
    gw = gateway({"global_rules": [{"id": "g", "plugins": {"request-id": {}}}],
                  "routes": [route("/r", [(up.port,)], id="r", plugins={"request-id": {}})]})
    r = gw.get("/r")
    ids = headers_seen(r)["x-request-id"]
    assert len(ids) == 1 and r.headers["X-Request-Id"] == ids[0], (ids, r.headers)


# ------------------------------------------------------------------------------------ cors

def test_cors_preflight_origins_and_credentials(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/open", [(up.port,)], id="open", plugins={"cors": {}}),
        route("/authed", [(up.port,)], id="authed", plugins={"cors": {}, "key-auth": {}}),
        route("/listed", [(up.port,)], id="listed", plugins={"cors": {
            "allow_origins": "http://a.test,http://b.test", "allow_methods": "GET,POST",
            "allow_headers": "X-Token", "expose_headers": "X-Upstream", "max_age": 60,
            "allow_credential": True, "allow_origins_by_regex": ["^https://.*\\.c\\.test$"]}}),
    ]})
    before = len(up.requests)
    r = gw.get("/listed", headers={"Origin": "http://a.test",
                                   "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200  # (a GET with the preflight header is not a preflight)
    pre = requests.options(gw.url("/listed"), headers={
        "Origin": "http://b.test", "Access-Control-Request-Method": "POST"}, timeout=5)
    assert pre.status_code == 200 and pre.text == ""
    assert pre.headers["Access-Control-Allow-Origin"] == "http://b.test"
    assert pre.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert pre.headers["Access-Control-Allow-Headers"] == "X-Token"
    assert pre.headers["Access-Control-Max-Age"] == "60"
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"
    assert len(up.requests) == before + 1  # the preflight was answered at the gateway
    r = gw.get("/listed", headers={"Origin": "http://a.test"})
    assert r.headers["Access-Control-Allow-Origin"] == "http://a.test"
    assert r.headers["Access-Control-Expose-Headers"] == "X-Upstream"
    assert "Origin" in r.headers.get("Vary", "")
    r = gw.get("/listed", headers={"Origin": "https://x.c.test"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://x.c.test"
    r = gw.get("/listed", headers={"Origin": "http://evil.test"})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    # cors (4000) answers the preflight before key-auth (2500) asks for a key.
    pre = requests.options(gw.url("/authed"), headers={
        "Origin": "http://a.test", "Access-Control-Request-Method": "GET"}, timeout=5)
    assert pre.status_code == 200 and pre.headers["Access-Control-Allow-Origin"] == "*"
    assert gw.get("/authed", headers={"Origin": "http://a.test"}).status_code == 401
    r = gw.get("/open", headers={"Origin": "http://anything.test"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers


def test_cors_with_credentials_refuses_wildcards_and_echoes_only_on_request(gateway, upstream,
                                                                            tmp_path):
    # "*" with credentials would let any site read answers made with the user's cookies.
    for conf, field in [({"allow_credential": True}, "allow_origins"),
                        ({"allow_credential": True, "allow_origins": "http://a.test"},
                         "allow_methods"),
                        ({"allow_credential": True, "allow_origins": "http://a.test",
                          "allow_methods": "GET", "allow_headers": "X-Token",
                          "expose_headers": "*"}, "expose_headers")]:
        doc = {"routes": [route("/c", [(1,)], id="c", plugins={"cors": conf})]}
        code, out = validate(tmp_path, doc)
        assert code != 0 and f"routes[0].plugins.cors.{field}: can not be '*'" in out, out
    up = upstream()
    gw = gateway({"routes": [route("/any", [(up.port,)], id="any", plugins={"cors": {
        "allow_credential": True, "allow_origins": "**", "allow_methods": "GET",
        "allow_headers": "**"}})]})
    pre = requests.options(gw.url("/any"), headers={
        "Origin": "http://z.test", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "X-One"}, timeout=5)
    assert pre.headers["Access-Control-Allow-Origin"] == "http://z.test"
    assert pre.headers["Access-Control-Allow-Headers"] == "X-One"
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"


# -------------------------------------------------------------------------------- redirect

def test_redirect_uri_regex_uri_encode_and_query(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/old/*", [(up.port,)], id="old", plugins={"redirect": {
            "uri": "https://$host/new$uri?from=${arg_src}", "ret_code": 301}}),
        route("/docs/*", [(up.port,)], id="docs", plugins={"redirect": {
            "regex_uri": ["^/docs/v1/(.*)$", "/docs/v2/$1"]}}),
        route("/keep", [(up.port,)], id="keep", plugins={"redirect": {
            "uri": "/kept", "append_query_string": True}}),
        route("/enc", [(up.port,)], id="enc", plugins={"redirect": {
            "uri": "/with space/\u00e9/$arg_x?q=a b", "encode_uri": True}}),
    ]})

    def go(path, **kw):
        return requests.get(gw.url(path), allow_redirects=False, timeout=5, **kw)

    r = go("/old/page?src=mail", headers={"Host": "Chat.Example.com:8080"})
    assert r.status_code == 301
    assert r.headers["Location"] == "https://chat.example.com/new/old/page?from=mail"
    r = go("/docs/v1/intro?x=1")
    assert r.status_code == 302 and r.headers["Location"] == "/docs/v2/intro"
    r = go("/docs/v1/a%0Db%7F")  # decoded control bytes stay escaped in the one header line
    assert r.status_code == 302 and r.headers["Location"] == "/docs/v2/a%0Db%7F"
    r = go("/docs/v3/intro")  # no match: proxied as usual
    assert r.status_code == 200 and r.json()["target"] == "/docs/v3/intro"
    assert go("/keep?a=1&b=2").headers["Location"] == "/kept?a=1&b=2"
    assert go("/keep").headers["Location"] == "/kept"
    r = go("/enc?x=a%2Fb")  # $arg_x is the raw argument: its '%' is escaped too (APISIX)
    assert r.headers["Location"] == "/with%20space/%C3%A9/a%252Fb?q=a b"
    assert [q.target for q in up.requests] == ["/docs/v3/intro"]  # redirects stay at the edge


def test_redirect_http_to_https(gateway, upstream, tmp_path):
    from conftest import free_port
    from test_tls import tls_gateway
    up = upstream()
    routes = {"routes": [route("/app/*", [(up.port,)], id="app",
                               plugins={"redirect": {"http_to_https": True}})]}
    tls_port = free_port()
    gw = tls_gateway(gateway, routes, tls_port)

    def go(method, path, **kw):
        return requests.request(method, gw.url(path), allow_redirects=False, timeout=5, **kw)

    r = go("GET", "/app/x?y=1", headers={"Host": "im.example.com"})
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://im.example.com:{tls_port}/app/x?y=1"
    assert go("HEAD", "/app/x").status_code == 301
    r = go("POST", "/app/send", data=b"hi")
    assert r.status_code == 308  # keeps the method and body
    # A TLS-terminating proxy in front says the client already came over https.
    r = go("GET", "/app/x", headers={"X-Forwarded-Proto": "https"})
    assert r.status_code == 200 and r.json()["target"] == "/app/x"


def test_redirect_to_443_leaves_the_port_out(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/", [(up.port,)], id="root",
                                   plugins={"redirect": {"http_to_https": True}})]})
    r = requests.get(gw.url("/"), headers={"Host": "a.test"}, allow_redirects=False, timeout=5)
    assert r.status_code == 301 and r.headers["Location"] == "https://a.test/"


def test_redirect_schema_errors(tmp_path):
    bad = [({}, "redirect: needs exactly one"),
           ({"uri": "/a", "http_to_https": False}, "redirect: needs exactly one"),
           ({"uri": "/"}, "redirect.uri"),
           ({"regex_uri": ["(", "/x"]}, "redirect.regex_uri"),
           ({"regex_uri": ["/(a)", "/$2"]}, "redirect.regex_uri"),
           ({"http_to_https": True, "append_query_string": True},
            "redirect.append_query_string"),
           ({"uri": "/ab", "ret_code": 199}, "redirect.ret_code")]
    assert_plugin_errors(tmp_path, "redirect", bad)
