"""zipkin through the binary: B3 propagation to the upstream (multi and single headers, the
caller's decision, debug, a malformed b3 refused), the spans APISIX reports in Zipkin's JSON v2
(span_version 2 and 1) POSTed in batches to a real HTTP collector (upstream.TestUpstream keeps
every request), sampling by ratio, and schema errors."""
import json

from conftest import assert_plugin_errors, route, wait_until

TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
SPAN = "e457b5a2e4d86bd1"


def reported(collector):
    with collector.lock:
        bodies = [r.body for r in collector.requests]
    return [span for body in bodies for span in json.loads(body)]


def sent_upstream(response, name):
    for k, v in response.json()["headers"]:
        if k.lower() == name:
            return v
    return None


def zipkin(collector, **kw):
    conf = {"endpoint": f"http://127.0.0.1:{collector.port}/api/v2/spans", "sample_ratio": 1,
            "service_name": "edge", "server_addr": "10.0.0.7"}
    conf.update(kw)
    return {"zipkin": conf}


def test_a_sampled_request_reports_apisix_spans(gateway, upstream):
    up, collector = upstream(), upstream(name="zipkin")
    gw = gateway({"routes": [route("/z/*", [(up.port,)], id="z", plugins=zipkin(collector))]})
    r = gw.get("/z/a?x=1", headers={"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN,
                                    "X-B3-Sampled": "1"})
    assert r.status_code == 200
    assert sent_upstream(r, "x-b3-traceid") == TRACE
    assert sent_upstream(r, "x-b3-sampled") == "1"
    proxy_id, request_id = sent_upstream(r, "x-b3-spanid"), sent_upstream(r, "x-b3-parentspanid")
    # Batches wait for 5 s without a new span (APISIX's reporter).
    assert wait_until(lambda: len(reported(collector)) == 3, timeout=10)
    with collector.lock:
        post = collector.requests[0]
    assert post.method == "POST" and post.target == "/api/v2/spans"
    assert post.header("content-type") == "application/json"
    spans = {s["name"]: s for s in reported(collector)}
    request, proxy, response = (spans["apisix.request"], spans["apisix.proxy"],
                                spans["apisix.response_span"])
    assert all(s["traceId"] == TRACE for s in spans.values())
    assert request["id"] == request_id and request["parentId"] == SPAN
    assert request["kind"] == "SERVER"
    assert request["tags"] == {"component": "apisix", "http.method": "GET",
                               "http.url": "/z/a?x=1", "http.status_code": "200"}
    assert request["remoteEndpoint"]["ipv4"] == "127.0.0.1"
    assert request["localEndpoint"] == {"serviceName": "edge", "ipv4": "10.0.0.7",
                                        "port": gw.port}
    assert proxy["id"] == proxy_id and proxy["parentId"] == request_id
    assert response["parentId"] == request_id
    assert proxy["timestamp"] == request["timestamp"]
    # From the request's arrival: within the exchange as the access log timed it.
    assert request["duration"] >= proxy["duration"] + response["duration"] - 1
    assert proxy["timestamp"] + proxy["duration"] <= response["timestamp"]
    assert response["timestamp"] + response["duration"] <= \
        request["timestamp"] + request["duration"] + 1


def test_decisions_the_single_header_and_a_malformed_one(gateway, upstream):
    up, collector = upstream(), upstream(name="zipkin")
    gw = gateway({"routes": [
        route("/never/*", [(up.port,)], id="never",
              plugins=zipkin(collector, sample_ratio=0.00001)),
        route("/v1/*", [(up.port,)], id="v1", plugins=zipkin(collector, span_version=1))]})
    # Not sampled: the trace goes on upstream, nothing is reported.
    r = gw.get("/never/a")
    trace = sent_upstream(r, "x-b3-traceid")
    assert len(trace) == 32 and sent_upstream(r, "x-b3-sampled") == "0"
    assert sent_upstream(r, "x-b3-parentspanid") is None
    # A single header that says not to sample: its ids go on, the request span's id new.
    r = gw.get("/v1/a", headers={"b3": f"{TRACE}-{SPAN}-0"})
    assert sent_upstream(r, "b3") is None
    assert (sent_upstream(r, "x-b3-traceid"), sent_upstream(r, "x-b3-sampled"),
            sent_upstream(r, "x-b3-parentspanid")) == (TRACE, "0", SPAN)
    assert sent_upstream(r, "x-b3-spanid") != SPAN
    # The caller's "sample" wins over a tiny ratio; debug ("d") sets X-B3-Flags, which implies
    # sampled (B3: then no X-B3-Sampled).
    r = gw.get("/never/b", headers={"b3": f"{TRACE}-{SPAN}-d"})
    assert sent_upstream(r, "x-b3-flags") == "1" and sent_upstream(r, "x-b3-sampled") is None
    # X-B3-Flags: 1 samples, unless X-B3-Sampled: 0 says otherwise.
    r = gw.get("/never/c", headers={"X-B3-Flags": "1", "X-B3-Sampled": "0"})
    assert sent_upstream(r, "x-b3-sampled") == "0" and sent_upstream(r, "x-b3-flags") is None
    # All-zero or malformed ids start a new trace (Zipkin would refuse the batch).
    for bad in ({"X-B3-TraceId": "0" * 32, "X-B3-SpanId": SPAN},
                {"X-B3-TraceId": TRACE, "X-B3-SpanId": "xyz"},
                {"b3": f"{TRACE}-{SPAN}-0-{SPAN}-extra"}):
        r = gw.get("/never/d", headers=bad)
        assert sent_upstream(r, "x-b3-traceid") not in (TRACE, "0" * 32)
        assert sent_upstream(r, "x-b3-parentspanid") is None
    # No span id in the single header: 400, as APISIX.
    assert gw.get("/v1/b", headers={"b3": TRACE}).status_code == 400
    # span_version 1: rewrite, access, proxy and body_filter under the request span.
    r = gw.get("/v1/c")
    # (3 spans of the debug request, 5 of this one)
    assert wait_until(lambda: len(reported(collector)) == 3 + 5, timeout=10)
    debug = [s for s in reported(collector) if s["traceId"] == TRACE]
    assert sorted(s["name"] for s in debug) == ["apisix.proxy", "apisix.request",
                                                "apisix.response_span"]
    v1 = [s for s in reported(collector) if s["traceId"] == sent_upstream(r, "x-b3-traceid")]
    by_name = {s["name"]: s for s in v1}
    assert set(by_name) == {"apisix.request", "apisix.rewrite", "apisix.access", "apisix.proxy",
                            "apisix.body_filter"}
    assert by_name["apisix.body_filter"]["parentId"] == by_name["apisix.proxy"]["id"]
    assert by_name["apisix.proxy"]["parentId"] == by_name["apisix.request"]["id"]


def test_schema_errors(tmp_path):
    ok = {"endpoint": "http://127.0.0.1:9411/api/v2/spans", "sample_ratio": 1}
    assert_plugin_errors(tmp_path, "zipkin", [
        ({"sample_ratio": 1}, "zipkin.endpoint"),
        ({"endpoint": "ftp://x/y", "sample_ratio": 1}, "zipkin.endpoint"),
        ({"endpoint": ok["endpoint"]}, "zipkin.sample_ratio"),
        (dict(ok, sample_ratio=2), "zipkin.sample_ratio"),
        (dict(ok, sample_ratio=0), "zipkin.sample_ratio"),
        (dict(ok, span_version=3), "zipkin.span_version"),
        (dict(ok, server_addr="localhost"), "zipkin.server_addr")])
