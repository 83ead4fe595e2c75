"""http-logger and file-logger through the binary: APISIX's full entry and log_format, request
and response bodies, batches (size, inactive_timeout), retries and failures counted and logged,
a slow or dead log server never delaying requests, bounded waiting entries, one file shared by
routes, and schema errors. The log server is a real HTTP server (upstream.TestUpstream keeps
every request it gets)."""
import json
import socket
import threading
import time

import requests

from conftest import assert_plugin_errors, route, validate, wait_until
from prom_text import parse


def posts(collector):
    """The log server's requests so far, bodies decoded."""
    with collector.lock:
        return [(r, r.body.decode()) for r in collector.requests]


def entries_of(collector):
    out = []
    for _, body in posts(collector):
        doc = json.loads(body)
        out.extend(doc if isinstance(doc, list) else [doc])
    return out


def log_entries_metric(gw, **labels):
    return parse(gw.control("/metrics").text).value("portico_log_entries_total", **labels)


def test_http_logger_batches_apisix_entries(gateway, upstream):
    up, collector = upstream(), upstream(name="logs")
    gw = gateway({"routes": [route("/api/*", [(up.port,)], id="api",
                                   plugins={"http-logger": {
                                       "uri": f"http://127.0.0.1:{collector.port}/ingest?k=1",
                                       "auth_header": "Bearer log-token", "batch_max_size": 3,
                                       "inactive_timeout": 1}})]})
    for i in range(3):
        assert gw.get(f"/api/m{i}?to=rose&to=lily&flag", headers={"X-Trace": "t"}).status_code == 200
    wait_until(lambda: len(posts(collector)) == 1)
    req, body = posts(collector)[0]
    assert req.method == "POST" and req.target == "/ingest?k=1"
    assert req.header("authorization") == "Bearer log-token"
    assert req.header("content-type") == "application/json"
    batch = json.loads(body)
    assert [e["request"]["uri"] for e in batch] == [f"/api/m{i}?to=rose&to=lily&flag"
                                                     for i in range(3)]
    e = batch[0]
    assert e["request"]["method"] == "GET"
    assert e["request"]["url"] == f"http://127.0.0.1:{gw.port}/api/m0?to=rose&to=lily&flag"
    assert e["request"]["headers"]["x-trace"] == "t"
    assert e["request"]["querystring"] == {"to": ["rose", "lily"], "flag": True}
    assert e["request"]["size"] > 50
    assert e["response"]["status"] == 200
    assert e["response"]["headers"]["content-type"] == "application/json"
    assert e["response"]["size"] > int(e["response"]["headers"]["content-length"])
    assert e["upstream"] == f"127.0.0.1:{up.port}"
    assert e["route_id"] == "api" and e["service_id"] == ""
    assert e["client_ip"] == "127.0.0.1" and "consumer" not in e
    assert abs(e["start_time"] - time.time() * 1000) < 30000
    assert e["latency"] >= e["upstream_latency"] >= 0 and e["apisix_latency"] >= 0
    assert e["server"]["hostname"] and e["server"]["version"]
    # A batch that does not fill goes out once no entry came for inactive_timeout.
    gw.get("/api/last")
    t0 = time.monotonic()
    wait_until(lambda: len(posts(collector)) == 2, timeout=5)
    assert 0.5 < time.monotonic() - t0 < 3
    assert [e["request"]["uri"] for e in json.loads(posts(collector)[1][1])] == ["/api/last"]
    wait_until(lambda: log_entries_metric(gw, plugin="http-logger", outcome="sent") == 4)


def test_http_logger_formats_single_entries_and_lines(gateway, upstream):
    up, collector = upstream(), upstream(name="logs")
    uri = f"http://127.0.0.1:{collector.port}/ingest"
    fmt = {"client": "$remote_addr", "host": "$host", "status": "$status", "app": "chat",
           "missing": "$http_x_none", "timing": {"total": "$request_time",
                                                  "up": "$upstream_addr"}}
    gw = gateway({"routes": [
        route("/one/*", [(up.port,)], id="one", plugins={"http-logger": {
            "uri": uri, "batch_max_size": 1, "log_format": fmt}}),
        route("/lines/*", [(up.port,)], id="lines", plugins={"http-logger": {
            "uri": uri, "batch_max_size": 2, "concat_method": "new_line"}})]})
    assert gw.get("/one/x", headers={"Host": "Chat.Example.com:81"}).status_code == 200
    wait_until(lambda: len(posts(collector)) == 1)
    e = json.loads(posts(collector)[0][1])  # batch_max_size 1: the object, not a list
    assert e == {"client": "127.0.0.1", "host": "chat.example.com", "status": "200",
                 "app": "chat", "route_id": "one",
                 "timing": {"total": e["timing"]["total"], "up": f"127.0.0.1:{up.port}"}}
    assert float(e["timing"]["total"]) < 5
    gw.get("/lines/a")
    gw.get("/lines/b")
    wait_until(lambda: len(posts(collector)) == 2)
    req, body = posts(collector)[1]
    assert req.header("content-type") == "text/plain"
    assert [json.loads(line)["request"]["uri"] for line in body.split("\n")] == ["/lines/a",
                                                                              "/lines/b"]


def test_http_logger_bodies_when_asked(gateway, upstream):
    up, collector = upstream(), upstream(name="logs")
    conf = {"uri": f"http://127.0.0.1:{collector.port}/ingest", "batch_max_size": 1,
            "include_req_body": True, "max_req_body_bytes": 8,
            "include_resp_body": True, "include_resp_body_expr": [["status", "==", 200]]}
    gw = gateway({"routes": [route("/api/*", [(up.port,)], id="api",
                                   plugins={"http-logger": conf}),
                             route("/status/*", [(up.port,)], id="status",
                                   plugins={"http-logger": conf})]})
    r = gw.get("/api/x", data=b"hello, logger")
    assert r.status_code == 200 and r.json()["body_len"] == 13  # the upstream got it all
    wait_until(lambda: len(posts(collector)) == 1)
    e = json.loads(posts(collector)[0][1])
    assert e["request"]["body"] == "hello, l"  # cut at max_req_body_bytes
    assert json.loads(e["response"]["body"])["upstream"] == "up"
    # The expression decides: a 404 is logged without its body; no request body, none logged.
    assert gw.get("/status/404").status_code == 404
    wait_until(lambda: len(posts(collector)) == 2)
    e = json.loads(posts(collector)[1][1])
    assert e["response"]["status"] == 404
    assert "body" not in e["response"] and "body" not in e["request"]


def test_http_logger_failures_are_retried_counted_and_never_delay_requests(gateway, upstream):
    up, failing, slow = upstream(), upstream(name="failing"), upstream(name="slow")
    gw = gateway({"routes": [
        route("/fail/*", [(up.port,)], id="fail", plugins={"http-logger": {
            "uri": f"http://127.0.0.1:{failing.port}/status/503", "name": "audit",
            "batch_max_size": 1, "max_retry_count": 2, "retry_delay": 0}}),
        route("/late/*", [(up.port,)], id="late", plugins={"http-logger": {
            "uri": f"http://127.0.0.1:{slow.port}/slow/1500", "batch_max_size": 1}}),
        route("/dead/*", [(up.port,)], id="dead", plugins={"http-logger": {
            "uri": "http://127.0.0.1:1/", "batch_max_size": 1}})]})
    assert gw.get("/fail/x").status_code == 200
    wait_until(lambda: len(posts(failing)) == 3)  # the send and its two retries
    gw.wait_log("Batch Processor[audit]")
    assert "the log server answered 503" in gw.error_log()
    wait_until(lambda: log_entries_metric(gw, logger="audit", outcome="failed") == 1)
    t0 = time.monotonic()
    for _ in range(3):
        assert gw.get("/late/x").status_code == 200
        assert gw.get("/dead/x").status_code == 200
    assert time.monotonic() - t0 < 1.0  # the log server's 1.5 s is not the client's
    # (/dead/ refuses at once; /late/ is the one that would show a wait.)
    wait_until(lambda: log_entries_metric(gw, plugin="http-logger", logger="http logger",
                                          outcome="failed") == 3)
    wait_until(lambda: log_entries_metric(gw, plugin="http-logger", outcome="sent") == 3,
               timeout=10)


def test_http_logger_bounds_what_waits_for_a_hung_log_server(gateway, upstream):
    up, hung = upstream(), upstream(name="hung")
    gw = gateway({"routes": [route("/api/*", [(up.port,)], id="api", plugins={"http-logger": {
        "uri": f"http://127.0.0.1:{hung.port}/hang", "batch_max_size": 1,
        "max_pending_entries": 2, "timeout": 2}})]})
    for _ in range(6):
        assert gw.get("/api/x").status_code == 200
    wait_until(lambda: log_entries_metric(gw, outcome="dropped") == 4)
    wait_until(lambda: log_entries_metric(gw, outcome="failed") == 2, timeout=6)
    # Room again once the sends ended: the next entry is taken (and fails in its turn).
    assert gw.get("/api/x").status_code == 200
    wait_until(lambda: log_entries_metric(gw, outcome="failed") == 3, timeout=6)
    assert log_entries_metric(gw, outcome="dropped") == 4


def test_file_logger_appends_lines_shared_by_routes(gateway, upstream, tmp_path):
    up = upstream()
    path = tmp_path / "logs" / "api.log"
    gw = gateway({"routes": [
        route("/a/*", [(up.port,)], id="a", plugins={"file-logger": {"path": str(path)}}),
        route("/b/*", [(up.port,)], id="b", plugins={"file-logger": {
            "path": str(path), "log_format": {"uri": "$uri", "ua": "$http_user_agent"}}})]})
    gw.get("/a/1")
    gw.get("/b/2", headers={"User-Agent": "chat/1.0"})
    gw.get("/a/3")

    def lines():
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    wait_until(lambda: len(lines()) == 3)
    a1, b2, a3 = lines()
    assert a1["request"]["uri"] == "/a/1" and a1["response"]["status"] == 200
    assert b2 == {"uri": "/b/2", "ua": "chat/1.0", "route_id": "b"}
    assert a3["route_id"] == "a"


def test_logger_schema_errors(tmp_path):
    bad = [({}, "http-logger.uri"),
           ({"uri": "ftp://x/"}, "http-logger.uri"),
           ({"uri": "http://x/", "timeout": 0}, "http-logger.timeout"),
           ({"uri": "http://x/", "concat_method": "csv"}, "http-logger.concat_method"),
           ({"uri": "http://x/", "batch_max_size": 0}, "http-logger.batch_max_size"),
           ({"uri": "http://x/", "inactive_timeout": 0}, "http-logger.inactive_timeout"),
           ({"uri": "http://x/", "max_retry_count": -1}, "http-logger.max_retry_count"),
           ({"uri": "http://x/", "batch_max_size": 100, "max_pending_entries": 10},
            "http-logger.max_pending_entries"),
           ({"uri": "http://x/", "log_format": {"a": ["$uri"]}}, "http-logger.log_format"),
           ({"uri": "http://x/", "log_format": "$uri"}, "http-logger.log_format"),
           ({"uri": "http://x/", "include_resp_body_expr": [["status", "=~", 1]]},
            "http-logger.include_resp_body_expr"),
           ({"uri": "http://x/", "auth_header": "a\r\nb"}, "http-logger.auth_header"),
           ({"uri": "http://x/", "max_req_body_bytes": 0}, "http-logger.max_req_body_bytes"),
           ({"uri": "http://x/", "batchsize": 3}, "http-logger.batchsize")]
    assert_plugin_errors(tmp_path, "http-logger", bad)
    assert_plugin_errors(tmp_path, "tcp-logger", [
        ({"port": 5000}, "tcp-logger.host"),
        ({"host": "a"}, "tcp-logger.port"),
        ({"host": "a", "port": 70000}, "tcp-logger.port"),
        ({"host": "a", "port": 1, "timeout": 0}, "tcp-logger.timeout"),
        ({"host": "a", "port": 1, "tls": "yes"}, "tcp-logger.tls")])
    assert_plugin_errors(tmp_path, "udp-logger", [
        ({"host": "a", "port": 1, "batch_max_size": 0}, "udp-logger.batch_max_size"),
        ({"host": "a", "port": 1, "concat_method": "json"}, "udp-logger.concat_method")])
    bad = [({}, "file-logger.path"),
           ({"path": "/proc/no/such/dir/x.log"}, "file-logger.path"),
           ({"path": str(tmp_path / "x.log"), "include_req_body": "yes"},
            "file-logger.include_req_body")]
    assert_plugin_errors(tmp_path, "file-logger", bad)
    rc, out = validate(tmp_path, {"plugin_metadata": [
        {"id": "no-such-plugin"}, {"id": "limit-req", "log_format": {"a": "$uri"}},
        {"id": "file-logger", "log_format": "$uri"}, {"id": "tcp-logger", "format": {}}]})
    assert rc != 0
    for want in ("plugin_metadata[0].id: must name a plugin",
                 "plugin_metadata[1].id: limit-req takes no plugin metadata",
                 "plugin_metadata[2].log_format:", "plugin_metadata[3].format:"):
        assert want in out, out


def test_an_abandoned_request_is_logged_as_499_with_nothing_of_another(gateway, upstream):
    up, collector = upstream(), upstream(name="logs")
    gw = gateway({"routes": [
        route("/secret/*", [(up.port,)], id="secret", plugins={"response-rewrite": {
            "headers": {"set": {"X-Secret": "for-someone-else"}}}}),
        route("/slow/*", [(up.port,)], id="slow", plugins={"http-logger": {
            "uri": f"http://127.0.0.1:{collector.port}/ingest", "batch_max_size": 1}})]})
    assert gw.get("/secret/x").headers["X-Secret"] == "for-someone-else"
    try:
        requests.get(gw.url("/slow/1500"), timeout=0.4)
    except requests.exceptions.Timeout:
        pass
    wait_until(lambda: len(posts(collector)) == 1, timeout=5)
    e = json.loads(posts(collector)[0][1])
    assert e["response"]["status"] == 499
    assert e["response"]["headers"] == {}  # no head went out; none of the previous request's
    assert e["latency"] >= 300


class Collectors:
    """A TCP collector (each connection's bytes until close) and a UDP one (each datagram)."""

    def __init__(self):
        self.tcp, self.udp = [], []
        self.tcp_sock = socket.socket()
        self.tcp_sock.bind(("127.0.0.1", 0))
        self.tcp_sock.listen(16)
        self.udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp_sock.bind(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._receive, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.tcp_sock.accept()
            except OSError:
                return
            data = b""
            while chunk := c.recv(65536):
                data += chunk
            c.close()
            self.tcp.append(data.decode())

    def _receive(self):
        while True:
            try:
                self.udp.append(self.udp_sock.recv(65536).decode())
            except OSError:
                return


def test_tcp_and_udp_loggers_send_batches(gateway, upstream):
    up, col = upstream(), Collectors()
    tcp_port, udp_port = col.tcp_sock.getsockname()[1], col.udp_sock.getsockname()[1]
    gw = gateway({"routes": [
        route("/t/*", [(up.port,)], id="t", plugins={"tcp-logger": {
            "host": "127.0.0.1", "port": tcp_port, "batch_max_size": 2,
            "log_format": {"uri": "$uri", "status": "$status"}}}),
        route("/u/*", [(up.port,)], id="u", plugins={"udp-logger": {
            "host": "localhost", "port": udp_port, "batch_max_size": 1}}),
        route("/dead/*", [(up.port,)], id="dead", plugins={"tcp-logger": {
            "host": "127.0.0.1", "port": 1, "batch_max_size": 1, "name": "gone"}})]})
    gw.get("/t/1")
    gw.get("/t/2")
    gw.get("/u/1")
    assert gw.get("/dead/x").status_code == 200
    wait_until(lambda: len(col.tcp) == 1 and len(col.udp) == 1)
    assert json.loads(col.tcp[0]) == [{"uri": "/t/1", "status": "200", "route_id": "t"},
                                      {"uri": "/t/2", "status": "200", "route_id": "t"}]
    e = json.loads(col.udp[0])  # batch_max_size 1: the object itself
    assert e["request"]["uri"] == "/u/1" and e["route_id"] == "u"
    gw.wait_log("Batch Processor[gone]")
    assert log_entries_metric(gw, plugin="tcp-logger", logger="gone", outcome="failed") == 1


def test_udp_logger_refuses_a_batch_larger_than_a_datagram(gateway, upstream):
    up, col = upstream(), Collectors()
    gw = gateway({"routes": [route("/u/*", [(up.port,)], id="u", plugins={"udp-logger": {
        "host": "127.0.0.1", "port": col.udp_sock.getsockname()[1], "batch_max_size": 1,
        "include_resp_body": True}})]})
    assert gw.get("/u/x", data=b"x" * 70000).status_code == 200
    wait_until(lambda: log_entries_metric(gw, plugin="udp-logger", outcome="failed") == 1)
    assert "does not fit a datagram" in gw.error_log()


def test_batches_go_out_when_the_gateway_stops(gateway, upstream):
    up, collector = upstream(), upstream(name="logs")
    gw = gateway({"routes": [route("/api/*", [(up.port,)], id="api", plugins={"http-logger": {
        "uri": f"http://127.0.0.1:{collector.port}/ingest", "batch_max_size": 100,
        "inactive_timeout": 600, "buffer_duration": 600}})]})
    for i in range(3):
        assert gw.get(f"/api/{i}").status_code == 200
    time.sleep(0.2)
    assert posts(collector) == []  # waiting for a fuller batch
    gw.stop()
    assert [e["request"]["uri"] for e in entries_of(collector)] == ["/api/0", "/api/1", "/api/2"]
    assert "sending 3 batched log entries before stopping" in gw.error_log()


def test_plugin_metadata_log_format_applies_to_every_logger(gateway, upstream, tmp_path):
    up, collector = upstream(), upstream(name="logs")
    uri = f"http://127.0.0.1:{collector.port}/ingest"
    gw = gateway({
        "plugin_metadata": [{"id": "http-logger", "log_format": {"host": "$host",
                                                                 "client": "$remote_addr"}},
                            {"id": "file-logger", "log_format": {"f": "$uri"}}],
        "routes": [
            route("/file/*", [(up.port,)], id="file", plugins={"file-logger": {
                "path": str(tmp_path / "f.log")}}),
            route("/meta/*", [(up.port,)], id="meta", plugins={"http-logger": {
                "uri": uri, "batch_max_size": 1}}),
            route("/own/*", [(up.port,)], id="own", plugins={"http-logger": {
                "uri": uri, "batch_max_size": 1, "log_format": {"u": "$uri"}}})]})
    gw.get("/meta/x", headers={"Host": "chat.example.com"})
    wait_until(lambda: len(posts(collector)) == 1)
    gw.get("/own/y")
    wait_until(lambda: len(posts(collector)) == 2)
    assert entries_of(collector) == [
        {"host": "chat.example.com", "client": "127.0.0.1", "route_id": "meta"},
        {"u": "/own/y", "route_id": "own"}]  # its own log_format wins
    gw.get("/file/z")  # file-logger's metadata, not http-logger's
    wait_until(lambda: (tmp_path / "f.log").exists() and (tmp_path / "f.log").read_text())
    assert json.loads((tmp_path / "f.log").read_text()) == {"f": "/file/z", "route_id": "file"}


def test_plugin_metadata_over_the_admin_api(etcd, gateway, upstream):
    up, collector = upstream(), upstream(name="logs")
    gw = gateway(etcd=etcd)
    assert gw.admin("PUT", "/routes/r", route("/api/*", [(up.port,)], id="r", plugins={
        "http-logger": {"uri": f"http://127.0.0.1:{collector.port}/i", "batch_max_size": 1}})
    ).status_code == 201

    def logged():
        """Sends a request; the newest entry the log server has (it may lag by one)."""
        gw.get("/api/x")
        return entries_of(collector)[-1] if posts(collector) else {}

    r = gw.admin("PUT", "/plugin_metadata/http-logger", {"log_format": {"m": "$request_method"}})
    assert r.status_code == 201, r.text
    wait_until(lambda: logged() == {"m": "GET", "route_id": "r"}, timeout=5)
    r = gw.admin("PUT", "/plugin_metadata/limit-req", {"log_format": {"m": "$uri"}})
    assert r.status_code == 400 and "takes no plugin metadata" in r.text
    r = gw.admin("PUT", "/plugin_metadata/http-logger", {"log_format": {"m": ["$uri"]}})
    assert r.status_code == 400 and "log_format" in r.text
    assert gw.admin("DELETE", "/plugin_metadata/http-logger").status_code == 200
    wait_until(lambda: "request" in logged(), timeout=5)  # APISIX's full entry again
