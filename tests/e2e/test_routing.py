"""Route precedence through the real binary (docs/routing.md), services, disabled routes, and
`portico route-explain`."""
import subprocess

import requests

from conftest import PORTICO_BIN, route


def test_precedence_host_then_uri_then_priority(gateway, upstream):
    names = ["exact_host", "wild_host", "exact_uri", "prefix", "param", "low", "high"]
    ups = {n: upstream(name=n) for n in names}
    gw = gateway({"routes": [
        route("/*", [(ups["exact_host"].port,)], id="exact_host", host="api.example.com"),
        route("/*", [(ups["wild_host"].port,)], id="wild_host", host="*.example.com"),
        route("/v1/users", [(ups["exact_uri"].port,)], id="exact_uri"),
        route("/v1/*", [(ups["prefix"].port,)], id="prefix"),
        route("/v1/:thing", [(ups["param"].port,)], id="param"),
        route("/p/*", [(ups["low"].port,)], id="low", priority=1),
        route("/p/*", [(ups["high"].port,)], id="high", priority=9),
    ]})

    def hit(path, host="plain.test"):
        return requests.get(gw.url(path), headers={"Host": host}).json()["upstream"]
    assert hit("/v1/users", "api.example.com") == "exact_host"
    assert hit("/v1/users", "www.example.com") == "wild_host"
    assert hit("/v1/users") == "exact_uri"
    assert hit("/v1/orders") == "param"
    assert hit("/v1/orders/7") == "prefix"
    assert hit("/p/x") == "high"
    assert requests.get(gw.url("/nowhere")).status_code == 404
    assert requests.get(gw.url("/nowhere")).json() == {"error_msg": "404 Route Not Found"}


def test_methods_and_remote_addrs(gateway, upstream):
    a, b = upstream(name="post"), upstream(name="other")
    gw = gateway({"routes": [
        route("/m", [(a.port,)], id="post", methods=["POST"]),
        route("/m", [(b.port,)], id="local", remote_addrs=["127.0.0.0/8"], methods=["GET"]),
        route("/denied", [(b.port,)], id="denied", remote_addrs=["10.0.0.0/8"]),
    ]})
    assert requests.post(gw.url("/m")).json()["upstream"] == "post"
    assert requests.get(gw.url("/m")).json()["upstream"] == "other"
    assert requests.put(gw.url("/m")).status_code == 404
    assert requests.get(gw.url("/denied")).status_code == 404


def test_services_upstream_ids_and_status(gateway, upstream):
    a, b = upstream(name="via_service"), upstream(name="via_id")
    gw = gateway({
        "upstreams": [{"id": "u1", "nodes": {f"127.0.0.1:{a.port}": 1}},
                      {"id": "u2", "nodes": {f"127.0.0.1:{b.port}": 1}}],
        "services": [{"id": "s1", "upstream_id": "u1", "hosts": ["svc.test"]}],
        "routes": [
            {"id": "r1", "uri": "/s", "service_id": "s1"},
            {"id": "r2", "uri": "/s", "upstream_id": "u2", "priority": -1},
            {"id": "r3", "uri": "/off", "upstream_id": "u2", "status": 0},
        ]})
    assert requests.get(gw.url("/s"), headers={"Host": "svc.test"}).json()["upstream"] == "via_service"
    assert requests.get(gw.url("/s"), headers={"Host": "other.test"}).json()["upstream"] == "via_id"
    assert requests.get(gw.url("/off")).status_code == 404


def test_route_explain_names_match_and_near_misses(gateway, upstream, tmp_path):
    up = upstream()
    gw = gateway({"routes": [
        route("/api/*", [(up.port,)], id="api", methods=["POST"]),
        route("/api/v1/*", [(up.port,)], id="v1"),
        route("/static/*", [(up.port,)], id="static"),
    ]}, start=False)
    out = subprocess.run([PORTICO_BIN, "route-explain", "-c", str(gw.config_path), "--method", "POST",
                          "--host", "x.test", "--uri", "/api/v1/chat?x=1"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "match: route v1" in out.stdout
    assert "route api: matches too, but route v1 wins" in out.stdout
    assert "route static: uri \"/api/v1/chat\" does not match [/static/*]" in out.stdout
    out = subprocess.run([PORTICO_BIN, "route-explain", "-c", str(gw.config_path), "--method", "GET",
                          "--uri", "/api/x"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "no route matches" in out.stdout and "route api: method GET not in [POST]" in out.stdout
