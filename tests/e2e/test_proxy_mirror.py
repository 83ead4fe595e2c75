"""proxy-mirror through the binary: a copy of each request (method, target, headers, body) goes
to the mirror while the client gets the upstream's answer; path and path_concat_mode;
sample_ratio; a slow or dead mirror never delays the client; bodies over 1 MiB are not
mirrored; schema errors."""
import time

from conftest import assert_plugin_errors, route, wait_until
from prom_text import parse


def mirrored(gw, outcome):
    return parse(gw.control("/metrics").text).value("portico_mirror_requests_total",
                                                    outcome=outcome) or 0


def test_proxy_mirror_copies_requests(gateway, upstream):
    up, shadow = upstream(), upstream(name="shadow")
    gw = gateway({"routes": [
        route("/api/*", [(up.port,)], id="api", plugins={"proxy-mirror": {
            "host": f"http://127.0.0.1:{shadow.port}"}}),
        route("/v1/*", [(up.port,)], id="v1", plugins={"proxy-mirror": {
            "host": f"http://127.0.0.1:{shadow.port}", "path": "/shadow"}}),
        route("/v2/*", [(up.port,)], id="v2", plugins={"proxy-mirror": {
            "host": f"http://127.0.0.1:{shadow.port}", "path": "/shadow",
            "path_concat_mode": "prefix"}})]})
    r = gw.get("/api/send?to=rose", data=b'{"text":"hi"}', headers={
        "Host": "chat.example.com", "X-User": "7", "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["upstream"] == "up"
    wait_until(lambda: len(shadow.requests) == 1)
    copy = shadow.requests[0]
    assert copy.method == "GET" and copy.target == "/api/send?to=rose"
    assert copy.header("host") == "chat.example.com" and copy.header("x-user") == "7"
    assert copy.body == b'{"text":"hi"}' and copy.header("content-length") == "13"
    assert len(up.requests) == 1 and up.requests[0].body == b'{"text":"hi"}'
    gw.get("/v1/a?x=1")
    gw.get("/v2/b?y=2")
    wait_until(lambda: len(shadow.requests) == 3)
    assert sorted(r.target for r in shadow.requests[1:]) == ["/shadow/v2/b?y=2", "/shadow?x=1"]
    wait_until(lambda: mirrored(gw, "sent") == 3)


def test_the_copy_is_the_upstreams_request_credentials_hidden(gateway, upstream):
    up, shadow = upstream(), upstream(name="shadow")
    gw = gateway({
        "consumers": [{"username": "alice", "plugins": {"key-auth": {"key": "secret-key"}}}],
        "routes": [route("/api/*", [(up.port,)], id="api", plugins={
            "key-auth": {"hide_credentials": True},
            "proxy-rewrite": {"headers": {"set": {"X-From": "gateway"}}, "method": "PUT"},
            "proxy-mirror": {"host": f"http://127.0.0.1:{shadow.port}"}})]})
    r = gw.get("/api/x", headers={"apikey": "secret-key", "X-Real-IP": "6.6.6.6",
                                  "Connection": "keep-alive, X-Hop", "X-Hop": "1"})
    assert r.status_code == 200
    wait_until(lambda: len(shadow.requests) == 1)
    copy, real = shadow.requests[0], up.requests[0]
    for req in (copy, real):
        assert req.header("apikey") is None  # hide_credentials holds for the copy too
        assert req.header("x-from") == "gateway" and req.method == "PUT"
        assert req.header("x-real-ip") == "127.0.0.1" and req.header("x-hop") is None
    assert copy.header("x-forwarded-for") == real.header("x-forwarded-for") == "127.0.0.1"


def test_proxy_mirror_samples(gateway, upstream):
    up, shadow = upstream(), upstream(name="shadow")
    gw = gateway({"routes": [route("/api/*", [(up.port,)], id="api", plugins={"proxy-mirror": {
        "host": f"http://127.0.0.1:{shadow.port}", "sample_ratio": 0.25}})]})
    for _ in range(200):
        assert gw.get("/api/x").status_code == 200
    wait_until(lambda: mirrored(gw, "sent") + mirrored(gw, "failed") == len(shadow.requests) > 0)
    time.sleep(0.3)  # (copies still in flight land)
    assert 20 <= len(shadow.requests) <= 85  # 50 expected; far from 0 and 200


def test_a_slow_or_dead_mirror_never_delays_the_client(gateway, upstream):
    up, shadow = upstream(), upstream(name="shadow", delay_ms=1500)
    gw = gateway({"routes": [
        route("/slowm/*", [(up.port,)], id="s", plugins={"proxy-mirror": {
            "host": f"http://127.0.0.1:{shadow.port}"}}),
        route("/deadm/*", [(up.port,)], id="d", plugins={"proxy-mirror": {
            "host": "http://127.0.0.1:1"}})]})
    t0 = time.monotonic()
    for _ in range(3):
        assert gw.get("/slowm/x").json()["upstream"] == "up"
        assert gw.get("/deadm/x").json()["upstream"] == "up"
    assert time.monotonic() - t0 < 1.0
    wait_until(lambda: mirrored(gw, "failed") == 3)
    wait_until(lambda: mirrored(gw, "sent") == 3, timeout=10)


def test_bodies_over_a_mebibyte_are_not_mirrored(gateway, upstream):
    up, shadow = upstream(), upstream(name="shadow")
    gw = gateway({"routes": [route("/api/*", [(up.port,)], id="api", plugins={"proxy-mirror": {
        "host": f"http://127.0.0.1:{shadow.port}"}})]})
    big = b"x" * ((1 << 20) + 1)
    r = gw.get("/api/big", data=big)
    assert r.status_code == 200 and r.json()["body_len"] == len(big)
    exact = b"y" * (1 << 20)
    assert gw.get("/api/exact", data=exact).json()["body_len"] == len(exact)
    wait_until(lambda: mirrored(gw, "sent") == 1)
    assert mirrored(gw, "skipped") == 1
    assert [(r.target, r.body_len) for r in shadow.requests] == [("/api/exact", 1 << 20)]


def test_proxy_mirror_schema_errors(tmp_path):
    bad = [({}, "proxy-mirror.host"),
           ({"host": "127.0.0.1:80"}, "proxy-mirror.host"),
           ({"host": "http://127.0.0.1/a"}, "proxy-mirror.host"),
           ({"host": "http://a", "path": "x"}, "proxy-mirror.path"),
           ({"host": "http://a", "path": "/x?y=1"}, "proxy-mirror.path"),
           ({"host": "http://a", "path_concat_mode": "append"}, "proxy-mirror.path_concat_mode"),
           ({"host": "http://a", "sample_ratio": 0}, "proxy-mirror.sample_ratio"),
           ({"host": "http://a", "sample_ratio": 1.5}, "proxy-mirror.sample_ratio"),
           ({"host": "http://a", "timeout": 0}, "proxy-mirror.timeout")]
    assert_plugin_errors(tmp_path, "proxy-mirror", bad)
