"""Plugins that rehearse and contain failures, through the binary: fault-injection (abort and
delay, by share and by `vars`, before authentication) and api-breaker (trips on unhealthy
upstream answers per host and path, answers locally for 2^n seconds, forgets after healthy
answers)."""
import threading
import time

import requests

from conftest import assert_plugin_errors, route


# ------------------------------------------------------------------------- fault-injection

def test_fault_injection_abort_by_vars_share_and_before_auth(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/abort", [(up.port,)], id="abort", plugins={"fault-injection": {"abort": {
            "http_status": 503, "body": "fault for $arg_user\n",
            "headers": {"X-Fault": "$route_id"},
            "vars": [[["arg_user", "==", "jack"]], [["http_x_test", "==", "1"]]]}}}),
        route("/always", [(up.port,)], id="always", plugins={
            "key-auth": {}, "fault-injection": {"abort": {"http_status": 418}}}),
        route("/never", [(up.port,)], id="never", plugins={
            "fault-injection": {"abort": {"http_status": 500, "percentage": 0}}}),
        route("/half", [(up.port,)], id="half", plugins={
            "fault-injection": {"abort": {"http_status": 500, "percentage": 50}}}),
        route("/emptyvars", [(up.port,)], id="emptyvars", plugins={
            "fault-injection": {"abort": {"http_status": 500, "vars": []}}}),
    ]})
    r = gw.get("/abort?user=jack")
    assert r.status_code == 503 and r.text == "fault for jack\n"
    assert r.headers["X-Fault"] == "abort"
    assert gw.get("/abort", headers={"X-Test": "1"}).status_code == 503  # either expression
    assert gw.get("/abort?user=rose").status_code == 200
    # Before authentication (rewrite, priority 11000): no key needed to see the fault.
    assert gw.get("/always").status_code == 418
    assert all(gw.get("/never").status_code == 200 for _ in range(20))
    assert gw.get("/emptyvars").status_code == 200  # APISIX: an empty list never matches
    s = requests.Session()
    aborted = sum(s.get(gw.url("/half")).status_code == 500 for _ in range(200))
    assert 50 < aborted < 150, aborted  # a fair coin: outside this, 1 in 10^12


def test_fault_injection_delay_holds_one_request_not_the_worker(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/lag", [(up.port,)], id="lag", plugins={"fault-injection": {
            "delay": {"duration": 1.0, "vars": [[["arg_slow", "==", "1"]]]}}}),
        route("/lagfail", [(up.port,)], id="lagfail", plugins={"fault-injection": {
            "delay": {"duration": 0.3}, "abort": {"http_status": 502, "body": "down"}}}),
    ]}, workers=1)
    t0 = time.monotonic()
    assert gw.get("/lag").status_code == 200
    assert time.monotonic() - t0 < 0.9
    done = {}

    def slow():
        start = time.monotonic()
        done["status"] = gw.get("/lag?slow=1").status_code
        done["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    t1 = time.monotonic()
    assert gw.get("/lag").status_code == 200  # the one worker serves others meanwhile
    assert time.monotonic() - t1 < 0.5
    assert "status" not in done
    t.join()
    assert done["status"] == 200 and done["elapsed"] >= 0.95
    t2 = time.monotonic()
    r = gw.get("/lagfail")
    assert r.status_code == 502 and r.text == "down" and time.monotonic() - t2 >= 0.28
    assert not [q for q in up.requests if q.target.startswith("/lagfail")]


def test_fault_injection_delay_on_a_consumer_runs_after_auth(gateway, upstream):
    up = upstream()
    gw = gateway({
        "routes": [route("/api", [(up.port,)], id="api", plugins={"key-auth": {}})],
        "consumers": [{"username": "tester", "plugins": {
            "key-auth": {"key": "tk"},
            "fault-injection": {"delay": {"duration": 0.5}, "abort": {"http_status": 429}}}}]})
    t0 = time.monotonic()
    assert gw.get("/api", headers={"apikey": "tk"}).status_code == 429
    assert time.monotonic() - t0 >= 0.45
    assert gw.get("/api").status_code == 401


def test_fault_injection_schema_errors(tmp_path):
    bad = [({}, "fault-injection: needs abort or delay"),
           ({"abort": {}}, "fault-injection.abort.http_status"),
           ({"abort": {"http_status": 100}}, "fault-injection.abort.http_status"),
           ({"abort": {"http_status": 500, "percentage": 101}}, "fault-injection.abort.percentage"),
           ({"delay": {"duration": -1}}, "fault-injection.delay.duration"),
           ({"delay": {"duration": 1, "vars": [["arg_a", "==", "b"]]}},
            "fault-injection.delay.vars[0]"),
           ({"abort": {"http_status": 500, "vars": [[["arg_a", "=~", "b"]]]}},
            "fault-injection.abort.vars[0]")]
    assert_plugin_errors(tmp_path, "fault-injection", bad)


# ----------------------------------------------------------------------------- api-breaker

def test_api_breaker_trips_per_path_backs_off_and_recovers(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/svc/*", [(up.port,)], id="svc", plugins={"api-breaker": {
        "break_response_code": 502, "break_response_body": "circuit open",
        "break_response_headers": [{"key": "X-Breaker", "value": "$route_id"}],
        "max_breaker_sec": 3,
        "unhealthy": {"http_statuses": [500, 503], "failures": 2},
        "healthy": {"http_statuses": [200], "successes": 2}}})]})
    s = requests.Session()

    def get(path):
        return s.get(gw.url(path), timeout=5)

    def upstream_hits(path):
        return len([q for q in up.requests if q.target == path])

    up.fail_status = 500
    assert get("/svc/a").status_code == 500
    assert get("/svc/a").status_code == 500  # second failure: trips for 2 s
    r = get("/svc/a")
    assert r.status_code == 502 and r.text == "circuit open" and r.headers["X-Breaker"] == "svc"
    assert upstream_hits("/svc/a") == 2
    assert get("/svc/b").status_code == 500  # another path has its own breaker
    time.sleep(2.2)
    assert get("/svc/a").status_code == 500  # closed again; third failure, no trip
    assert get("/svc/a").status_code == 500  # fourth: second trip, 4 s capped at 3
    t0 = time.monotonic()
    up.fail_status = 0
    while get("/svc/a").status_code == 502:
        time.sleep(0.1)
    assert 2.7 < time.monotonic() - t0 < 4.5
    assert upstream_hits("/svc/a") == 5
    assert get("/svc/a").status_code == 200  # two healthy in a row: failures forgotten
    up.fail_status = 500
    assert get("/svc/a").status_code == 500  # one failure after the reset does not trip
    assert get("/svc/a").status_code == 500  # the second does
    assert get("/svc/a").status_code == 502


def test_api_breaker_trips_on_failures_slower_than_the_break(gateway, upstream):
    up = upstream(delay_ms=2500)
    up.fail_status = 500
    gw = gateway({"routes": [route("/slowfail", [(up.port,)], id="sf", plugins={"api-breaker": {
        "break_response_code": 503, "unhealthy": {"failures": 1}}})]})
    assert gw.get("/slowfail").status_code == 500  # took 2.5 s, longer than the first 2 s break
    r = gw.get("/slowfail")  # the break counts from the answer, not from the request's start
    assert r.status_code == 503 and len(up.requests) == 1


def test_api_breaker_counts_unreachable_upstreams_when_listed(gateway, upstream):
    gw = gateway({"routes": [route("/gone", [(1,)], id="gone", plugins={"api-breaker": {
        "break_response_code": 503, "unhealthy": {"http_statuses": [502], "failures": 1}}})]})
    assert gw.get("/gone").status_code == 502  # connection refused: the gateway's 502
    r = gw.get("/gone")
    assert r.status_code == 503 and r.text == ""


def test_api_breaker_schema_errors(tmp_path):
    bad = [({}, "api-breaker.break_response_code"),
           ({"break_response_code": 502, "max_breaker_sec": 2}, "api-breaker.max_breaker_sec"),
           ({"break_response_code": 502, "unhealthy": {"http_statuses": [404]}},
            "api-breaker.unhealthy.http_statuses"),
           ({"break_response_code": 502, "healthy": {"http_statuses": [200, 200]}},
            "api-breaker.healthy.http_statuses"),
           ({"break_response_code": 502, "unhealthy": {"failures": 0}},
            "api-breaker.unhealthy.failures"),
           ({"break_response_code": 502, "break_response_headers": [{"key": "X"}]},
            "api-breaker.break_response_headers[0].value")]
    assert_plugin_errors(tmp_path, "api-breaker", bad)


# --------------------------------------------------------------------------------- mocking

def test_mocking_answers_with_examples_and_schemas(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/example", [(up.port,)], id="example", plugins={"mocking": {
            "response_status": 201, "content_type": "text/plain",
            "response_example": "hello $arg_name\n",
            "response_headers": {"X-Req": "$request_method", "X-N": 7}}}),
        route("/schema", [(up.port,)], id="schema", plugins={"mocking": {
            "with_mock_header": False, "response_schema": {"type": "object", "properties": {
                "id": {"type": "integer", "example": 42}, "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string", "example": "vip"}},
                "online": {"type": "boolean"}, "nick": {"type": ["string", "null"]}}}}}),
        route("/late", [(up.port,)], id="late", plugins={"mocking": {
            "response_example": "{}", "delay": 1}}),
    ]}, workers=1)
    r = gw.get("/example?name=jack")
    assert r.status_code == 201 and r.text == "hello jack\n"
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["X-Req"] == "GET" and r.headers["X-N"] == "7"
    assert r.headers["X-Mock-By"].startswith("Portico/")
    r = gw.get("/schema")
    assert r.json() == {"id": 42, "name": "string", "tags": ["vip"], "online": True,
                        "nick": "string"}
    assert r.headers["Content-Type"] == "application/json;charset=utf8"
    assert "X-Mock-By" not in r.headers
    t0 = time.monotonic()
    assert gw.get("/late").text == "{}" and time.monotonic() - t0 >= 0.95
    assert up.requests == []  # mocked answers never touch the upstream


def test_mocking_schema_errors(tmp_path):
    assert_plugin_errors(tmp_path, "mocking", [
        ({}, "mocking: needs response_example or response_schema"),
        ({"response_example": "x", "content_type": "image/png"}, "mocking.content_type"),
        ({"response_schema": {"type": "object"}, "content_type": "text/xml"},
         "mocking.response_schema"),
        ({"response_example": "x", "response_status": 101}, "mocking.response_status"),
        ({"response_example": "x", "delay": -1}, "mocking.delay")])
