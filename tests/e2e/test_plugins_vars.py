"""Route `vars` (lua-resty-expr) through the binary: operators over arg_*, http_*, cookie_*, uri,
host and remote_addr, AND/OR nesting, and a route whose vars do not hold falls through to the
next route with the same uri."""
from conftest import route, served_by


def test_route_vars_operators_and_fall_through(gateway, upstream):
    names = ["eq", "ne", "num", "regex", "in", "has", "not", "ip", "or", "host", "fallback"]
    ups = {n: upstream(name=n) for n in names}

    def r(name, vars, priority):
        return route("/v/*", [(ups[name].port,)], id=name, vars=vars, priority=priority)
    gw = gateway({"routes": [
        r("eq", [["arg_mode", "==", "eq"]], 100),
        r("ne", [["arg_mode", "==", "ne"], ["http_x_env", "~=", "prod"]], 99),
        r("num", [["arg_mode", "==", "num"], ["arg_n", ">", 10], ["arg_n", "<=", "20"]], 98),
        r("regex", [["cookie_session", "~~", "^[a-f0-9]{8}$"], ["uri", "~*", "^/V/RE"]], 97),
        r("in", [["http_x_region", "in", ["eu", "us"]]], 96),
        r("has", [["arg_mode", "==", "has"], ["arg_tag", "has", "beta"]], 95),
        r("not", [["arg_mode", "==", "not"], ["http_x_beta", "!", "==", "1"]], 94),
        r("ip", [["arg_mode", "==", "ip"], ["remote_addr", "ipmatch", ["127.0.0.0/8"]]], 93),
        r("or", ["OR", ["arg_a", "==", "1"], ["AND", ["arg_b", "==", "2"], ["arg_c", ">=", 3]]], 92),
        r("host", [["host", "==", "api.test"]], 91),
        route("/v/*", [(ups["fallback"].port,)], id="fallback", priority=0),
    ]})
    by = lambda path, **kw: served_by(gw, path, **kw)
    assert by("/v/x?mode=eq") == "eq"
    assert by("/v/x?mode=ne", headers={"X-Env": "dev"}) == "ne"
    assert by("/v/x?mode=ne", headers={"X-Env": "prod"}) == "fallback"
    assert by("/v/x?mode=ne") == "ne"  # absent ~= "prod" holds (nil ~= "prod")
    assert by("/v/x?mode=num&n=15") == "num"
    assert by("/v/x?mode=num&n=20") == "num"
    assert by("/v/x?mode=num&n=21") == "fallback"
    assert by("/v/x?mode=num&n=abc") == "fallback"
    assert by("/v/re", cookies={"session": "deadbeef"}) == "regex"
    assert by("/v/re", cookies={"session": "DEADBEEF"}) == "fallback"  # ~~ is case-sensitive
    assert by("/v/other", cookies={"session": "deadbeef"}) == "fallback"
    assert by("/v/x", headers={"X-Region": "eu"}) == "in"
    assert by("/v/x", headers={"X-Region": "asia"}) == "fallback"
    assert by("/v/x?mode=has&tag=alpha&tag=beta") == "has"
    assert by("/v/x?mode=has&tag=alpha") == "fallback"
    assert by("/v/x?mode=not") == "not"
    assert by("/v/x?mode=not", headers={"X-Beta": "1"}) == "fallback"
    assert by("/v/x?mode=ip") == "ip"
    assert by("/v/x?a=1") == "or"
    assert by("/v/x?b=2&c=3") == "or"
    assert by("/v/x?b=2&c=2") == "fallback"
    assert by("/v/x", headers={"Host": "api.test"}) == "host"
    assert by("/v/x", headers={"Host": "API.test:8080"}) == "host"  # $host: no port, lower case
    assert by("/v/x") == "fallback"


def test_route_vars_without_a_fallback_give_404(gateway, upstream):
    up = upstream(name="only")
    gw = gateway({"routes": [route("/only", [(up.port,)], id="only",
                                   vars=[["http_x_key", "==", "open"]])]})
    assert served_by(gw, "/only", headers={"X-Key": "open"}) == "only"
    assert served_by(gw, "/only", headers={"X-Key": "shut"}) == 404


def test_route_and_service_names_as_variables_follow_config_changes(gateway, upstream):
    up = upstream()
    names = {"proxy-rewrite": {"headers": {"set": {"X-Route": "$route_name",
                                                   "X-Service": "$service_name"}}}}

    def config(route_name, service_name):
        return {"services": [{"id": "s1", "name": service_name}],
                "routes": [route("/n/*", [(up.port,)], id="n", name=route_name,
                                 service_id="s1", plugins=names)]}

    def sent():
        headers = dict((k.lower(), v) for k, v in gw.get("/n/x").json()["headers"])
        return headers.get("x-route"), headers.get("x-service")

    gw = gateway(config("chat", "im"))
    assert sent() == ("chat", "im")
    gw.write_routes(config("chat-v2", "im-edge"))  # the compiled route is reused; names are not
    assert gw.wait_until(lambda: sent() == ("chat-v2", "im-edge"), timeout=5)
