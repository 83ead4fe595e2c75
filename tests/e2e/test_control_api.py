"""The Control API (contract: config plane): /v1/health, /v1/routes, /v1/upstreams, /v1/config
with secrets redacted, and /metrics in the Prometheus text format with per-route counters."""
import requests

import prom_text
from conftest import VIEWER_KEY, inline_upstream, route, self_signed_cert, served_by, wait_until


def metrics(gw):
    r = gw.control("/metrics")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    return prom_text.parse(r.text)


def test_health_yaml_mode_and_version(gateway, upstream):
    a = upstream(name="a")
    gw = gateway({"routes": [route("/a", [(a.port,)], id="a")]}, workers=2)
    r = gw.control("/v1/health")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("application/json")
    h = r.json()
    assert h["status"] == "ok"
    assert h["config"]["provider"] == "yaml"
    assert h["workers"]["configured"] == 2
    assert wait_until(lambda: gw.health()["workers"] == {"configured": 2, "alive": 2}, 5), gw.health()
    v0 = h["version"]
    assert isinstance(v0, int)
    rev0 = metrics(gw).value("portico_config_revision")
    assert rev0 is not None

    gw.write_routes({"routes": [route("/a", [(a.port,)], id="a"), route("/b", [(a.port,)], id="b")]})
    assert wait_until(lambda: gw.health()["version"] > v0, 5), gw.health()
    assert served_by(gw, "/b") == "a"
    assert metrics(gw).value("portico_config_revision") > rev0


def test_health_etcd_mode_follows_the_revision(etcd, gateway, upstream):
    a = upstream(name="a")
    gw = gateway(etcd=etcd)
    h = gw.health()
    assert h["status"] == "ok"
    assert h["config"]["provider"] == "etcd" and h["config"]["reachable"] is True
    assert h["config"]["revision"] == etcd.revision() and h["config"]["last_error"] == ""
    v0 = h["version"]
    assert gw.admin("PUT", "/routes/r", {"uri": "/r", "upstream": inline_upstream(a.port)}).status_code == 201
    assert wait_until(lambda: gw.health()["config"]["revision"] == etcd.revision(), 2), gw.health()
    # The snapshot is compiled after the revision is read (on the compile thread): wait for it.
    assert wait_until(lambda: gw.health()["version"] > v0, 2), gw.health()
    m = metrics(gw)
    assert m.value("portico_config_revision") == etcd.revision()
    assert m.value("portico_config_source_reachable") == 1


def test_v1_routes_and_upstreams(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    gw = gateway({
        "upstreams": [{"id": "u1", "type": "roundrobin", "nodes": {f"127.0.0.1:{b.port}": 2}}],
        "routes": [
            {"id": "r1", "uris": ["/a", "/b"], "hosts": ["x.test"], "methods": ["GET", "POST"], "priority": 5,
             "upstream": {"type": "roundrobin", "nodes": [
                 {"host": "127.0.0.1", "port": a.port, "weight": 3, "priority": 1}]}},
            {"id": "r2", "uri": "/c", "upstream_id": "u1"},
        ]})
    r = gw.control("/v1/routes")
    assert r.status_code == 200
    routes = {x["id"]: x for x in r.json()["routes"]}
    assert set(routes) == {"r1", "r2"}
    r1 = routes["r1"]
    assert r1["uris"] == ["/a", "/b"]
    assert r1["hosts"] == ["x.test"]
    assert r1["methods"] == ["GET", "POST"]
    assert r1["priority"] == 5
    assert r1["upstream"]
    assert routes["r2"]["uris"] == ["/c"] and routes["r2"]["priority"] == 0
    assert routes["r2"]["upstream"]

    r = gw.control("/v1/upstreams")
    assert r.status_code == 200
    ups = {x["id"]: x for x in r.json()["upstreams"]}
    assert ups["u1"]["type"] == "roundrobin"
    assert ups["u1"]["nodes"] == [{"host": "127.0.0.1", "port": b.port, "weight": 2, "priority": 0}]


def test_v1_config_redacts_ssl_keys(etcd, gateway, upstream, tmp_path):
    a = upstream(name="a")
    cert, key = self_signed_cert(tmp_path, "secret.test")
    gw = gateway(etcd=etcd)
    r = gw.admin("PUT", "/ssls/s1", {"cert": cert, "key": key, "snis": ["secret.test"]})
    assert r.status_code == 201, r.text
    assert gw.admin("PUT", "/routes/r", {"uri": "/r", "upstream": inline_upstream(a.port)}).status_code == 201
    assert wait_until(lambda: served_by(gw, "/r") == "a", 2)

    def loaded():
        c = gw.control("/v1/config").json()
        return c if c.get("ssls") and c.get("routes") else None
    config = wait_until(loaded, 2)
    assert config, gw.control("/v1/config").text
    text = gw.control("/v1/config").text
    key_body = "".join(key.strip().splitlines()[1:-1])
    assert "PRIVATE KEY" not in text
    for chunk in (key_body[:40], key_body[100:140], key_body[-40:]):
        assert chunk not in text.replace("\\n", "").replace("\n", "")
    ssl = config["ssls"][0]
    assert ssl["key"] == "******"
    assert ssl["snis"] == ["secret.test"]
    assert [x["id"] for x in config["routes"]] == ["r"]


def test_upstream_client_keys_and_plugin_passwords_are_redacted(etcd, gateway, upstream, tmp_path):
    a = upstream(name="a")
    cert, key = self_signed_cert(tmp_path, "gateway.test")
    tls = {"client_cert": cert, "client_key": key}
    gw = gateway(etcd=etcd)
    up = inline_upstream(a.port, scheme="https", tls=tls)
    assert gw.admin("PUT", "/upstreams/u1", up).status_code == 201
    assert gw.admin("PUT", "/services/s1", {"upstream": up}).status_code == 201
    limit = {"count": 10, "time_window": 60, "policy": "redis", "redis_host": "127.0.0.1",
             "redis_password": "hunter2-redis-pw"}
    r = gw.admin("PUT", "/routes/r", {"uri": "/r", "upstream": up,
                                      "plugins": {"limit-count": limit}})
    assert r.status_code == 201, r.text

    def loaded():
        c = gw.control("/v1/config").json()
        return c if c.get("routes") and c.get("upstreams") and c.get("services") else None
    assert wait_until(loaded, 2), gw.control("/v1/config").text
    seen = [gw.control("/v1/config").text]
    for path in ("/upstreams/u1", "/upstreams", "/services/s1", "/routes/r", "/routes"):
        r = gw.admin("GET", path, key=VIEWER_KEY)
        assert r.status_code == 200, r.text
        seen.append(r.text)
    for text in seen:
        assert "PRIVATE KEY" not in text and "hunter2" not in text, text
        assert "BEGIN CERTIFICATE" in text  # what is not secret stays readable
    config = loaded()
    assert config["upstreams"][0]["tls"]["client_key"] == "******"
    assert config["routes"][0]["plugins"]["limit-count"]["redis_password"] == "******"
    # The admin role still reads what it wrote.
    assert "PRIVATE KEY" in gw.admin("GET", "/upstreams/u1").text


def test_metrics_count_requests_per_route_and_status(gateway, upstream):
    a = upstream(name="a")
    gw = gateway({"routes": [{"id": "r1", "uris": ["/echo", "/status/503"],
                              "upstream": inline_upstream(a.port)}]}, workers=2)
    sent = 0
    for _ in range(6):
        r = requests.get(gw.url("/echo"), timeout=5)
        assert r.status_code == 200
        sent += len(r.content)
    r = requests.post(gw.url("/echo"), data=b"x" * 1000, timeout=5)
    assert r.status_code == 200
    sent += len(r.content)
    for _ in range(2):
        assert requests.get(gw.url("/status/503"), timeout=5).status_code == 503
    for _ in range(3):
        assert requests.get(gw.url("/nowhere"), timeout=5).status_code == 404

    def counted():
        m = metrics(gw)
        return m if (m.value("portico_http_requests_total", route="r1", status="200") == 7
                     and m.value("portico_http_requests_total", route="", status="404") == 3) else None
    m = wait_until(counted, 3)
    if not m:
        m = metrics(gw)
        raise AssertionError([s for s in m.samples if s[0] == "portico_http_requests_total"])
    assert m.types["portico_http_requests_total"] == "counter"
    assert m.value("portico_http_requests_total", route="r1", status="503") == 2
    assert m.value("portico_http_requests_total", route="r1", status="404") is None
    assert m.value("portico_http_requests_total", route="r1") == 9

    assert m.types["portico_http_request_duration_seconds"] == "histogram"
    assert m.types["portico_upstream_duration_seconds"] == "histogram"
    count, _ = prom_text.check_histogram(m, "portico_http_request_duration_seconds", route="r1")
    assert count == 9
    count, _ = prom_text.check_histogram(m, "portico_upstream_duration_seconds", route="r1")
    assert count == 9
    assert m.value("portico_http_received_bytes_total", route="r1") >= 1000
    assert m.value("portico_http_sent_bytes_total", route="r1") >= sent
    assert m.types["portico_connections_active"] == "gauge"
    assert m.value("portico_connections_active") >= 0
    assert m.types["portico_config_revision"] == "gauge"
    assert m.types["portico_config_source_reachable"] == "gauge"
    assert m.value("portico_config_source_reachable") == 1
    assert m.types["portico_config_apply_errors_total"] == "counter"
    assert m.value("portico_config_apply_errors_total") == 0


def test_metrics_count_rejected_config_files(gateway, upstream):
    a = upstream(name="a")
    gw = gateway({"routes": [route("/a", [(a.port,)], id="a")]})
    assert metrics(gw).value("portico_config_apply_errors_total") == 0
    gw.write_routes("routes: [ {id: x, uri: /x")  # YAML syntax error
    gw.wait_log("YAML syntax error")
    assert wait_until(lambda: metrics(gw).value("portico_config_apply_errors_total") == 1, 2)
    assert served_by(gw, "/a") == "a"
