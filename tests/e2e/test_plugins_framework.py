"""The plugin framework through the binary: schema errors named by field (validate, yaml reload,
Admin API), phase and priority order across plugins, global rules before route plugins, the
precedence Consumer > Route > Plugin Config > Service, and `_meta.disable`."""
import pytest

from conftest import inline_upstream, route, validate, wait_until

# Each plugin config below is wrong in one field; `portico validate` must name that field.
BAD_PLUGINS = [
    ({"limit-req": {"burst": 1}}, "limit-req.rate"),
    ({"limit-req": {"rate": 1, "burst": -1}}, "limit-req.burst"),
    ({"limit-req": {"rate": 1, "burst": 1, "key_type": "header"}}, "limit-req.key_type"),
    ({"limit-req": {"rate": 1, "burst": 1, "rejected_code": 600}}, "limit-req.rejected_code"),
    ({"limit-req": {"rate": 1, "burst": 1, "nodelay": "yes"}}, "limit-req.nodelay"),
    ({"limit-req": {"rate": 1, "burst": 1, "colour": "red"}}, "limit-req.colour: unknown field"),
    ({"limit-req": {"rate": 1, "burst": 1, "key_type": "var_combination", "key": "$ x"}},
     "limit-req.key"),
    ({"limit-conn": {"conn": 0, "burst": 0, "default_conn_delay": 0.1}}, "limit-conn.conn"),
    ({"limit-conn": {"conn": 1, "burst": 0}}, "limit-conn.default_conn_delay"),
    ({"real-ip": {}}, "real-ip.source"),
    ({"real-ip": {"source": "http_x_forwarded_for", "trusted_addresses": ["300.1.1.1"]}},
     "real-ip.trusted_addresses"),
    ({"ip-restriction": {"whitelist": ["1.1.1.1"], "blacklist": ["2.2.2.2"]}},
     "ip-restriction.whitelist"),
    ({"ip-restriction": {"blacklist": ["1.1.1.1/33"]}}, "ip-restriction.blacklist"),
    ({"key-auth": {"header": "bad header"}}, "key-auth.header"),
    ({"jwt-auth": {"header": ""}}, "jwt-auth.header"),
    ({"cors": {"allow_origins_by_regex": ["("]}}, "cors.allow_origins_by_regex[0]"),
    ({"cors": {"max_age": "long"}}, "cors.max_age"),
    ({"proxy-rewrite": {"uri": "no-slash"}}, "proxy-rewrite.uri"),
    ({"proxy-rewrite": {"regex_uri": ["^/(.*)"]}}, "proxy-rewrite.regex_uri"),
    ({"proxy-rewrite": {"regex_uri": ["^/(.*", "/$1"]}}, "proxy-rewrite.regex_uri[0]"),
    ({"proxy-rewrite": {"method": "FETCH"}}, "proxy-rewrite.method"),
    ({"proxy-rewrite": {"headers": {"set": {"X-A": "a\nb"}}}}, "proxy-rewrite.headers.set.X-A"),
    ({"response-rewrite": {"status_code": 700}}, "response-rewrite.status_code"),
    ({"response-rewrite": {"headers": {"remove": [7]}}}, "response-rewrite.headers.remove[0]"),
    ({"response-rewrite": {"vars": [["status", "=~", 5]]}}, "response-rewrite.vars[0][1]"),
    ({"response-rewrite": {"vars": "status"}}, "response-rewrite.vars"),
    ({"request-id": {"algorithm": "snowflake"}}, "request-id.algorithm"),
    ({"request-id": {"header_name": "X Id"}}, "request-id.header_name"),
    ({"no-such-plugin": {}}, "no-such-plugin: unknown plugin"),
    ({"limit-req": {"rate": 1, "burst": 1, "_meta": {"disable": "yes"}}},
     "limit-req._meta.disable"),
    ({"limit-req": "fast"}, "limit-req: must be an object"),
]


def test_validate_names_the_field_of_every_plugin_schema_error(tmp_path):
    ups = {"nodes": {"127.0.0.1:1": 1}}
    routes = [{"id": f"r{i}", "uri": f"/{i}", "upstream": ups, "plugins": conf}
              for i, (conf, _) in enumerate(BAD_PLUGINS)]
    rc, out = validate(tmp_path, {
        "routes": routes,
        "services": [{"id": "s1", "plugins": {"limit-conn": {"conn": 1, "burst": 0}}}],
        "plugin_configs": [{"id": "pc1", "plugins": {"response-rewrite": {"status_code": 99}}}],
        "global_rules": [{"id": "g1", "plugins": {"ip-restriction": {}}}],
        "consumers": [{"username": "a", "plugins": {"key-auth": {}}},
                      {"username": "d", "plugins": {"jwt-auth": {"key": "d", "algorithm": "RS256"}}},
                      {"username": "f", "plugins": {"limit-req": {"rate": 0, "burst": 0}}}],
    })
    assert rc != 0
    lines = out.splitlines()
    for i, (_, field) in enumerate(BAD_PLUGINS):
        want = f"routes[{i}].plugins.{field}"
        assert any(l.startswith(want) for l in lines), f"{want!r} not in:\n{out}"
    for want in ("services[0].plugins.limit-conn.default_conn_delay",
                 "plugin_configs[0].plugins.response-rewrite.status_code",
                 "global_rules[0].plugins.ip-restriction.whitelist",
                 "consumers[0].plugins.key-auth.key",
                 "consumers[1].plugins.jwt-auth.public_key",
                 "consumers[2].plugins.limit-req.rate"):
        assert any(l.startswith(want) for l in lines), f"{want!r} not in:\n{out}"


def test_validate_refuses_two_consumers_with_one_key(tmp_path):
    rc, out = validate(tmp_path, {
        "routes": [{"id": "r", "uri": "/a", "upstream": {"nodes": {"127.0.0.1:1": 1}},
                    "plugins": {"key-auth": {}}}],
        "consumers": [{"username": "b", "plugins": {"key-auth": {"key": "k1"}}},
                      {"username": "c", "plugins": {"key-auth": {"key": "k1"}}}]})
    assert rc != 0 and "consumers[1].plugins.key-auth" in out and '"b"' in out, out


def test_yaml_reload_with_a_plugin_error_keeps_the_running_config(gateway, upstream):
    up = upstream()
    good = {"routes": [route("/a", [(up.port,)], id="a",
                             plugins={"response-rewrite": {"headers": {"X-Version": "1"}}})]}
    gw = gateway(good)
    assert gw.get("/a").headers["X-Version"] == "1"
    bad = {"routes": [route("/a", [(up.port,)], id="a", plugins={
        "response-rewrite": {"headers": {"X-Version": "2"}},
        "limit-req": {"rate": -1, "burst": 0}})]}
    gw.write_routes(bad)
    line = gw.wait_log_line("routes[0].plugins.limit-req.rate")
    assert "must be a number from 0.001 to 1000000000" in line
    assert "rejected" in gw.error_log()
    assert gw.get("/a").headers["X-Version"] == "1"


def test_admin_api_refuses_bad_plugin_configs_with_400_naming_the_field(etcd, gateway, upstream):
    up = upstream()
    gw = gateway(etcd=etcd)
    ups = inline_upstream(up.port)
    cases = [
        ("/routes/r1", {"uri": "/a", "upstream": ups,
                        "plugins": {"limit-req": {"rate": 1, "burst": 0, "rejected_code": 99}}},
         "plugins.limit-req.rejected_code"),
        ("/routes/r1", {"uri": "/a", "upstream": ups, "plugins": {"key-auth": {"nope": 1}}},
         "plugins.key-auth.nope"),
        ("/services/s1", {"upstream": ups, "plugins": {"proxy-rewrite": {"regex_uri": ["("]}}},
         "plugins.proxy-rewrite.regex_uri"),
        ("/consumers/jack", {"username": "jack", "plugins": {"key-auth": {}}},
         "plugins.key-auth.key"),
        ("/global_rules/g1", {"plugins": {"ip-restriction": {"blacklist": ["x"]}}},
         "plugins.ip-restriction.blacklist"),
        ("/plugin_configs/p1", {"plugins": {"cors": {"allow_origins": 5}}},
         "plugins.cors.allow_origins"),
    ]
    for path, body, field in cases:
        r = gw.admin("PUT", path, body)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert field in r.json()["error_msg"], (path, r.text)
    # A good one is taken and served, with its plugin.
    r = gw.admin("PUT", "/routes/r1", {"uri": "/a", "upstream": ups, "plugins": {
        "response-rewrite": {"headers": {"X-Admin": "yes"}}}})
    assert r.status_code in (200, 201), r.text
    assert wait_until(lambda: gw.get("/a").headers.get("X-Admin") == "yes", 3)


def test_phases_then_priority_order_across_plugins(gateway, upstream):
    """key-auth answers in rewrite, so before ip-restriction (access) even with a lower priority
    (APISIX); within access, ip-restriction (3000) refuses before limit-req (1001) counts; cors
    (header_filter) decorates the 401, request-id the 429 and a 502."""
    up = upstream()
    lr = {"rate": 1, "burst": 0, "nodelay": True, "rejected_code": 429, "key": "http_x_bucket"}
    gw = gateway({
        "routes": [
            route("/auth-ip", [(up.port,)], id="auth-ip", plugins={
                "key-auth": {}, "ip-restriction": {"blacklist": ["127.0.0.0/8"]}}),
            route("/ip-limit", [(up.port,)], id="ip-limit", plugins={
                "real-ip": {"source": "http_x_client"},
                "ip-restriction": {"whitelist": ["10.0.0.0/8"]}, "limit-req": lr}),
            route("/cors-auth", [(up.port,)], id="cors-auth", plugins={
                "key-auth": {}, "cors": {"allow_origins": "http://app.test"}}),
            route("/rid", [(up.port,)], id="rid", plugins={"request-id": {}, "limit-req": lr}),
            route("/dead", [(1,)], id="dead", plugins={"request-id": {}}),
        ],
        "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}]})

    r = gw.get("/auth-ip")
    assert r.status_code == 401 and r.json() == {"message": "Missing API key in request"}
    r = gw.get("/auth-ip", headers={"apikey": "jack-key"})
    assert r.status_code == 403 and r.json() == {"message": "Your IP address is not allowed"}

    # Refused by ip-restriction three times on one limit-req key: nothing was counted.
    for _ in range(3):
        assert gw.get("/ip-limit", headers={"X-Client": "192.0.2.1", "X-Bucket": "b"}).status_code == 403
    assert gw.get("/ip-limit", headers={"X-Client": "10.1.1.1", "X-Bucket": "b"}).status_code == 200
    assert gw.get("/ip-limit", headers={"X-Client": "10.1.1.1", "X-Bucket": "b"}).status_code == 429

    r = gw.get("/cors-auth", headers={"Origin": "http://app.test"})
    assert r.status_code == 401
    assert r.headers["Access-Control-Allow-Origin"] == "http://app.test"

    assert gw.get("/rid", headers={"X-Bucket": "r"}).status_code == 200
    r = gw.get("/rid", headers={"X-Bucket": "r"})
    assert r.status_code == 429 and len(r.headers["X-Request-Id"]) == 36
    r = gw.get("/dead")
    assert r.status_code == 502 and len(r.headers["X-Request-Id"]) == 36


def test_global_rules_run_before_route_plugins(gateway, upstream):
    up = upstream()
    gw = gateway({
        "global_rules": [{"id": "g", "plugins": {
            "real-ip": {"source": "http_x_client"},
            "ip-restriction": {"blacklist": ["192.0.2.0/24"]}}}],
        "routes": [route("/limited", [(up.port,)], id="limited", plugins={
            "limit-req": {"rate": 1, "burst": 0, "nodelay": True, "rejected_code": 429,
                          "key": "http_x_bucket"}})]})
    for _ in range(3):
        r = gw.get("/limited", headers={"X-Client": "192.0.2.9", "X-Bucket": "one"})
        assert r.status_code == 403, r.text
    assert gw.get("/limited", headers={"X-Client": "198.51.100.1", "X-Bucket": "one"}).status_code == 200
    assert gw.get("/limited", headers={"X-Client": "198.51.100.2", "X-Bucket": "one"}).status_code == 429


def test_precedence_service_then_plugin_config_then_route_then_consumer(gateway, upstream):
    up = upstream()

    def level(name):
        return {"response-rewrite": {"headers": {"set": {"X-Level": name}}}}

    ups = inline_upstream(up.port)
    slow_limit = {"limit-req": {"rate": 1, "burst": 0, "nodelay": True, "rejected_code": 429}}
    gw = gateway({
        "services": [{"id": "s", "upstream": ups, "plugins": dict(level("service"), **slow_limit)}],
        "plugin_configs": [{"id": "pc", "plugins": level("plugin_config")}],
        "routes": [
            {"id": "svc", "uri": "/svc", "service_id": "s"},
            {"id": "pc", "uri": "/pc", "service_id": "s", "plugin_config_id": "pc"},
            {"id": "rt", "uri": "/rt", "service_id": "s", "plugin_config_id": "pc",
             "plugins": dict(level("route"), **{"limit-req": {"rate": 100, "burst": 100}})},
            {"id": "cons", "uri": "/cons", "service_id": "s", "plugin_config_id": "pc",
             "plugins": dict(level("route"), **{"key-auth": {}})},
        ],
        "consumers": [{"username": "vip", "plugins": dict(level("consumer"), **{
            "key-auth": {"key": "vip-key"}})},
            {"username": "plain", "plugins": {"key-auth": {"key": "plain-key"}}}]})
    assert gw.get("/svc").headers["X-Level"] == "service"
    assert gw.get("/pc").headers["X-Level"] == "plugin_config"
    assert gw.get("/rt").headers["X-Level"] == "route"
    assert gw.get("/cons", headers={"apikey": "vip-key"}).headers["X-Level"] == "consumer"
    assert gw.get("/cons", headers={"apikey": "plain-key"}).headers["X-Level"] == "route"
    # The route's limit-req (100/s) replaced the service's (1/s): no 429 here...
    assert [gw.get("/rt").status_code for _ in range(4)] == [200] * 4
    # ...while a route without its own still has the service's (the scope is the service's).
    codes = [gw.get("/pc").status_code for _ in range(3)]
    assert 429 in codes, codes


def test_meta_disable_on_a_route_turns_off_the_services_plugin(gateway, upstream):
    up = upstream()
    block = {"blacklist": ["127.0.0.0/8"]}
    gw = gateway({
        "services": [{"id": "s", "upstream": inline_upstream(up.port),
                      "plugins": {"ip-restriction": block,
                                  "response-rewrite": {"headers": {"X-Svc": "1"}}}}],
        "routes": [
            {"id": "on", "uri": "/on", "service_id": "s"},
            {"id": "off", "uri": "/off", "service_id": "s",
             "plugins": {"ip-restriction": dict(block, _meta={"disable": True})}},
            {"id": "own-off", "uri": "/own-off", "upstream": inline_upstream(up.port),
             "plugins": {"ip-restriction": dict(block, _meta={"disable": True})}},
        ]})
    assert gw.get("/on").status_code == 403
    r = gw.get("/off")
    assert r.status_code == 200 and r.headers["X-Svc"] == "1"  # only that plugin is off
    assert gw.get("/own-off").status_code == 200


def test_global_rules_also_run_for_requests_matching_no_route(gateway, upstream):
    up = upstream()
    gw = gateway({"global_rules": [{"id": "g", "plugins": {
        "ip-restriction": {"blacklist": ["127.0.0.0/8"]}, "request-id": {}}}],
        "routes": [route("/known", [(up.port,)], id="known")]})
    assert gw.get("/known").status_code == 403
    r = gw.get("/unknown")
    assert r.status_code == 403 and "X-Request-Id" in r.headers
