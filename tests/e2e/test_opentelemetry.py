"""opentelemetry through the binary: the W3C traceparent taken from the client and passed on
upstream, one SERVER span per sampled request exported over OTLP/HTTP (protobuf) in batches to
a real HTTP collector (upstream.TestUpstream keeps every request; otlp_wire decodes them), the
samplers, trace ids from request ids, the plugin_metadata settings (file and Admin API), a
failing collector never touching requests, and schema errors."""
import time

import json

from conftest import assert_plugin_errors, raw, route, validate, wait_until
from prom_text import parse
import otlp_wire

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def spans_of(collector):
    """Every span the collector got so far, with its resource and scope."""
    with collector.lock:
        bodies = [r.body for r in collector.requests]
    out = []
    for body in bodies:
        for resource, scope, spans in otlp_wire.export(body):
            out.extend(dict(s, resource=resource, scope=scope) for s in spans)
    return out


class RawAnswer:
    """An answer to a request sent byte by byte (requests cannot repeat a header)."""

    def __init__(self, data):
        head, _, self.body = data.partition(b"\r\n\r\n")
        self.status_code = int(head.split(b" ")[1])

    def json(self):
        return json.loads(self.body)


def get_with_lines(gw, path, lines):
    """GET `path` with these (name, value) header lines, in order, repeats kept."""
    head = "".join(f"{k}: {v}\r\n" for k, v in lines)
    return RawAnswer(raw(gw.port, (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
                                   "Connection: close\r\n\r\n").encode()))


def metadata(collector, **extra):
    m = {"id": "opentelemetry",
         "collector": {"address": f"127.0.0.1:{collector.port}",
                       "request_headers": {"Authorization": "Bearer otel-token"}},
         "batch_span_processor": {"max_export_batch_size": 2, "inactive_timeout": 0.2,
                                  "batch_timeout": 1}}
    m.update(extra)
    return m


def sent_upstream(response, name):
    """The value of header `name` the upstream got (its echo), or None."""
    for k, v in response.json()["headers"]:
        if k.lower() == name:
            return v
    return None


def test_a_sampled_request_becomes_one_server_span(gateway, upstream):
    up, collector = upstream(), upstream(name="otel")
    otel = {"sampler": {"name": "always_on"}, "additional_attributes": ["arg_uid", "http_x_none"],
            "additional_header_prefix_attributes": ["X-Tenant-*", "x-app"]}
    gw = gateway({"routes": [route("/otel/*", [(up.port,)], id="otel", name="chat-api",
                                   plugins={"opentelemetry": otel})],
                  "plugin_metadata": [metadata(collector, resource={
                      "service.name": "edge-gw", "deployment.environment": "test",
                      "shard": 3, "canary": True})]})
    before = time.time_ns()
    r = gw.get("/otel/send?uid=42", headers={"User-Agent": "chat/1.0", "X-Tenant-Id": "t1",
                                             "X-Tenant-Zone": "eu", "X-App": "web",
                                             "tracestate": "orphan=1"})
    assert r.status_code == 200
    version, trace_id, span_id, flags = sent_upstream(r, "traceparent").split("-")
    assert (version, flags) == ("00", "01") and len(trace_id) == 32 and len(span_id) == 16
    assert sent_upstream(r, "tracestate") is None  # without a parent it means nothing
    wait_until(lambda: spans_of(collector))
    [s] = spans_of(collector)
    assert (s["trace_id"], s["span_id"], s["parent_span_id"]) == (trace_id, span_id, "")
    assert s["name"] == "GET /otel/*" and s["kind"] == 2 and s["status"] is None
    assert before <= s["start"] <= s["end"] <= time.time_ns()
    a = s["attributes"]
    assert a == {"net.host.name": "127.0.0.1", "http.method": "GET", "http.scheme": "http",
                 "http.target": "/otel/send?uid=42", "http.user_agent": "chat/1.0",
                 "apisix.route_id": "otel", "apisix.route_name": "chat-api",
                 "http.route": "/otel/*", "arg_uid": "42", "x-tenant-id": "t1",
                 "x-tenant-zone": "eu", "x-app": "web",
                 "http.status_code": 200, "http.response.status_code": 200}
    assert s["scope"] == "portico"
    res = s["resource"]
    assert res["hostname"] and res["service.name"] == "edge-gw"
    assert res["deployment.environment"] == "test" and res["shard"] == 3.0 and res["canary"] is True
    with collector.lock:
        post = collector.requests[0]
    assert post.method == "POST" and post.target == "/v1/traces"
    assert post.header("content-type") == "application/x-protobuf"
    assert post.header("authorization") == "Bearer otel-token"


def test_a_trace_crosses_the_gateway_and_parent_base_follows_the_caller(gateway, upstream):
    up, collector = upstream(), upstream(name="otel")
    gw = gateway({"routes": [route("/pb/*", [(up.port,)], id="pb", plugins={"opentelemetry": {
        "sampler": {"name": "parent_base", "options": {"root": {"name": "always_off"}}}}})],
        "plugin_metadata": [metadata(collector)]})
    # The caller did not sample: neither does the gateway, but the trace goes on upstream.
    r = gw.get("/pb/a", headers={"traceparent": f"00-{TRACE}-{PARENT}-00"})
    _, trace_id, span_id, flags = sent_upstream(r, "traceparent").split("-")
    assert (trace_id, flags) == (TRACE, "00") and span_id != PARENT
    # No caller, an always_off root: a new trace, not sampled.
    r = gw.get("/pb/b")
    _, unsampled_root, _, flags = sent_upstream(r, "traceparent").split("-")
    assert unsampled_root != TRACE and flags == "00"
    # A malformed traceparent (upper-case hex) is no parent.
    r = gw.get("/pb/c", headers={"traceparent": f"00-{TRACE.upper()}-{PARENT}-01"})
    assert sent_upstream(r, "traceparent").split("-")[1] != TRACE.upper().lower()
    # The caller sampled: so does the gateway, as the caller's child; tracestate passes on.
    # Two tracestate lines are one list; flags it does not know are not passed on (the random
    # flag, 02, is).
    r = get_with_lines(gw, "/pb/d", [("traceparent", f" 00-{TRACE}-{PARENT}-ff "),
                                     ("tracestate", "chat=1"), ("tracestate", "edge=2")])
    _, trace_id, span_id, flags = sent_upstream(r, "traceparent").split("-")
    assert (trace_id, flags) == (TRACE, "03")
    assert sent_upstream(r, "tracestate") == "chat=1, edge=2"
    # Two traceparents are no caller (W3C: restart the trace); a malformed tracestate is dropped.
    r = get_with_lines(gw, "/pb/e", [("traceparent", f"00-{TRACE}-{PARENT}-01"),
                                     ("traceparent", f"00-{TRACE}-{PARENT}-01")])
    assert sent_upstream(r, "traceparent").split("-")[1] != TRACE
    r = gw.get("/pb/f", headers={"traceparent": f"00-{TRACE}-{PARENT}-00",
                                 "tracestate": "=nokey"})
    assert sent_upstream(r, "tracestate") is None
    wait_until(lambda: spans_of(collector))
    time.sleep(0.6)  # (past the batch's inactive_timeout: anything else would have come)
    [s] = spans_of(collector)
    assert (s["trace_id"], s["span_id"], s["parent_span_id"]) == (TRACE, span_id, PARENT)
    assert s["trace_state"] == "chat=1, edge=2" and s["attributes"]["http.target"] == "/pb/d"


def test_trace_id_ratio_samples_by_the_trace_ids_first_bytes(gateway, upstream):
    up, collector = upstream(), upstream(name="otel")
    gw = gateway({"routes": [route("/r/*", [(up.port,)], id="r", plugins={"opentelemetry": {
        "sampler": {"name": "trace_id_ratio", "options": {"fraction": 0.5}}}})],
        "plugin_metadata": [metadata(collector)]})
    low, high = "00000001" + TRACE[8:], "ffffffff" + TRACE[8:]
    # The ratio reads the trace id, whatever the caller decided.
    r_low = gw.get("/r/low", headers={"traceparent": f"00-{low}-{PARENT}-00"})
    r_high = gw.get("/r/high", headers={"traceparent": f"00-{high}-{PARENT}-01"})
    assert sent_upstream(r_low, "traceparent").endswith("-01")
    assert sent_upstream(r_high, "traceparent").endswith("-00")
    wait_until(lambda: spans_of(collector))
    time.sleep(0.6)
    assert [s["trace_id"] for s in spans_of(collector)] == [low]


def test_text_that_is_not_utf8_and_a_routes_second_uri(gateway, upstream):
    up, collector = upstream(), upstream(name="otel")
    gw = gateway({"routes": [{"id": "two", "uris": ["/first/*", "/second/*"],
                              "upstream": {"nodes": {f"127.0.0.1:{up.port}": 1}},
                              "plugins": {"opentelemetry": {
                                  "sampler": {"name": "always_on"},
                                  "additional_attributes": ["http_x_raw"]}}}],
                  "plugin_metadata": [metadata(collector)]})
    r = gw.get("/second/a", headers={"User-Agent": b"bot\xff/1".decode("latin-1"),
                                     "X-Raw": b"\xfe\xc3ok".decode("latin-1")})
    assert r.status_code == 200
    wait_until(lambda: spans_of(collector))  # the batch decodes: every string is UTF-8
    [s] = spans_of(collector)
    assert s["name"] == "GET /second/*" and s["attributes"]["http.route"] == "/second/*"
    assert s["attributes"]["http.user_agent"] == "bot\ufffd/1"
    assert s["attributes"]["http_x_raw"] == "\ufffd\ufffdok"


def test_failed_answers_and_local_answers(gateway, upstream):
    up, collector = upstream(), upstream(name="otel")
    on = {"opentelemetry": {"sampler": {"name": "always_on"}}}
    gw = gateway({"routes": [
        route("/status/*", [(up.port,)], id="st", plugins=on),
        route("/blocked/*", [(up.port,)], id="blocked",
              plugins=dict(on, **{"uri-blocker": {"block_rules": ["secret"]}})),
        route("/svc/*", [(up.port,)], id="svc", service_id="chat", plugins=on)],
        "services": [{"id": "chat", "name": "chat-service"}],
        "plugin_metadata": [metadata(collector)]})
    assert gw.get("/status/503").status_code == 503
    assert gw.get("/blocked/secret").status_code == 403
    assert gw.get("/svc/x").status_code == 200
    wait_until(lambda: len(spans_of(collector)) == 3)
    by_target = {s["attributes"]["http.target"]: s for s in spans_of(collector)}
    failed = by_target["/status/503"]
    assert failed["status"] == {"message": "upstream response status: 503", "code": 2}
    assert failed["attributes"]["http.status_code"] == 503
    blocked = by_target["/blocked/secret"]  # answered here: its own status, not an error
    assert blocked["attributes"]["http.status_code"] == 403 and blocked["status"] is None
    svc = by_target["/svc/x"]["attributes"]
    assert svc["apisix.service_id"] == "chat" and svc["apisix.service_name"] == "chat-service"
    assert "apisix.service_id" not in failed["attributes"]


def test_trace_ids_from_request_ids_and_trace_variables(gateway, upstream):
    up, collector = upstream(), upstream(name="otel")
    gw = gateway({"routes": [route("/rid/*", [(up.port,)], id="rid", plugins={
        "request-id": {},
        "opentelemetry": {"sampler": {"name": "always_on"}},
        "proxy-rewrite": {"headers": {"set": {"X-Trace-Id": "$opentelemetry_trace_id",
                                              "X-Span-Id": "$opentelemetry_span_id"}}}}),
        route("/plain/*", [(up.port,)], id="plain", plugins={
            "opentelemetry": {"sampler": {"name": "always_on"}},
            "proxy-rewrite": {"headers": {"set": {"X-Trace-Id": "$opentelemetry_trace_id"}}}})],
        "plugin_metadata": [metadata(collector, trace_id_source="x-request-id",
                                     set_ngx_var=True)]})
    r = gw.get("/rid/a")
    request_id = r.headers["X-Request-Id"]
    trace_id = request_id.replace("-", "")
    _, sent_trace, sent_span, _ = sent_upstream(r, "traceparent").split("-")
    assert sent_trace == trace_id
    assert sent_upstream(r, "x-trace-id") == trace_id and sent_upstream(r, "x-span-id") == sent_span
    # A client's own request id that is no trace id: a random trace each time.
    traces = []
    for _ in range(2):
        r = gw.get("/rid/b", headers={"X-Request-Id": "not-a-trace-id"})
        assert r.headers["X-Request-Id"] == "not-a-trace-id"
        traces.append(sent_upstream(r, "traceparent").split("-")[1])
    assert len(set(traces)) == 2 and all(len(t) == 32 and int(t, 16) for t in traces)
    # Without the request-id plugin, the X-Request-Id header; set_ngx_var off: no variables.
    r = gw.get("/plain/c", headers={"X-Request-Id": "0af7651916cd43dd8448eb211c80319c"})
    assert sent_upstream(r, "traceparent").split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    wait_until(lambda: len(spans_of(collector)) == 5)
    assert trace_id in [s["trace_id"] for s in spans_of(collector)]


def test_a_failing_collector_never_touches_requests(gateway, upstream):
    up, collector = upstream(), upstream(name="otel")
    collector.fail_status = 500
    gw = gateway({"routes": [route("/f/*", [(up.port,)], id="f", plugins={"opentelemetry": {
        "sampler": {"name": "always_on"}}})], "plugin_metadata": [metadata(collector)]})
    for i in range(3):
        assert gw.get(f"/f/{i}").status_code == 200

    def failed():
        text = gw.control("/metrics").text
        return parse(text).value("portico_log_entries_total", plugin="opentelemetry",
                                 outcome="failed")
    assert wait_until(lambda: failed() == 3, timeout=15)  # after its retries
    with collector.lock:
        bodies = [r.body for r in collector.requests]
    assert all(bodies.count(b) == 3 for b in bodies)  # each batch tried three times
    # A 400 is not worth trying again: one attempt per batch.
    collector.fail_status = 400
    with collector.lock:
        collector.requests.clear()
    assert gw.get("/f/400").status_code == 200
    assert wait_until(lambda: failed() == 4, timeout=10)
    with collector.lock:
        assert len(collector.requests) == 1


def test_metadata_over_the_admin_api_moves_spans(etcd, gateway, upstream):
    up, first, second = upstream(), upstream(name="otel1"), upstream(name="otel2")
    gw = gateway(etcd=etcd)
    assert gw.admin("PUT", "/plugin_metadata/opentelemetry", {
        k: v for k, v in metadata(first).items() if k != "id"}).status_code == 201
    assert gw.admin("PUT", "/routes/r", route("/api/*", [(up.port,)], id="r", plugins={
        "opentelemetry": {"sampler": {"name": "always_on"}}})).status_code == 201
    assert wait_until(lambda: gw.get("/api/x").status_code == 200 and spans_of(first), timeout=5)
    r = gw.admin("PUT", "/plugin_metadata/opentelemetry", {
        k: v for k, v in metadata(second).items() if k != "id"})
    assert r.status_code in (200, 201), r.text
    assert wait_until(lambda: gw.get("/api/y") and any(
        s["attributes"]["http.target"] == "/api/y" for s in spans_of(second)), timeout=5)
    r = gw.admin("PUT", "/plugin_metadata/opentelemetry", {"trace_id_source": "uuid"})
    assert r.status_code == 400 and "trace_id_source" in r.text


def test_schema_errors(tmp_path):
    assert_plugin_errors(tmp_path, "opentelemetry", [
        ({"sampler": {"name": "sometimes"}}, "opentelemetry.sampler.name"),
        ({"sampler": {"name": "trace_id_ratio", "options": {"fraction": 2}}},
         "opentelemetry.sampler.options.fraction"),
        ({"sampler": {"name": "always_on", "options": {"root": {"name": "always_on"}}}},
         "opentelemetry.sampler.options.root"),
        ({"sampler": {"name": "parent_base", "options": {"root": {"name": "parent_base"}}}},
         "opentelemetry.sampler.options.root.name"),
        ({"additional_attributes": "uri", "extra": 1}, "opentelemetry.extra"),
        ({"additional_header_prefix_attributes": ["bad header*"]},
         "opentelemetry.additional_header_prefix_attributes")])
    for bad, want in [
            ({"trace_id_source": "uuid"}, "trace_id_source"),
            ({"collector": {"address": "127.0.0.1:4318", "timeout": 3}}, "collector.timeout"),
            ({"batch_span_processor": {"max_queue_size": 0}},
             "batch_span_processor.max_queue_size"),
            ({"collector": {"request_headers": {"Host": "collector"}}}, "collector.request_headers"),
            ({"resource": {"service.name": ["a"]}}, "resource"),
            ({"collector": {"request_headers": {"X-Bad": "a\nb"}}}, "collector.request_headers"),
            ({"log_format": {"a": "$uri"}}, "log_format")]:
        rc, out = validate(tmp_path, {"plugin_metadata": [dict(bad, id="opentelemetry")]})
        assert rc != 0 and f"plugin_metadata[0].{want}" in out, out
