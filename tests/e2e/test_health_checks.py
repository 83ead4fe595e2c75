"""Active and passive health checks through the real binary: thresholds both ways, ejection and
return, panic mode, state kept across unrelated config changes, /v1/healthcheck and metrics."""
import collections
import time

import requests

from conftest import route, served_by, wait_until

ACTIVE = {"active": {"type": "http", "http_path": "/health", "timeout": 0.5,
                     "healthy": {"interval": 0.2, "successes": 2},
                     "unhealthy": {"interval": 0.2, "http_failures": 2, "tcp_failures": 1,
                                   "timeouts": 2}}}


def spread(gw, path="/x", n=30):
    s = requests.Session()
    return collections.Counter(s.get(gw.url(path)).headers.get("X-Upstream", "none")
                               for _ in range(n))


def node_states(gw):
    out = {}
    for u in gw.control("/v1/healthcheck").json()["upstreams"]:
        for n in u["nodes"]:
            out[n["address"]] = n.get("state")
    return out


def test_active_http_check_takes_a_node_out_and_back(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    gw = gateway({"routes": [route("/*", [(a.port,), (b.port,)], id="all",
                                   upstream={"checks": ACTIVE})]})
    assert set(spread(gw)) == {"a", "b"}
    b.health_status = 500
    # unhealthy after 2 failed probes 0.2 s apart, without any client request
    assert wait_until(lambda: node_states(gw).get(f"127.0.0.1:{b.port}") == "unhealthy", 3)
    assert spread(gw) == {"a": 30}
    gw.wait_log("is unhealthy (active: 2 HTTP failures (last status 500))")
    b.health_status = 200
    assert wait_until(lambda: node_states(gw).get(f"127.0.0.1:{b.port}") == "healthy", 3)
    assert set(spread(gw)) == {"a", "b"}
    gw.wait_log("is healthy again (active: 2 successes)")


def test_active_tcp_check_sees_a_dead_node(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    checks = {"active": dict(ACTIVE["active"], type="tcp")}
    gw = gateway({"routes": [route("/*", [(a.port,), (b.port,)], id="all",
                                   upstream={"checks": checks, "retries": 0})]})
    b.stop()
    assert wait_until(lambda: node_states(gw).get(f"127.0.0.1:{b.port}") == "unhealthy", 3)
    # no request is lost to the dead node any more, even without retries
    assert spread(gw) == {"a": 30}


def test_checks_start_with_the_config_not_the_first_request(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    b.health_status = 503
    gw = gateway({"routes": [route("/*", [(a.port,), (b.port,)], id="all",
                                   upstream={"checks": ACTIVE})]})
    assert wait_until(lambda: node_states(gw).get(f"127.0.0.1:{b.port}") == "unhealthy", 3)
    assert b.requests == [] or all(r.target == "/health" for r in b.requests)
    assert spread(gw) == {"a": 30}


def test_passive_checks_eject_a_failing_node_and_let_it_back(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    checks = {"passive": {"unhealthy": {"http_statuses": [500], "http_failures": 3},
                          "healthy": {"successes": 2}, "ejection_base_time": 1}}
    gw = gateway({"routes": [route("/*", [(a.port,), (b.port,)], id="all",
                                   upstream={"checks": checks, "retries": 0})]})
    b.fail_status = 500
    s = requests.Session()
    codes = collections.Counter(s.get(gw.url("/x")).status_code for _ in range(20))
    assert codes[500] == 3, codes  # three failures, then b is out
    gw.wait_log("is unhealthy (passive: 3 HTTP failures (last status 500)), ejected for 1 s")
    assert spread(gw, n=10) == {"a": 10}
    b.fail_status = 0
    time.sleep(1.2)  # the ejection ends by itself: no active checks needed
    assert wait_until(lambda: "b" in spread(gw, n=10), 3)
    assert wait_until(lambda: node_states(gw).get(f"127.0.0.1:{b.port}") == "healthy", 3)


def test_passive_counts_connection_failures(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    checks = {"passive": {"unhealthy": {"tcp_failures": 1}, "ejection_base_time": 30}}
    gw = gateway({"routes": [route("/*", [(a.port,), (b.port,)], id="all",
                                   upstream={"checks": checks})]})
    b.stop()
    s = requests.Session()
    answers = [s.get(gw.url("/x")).headers.get("X-Upstream") for _ in range(20)]
    assert answers.count("a") == 20  # the failure was retried on a, then b ejected
    assert node_states(gw)[f"127.0.0.1:{b.port}"] == "unhealthy"


def test_panic_mode_fails_open_when_no_node_is_healthy(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    a.health_status = b.health_status = 500
    gw = gateway({"routes": [route("/*", [(a.port,), (b.port,)], id="all",
                                   upstream={"checks": ACTIVE})]})
    assert wait_until(lambda: set(node_states(gw).values()) == {"unhealthy"}, 3)
    assert set(spread(gw)) <= {"a", "b"} and sum(spread(gw).values()) == 30  # still served
    up = gw.control("/v1/healthcheck").json()["upstreams"][0]
    assert up["panics"] >= 30
    assert "portico_upstream_panics_total" in gw.control("/metrics").text


def test_state_survives_an_unrelated_config_change(gateway, upstream):
    a, b, c = upstream(name="a"), upstream(name="b"), upstream(name="c")
    ups = {"id": "u", "nodes": [{"host": "127.0.0.1", "port": a.port, "weight": 1},
                                {"host": "127.0.0.1", "port": b.port, "weight": 1}],
           "checks": {"active": dict(ACTIVE["active"], healthy={"interval": 5, "successes": 2},
                                     unhealthy={"interval": 5, "http_failures": 1})}}
    b.health_status = 500
    gw = gateway({"upstreams": [ups], "routes": [{"id": "r", "uri": "/*", "upstream_id": "u"}]})
    assert wait_until(lambda: node_states(gw).get(f"127.0.0.1:{b.port}") == "unhealthy", 3)
    b.health_status = 200  # would recover only at the next probe, 5 s later
    gw.write_routes({"upstreams": [ups], "routes": [
        {"id": "r", "uri": "/*", "upstream_id": "u"},
        route("/other", [(c.port,)], id="other")]})
    assert wait_until(lambda: served_by(gw, "/other") == "c", 3)
    assert node_states(gw)[f"127.0.0.1:{b.port}"] == "unhealthy"  # not reset by the reload
    assert spread(gw) == {"a": 30}
    metrics = gw.control("/metrics").text
    assert f'portico_upstream_node_healthy{{upstream="upstreams/u",node="127.0.0.1:{b.port}"}} 0' in metrics


def test_checks_schema_errors_name_the_field(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/a", [(up.port,)])]})
    gw.write_routes({"routes": [route("/b", [(up.port,)], upstream={"checks": {
        "active": {"type": "icmp", "healthy": {"successes": 0}},
        "passive": {"unhealthy": {"http_statuses": [99]}}}})]})
    gw.wait_log("routes[0].upstream.checks.active.type: must be http, https or tcp")
    log = gw.error_log()
    assert "routes[0].upstream.checks.active.healthy.successes: must be" in log
    assert "routes[0].upstream.checks.passive.unhealthy.http_statuses" in log


def test_passive_ejection_never_empties_more_than_its_share_of_a_level(gateway, upstream):
    ups = [upstream(name=f"n{i}") for i in range(4)]
    checks = {"passive": {"unhealthy": {"http_statuses": [500], "http_failures": 1},
                          "max_ejection_percent": 50, "ejection_base_time": 30}}
    gw = gateway({"routes": [route("/*", [(u.port,) for u in ups], id="all",
                                   upstream={"checks": checks, "retries": 0})]})
    for u in ups:
        u.fail_status = 500  # every node fails: a burst of errors, say from a bad deploy
    s = requests.Session()
    for _ in range(40):
        s.get(gw.url("/x"))
    states = collections.Counter(node_states(gw).values())
    assert states == {"unhealthy": 2, "healthy": 2}, states  # 50% of 4, not all four


def test_a_dedicated_line_that_fails_as_a_whole_empties_for_the_public_line(gateway, upstream):
    # The cap on ejections keeps a level that mostly works serving; it must not keep the last
    # node of a line that is cut when a lower level can take over, or every request's first
    # attempt would keep waiting on it.
    d1, d2, pub = upstream(name="d1"), upstream(name="d2"), upstream(name="pub")
    checks = {"passive": {"unhealthy": {"tcp_failures": 1}, "ejection_base_time": 30}}
    gw = gateway({"routes": [route("/*", [(d1.port, 1, 1), (d2.port, 1, 1), (pub.port, 1, 0)],
                                   id="all", upstream={"checks": checks})]})
    assert spread(gw, n=10) == {"d1": 5, "d2": 5}  # the dedicated line first
    d1.stop()
    d2.stop()  # the line is cut
    assert spread(gw, n=10) == {"pub": 10}
    states = node_states(gw)
    assert states[f"127.0.0.1:{d1.port}"] == states[f"127.0.0.1:{d2.port}"] == "unhealthy", states
    assert states[f"127.0.0.1:{pub.port}"] == "healthy"


def test_a_retry_does_not_fall_back_on_nodes_known_to_be_down(gateway, upstream):
    # c is out (refused, ejected). a and b are healthy by the checks but hang on this request:
    # after both, the request ends with their 504; it is not sent to c, known to be down, as
    # if no node were healthy (panic mode is for the upstream as a whole).
    a, b, c = upstream(name="a"), upstream(name="b"), upstream(name="c")
    checks = {"passive": {"unhealthy": {"tcp_failures": 1, "timeouts": 100},
                          "ejection_base_time": 30}}
    gw = gateway({"routes": [route("/*", [(a.port,), (b.port,), (c.port,)], id="all",
                                   upstream={"checks": checks,
                                             "timeout": {"connect": 1, "send": 1, "read": 0.5}})]})
    c.stop()
    s = requests.Session()
    assert wait_until(lambda: s.get(gw.url("/x")).status_code == 200
                      and node_states(gw)[f"127.0.0.1:{c.port}"] == "unhealthy", 5)
    a.hang = b.hang = True
    r = s.get(gw.url("/x"), timeout=10)
    assert r.status_code == 504, r.text
    up = gw.control("/v1/healthcheck").json()["upstreams"][0]
    assert up["panics"] == 0


def test_per_node_quality_figures_show_which_line_works(gateway, upstream):
    good, bad = upstream(name="good"), upstream(name="bad")
    bad.fail_status = 502
    gw = gateway({"routes": [route("/*", [(good.port,), (bad.port,)], id="all",
                                   upstream={"retries": 0})]})
    s = requests.Session()
    for _ in range(20):
        s.get(gw.url("/x"))
    nodes = {n["address"]: n["traffic"]
             for n in gw.control("/v1/healthcheck").json()["upstreams"][0]["nodes"]}
    g, b = nodes[f"127.0.0.1:{good.port}"], nodes[f"127.0.0.1:{bad.port}"]
    assert g["requests"] == 10 and g["http_failures"] == 0 and g["latency_count"] == 10
    assert b["requests"] == 10 and b["http_failures"] == 10
    metrics = gw.control("/metrics").text
    assert (f'portico_upstream_node_failures_total{{upstream="routes/all",'
            f'node="127.0.0.1:{bad.port}",kind="http"}} 10') in metrics
    assert (f'portico_upstream_node_latency_seconds_count{{upstream="routes/all",'
            f'node="127.0.0.1:{good.port}"}} 10') in metrics


def test_https_probes_verify_the_certificate_unless_told_not_to(gateway, upstream, tmp_path):
    import ssl

    from pki import issue, make_ca
    ca = make_ca(tmp_path / "pki")
    leaf = issue(ca, tmp_path / "pki", "node", sans=["IP:127.0.0.1"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    server_names = []
    ctx.sni_callback = lambda sock, name, context: server_names.append(name)
    secure = upstream(name="secure", tls=ctx)
    probe = dict(ACTIVE["active"], type="https")
    gw = gateway({"routes": [
        route("/trusting/*", [(secure.port,)], id="trusting",
              upstream={"checks": {"active": dict(probe, https_verify_certificate=False)}}),
        route("/verifying/*", [(secure.port,)], id="verifying",
              upstream={"checks": {"active": probe}}),
    ]})

    def state(route_id):
        for u in gw.control("/v1/healthcheck").json()["upstreams"]:
            if u["upstream"] == f"routes/{route_id}":
                return u["nodes"][0]["state"]
    # The test CA is not in the system store: a verifying probe fails the handshake.
    assert wait_until(lambda: state("verifying") == "unhealthy", 3)
    time.sleep(0.6)
    assert state("trusting") == "healthy"
    assert any(r.target == "/health" for r in secure.requests)  # probes got through TLS
    # An IP node gets no server name (RFC 6066), as proxied requests to it do not.
    assert server_names and set(server_names) == {None}, server_names


def test_a_config_change_during_a_probe_does_not_stop_the_probes(gateway, upstream):
    # A hung node has a probe in flight most of the time; a reload then must not freeze it
    # in "unhealthy" (the probe's copy used to stay "running" for good).
    a, b = upstream(name="a"), upstream(name="b")
    checks = {"active": dict(ACTIVE["active"], timeout=2)}
    routes = {"routes": [route("/*", [(a.port,), (b.port,)], id="all",
                               upstream={"checks": checks})]}
    gw = gateway(routes)
    b.hang = True
    assert wait_until(lambda: node_states(gw).get(f"127.0.0.1:{b.port}") == "unhealthy", 8)
    time.sleep(0.5)  # a probe of b is waiting for its 2 s timeout now
    routes["routes"].append(route("/other", [(a.port,)], id="other"))
    gw.write_routes(routes)
    assert wait_until(lambda: served_by(gw, "/other") == "a", 3)
    b.hang = False
    assert wait_until(lambda: node_states(gw).get(f"127.0.0.1:{b.port}") == "healthy", 6)
    assert set(spread(gw)) == {"a", "b"}


def test_a_node_down_by_active_checks_returns_when_the_checks_are_removed(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    ups = {"id": "u", "nodes": {f"127.0.0.1:{a.port}": 1, f"127.0.0.1:{b.port}": 1},
           "checks": ACTIVE}
    routes = {"upstreams": [ups], "routes": [{"id": "all", "uri": "/*", "upstream_id": "u"}]}
    gw = gateway(routes)
    b.health_status = 500
    assert wait_until(lambda: spread(gw) == {"a": 30}, 3)
    del ups["checks"]  # nothing would ever probe b again
    gw.write_routes(routes)
    assert wait_until(lambda: set(spread(gw)) == {"a", "b"}, 3)
    gw.wait_log("is healthy again (active checks removed)")


def test_upstreams_probing_a_node_alike_share_one_probe(gateway, upstream):
    a = upstream(name="a")
    checks = {"active": {"type": "http", "http_path": "/health", "timeout": 0.5,
                         "healthy": {"interval": 0.5, "successes": 1},
                         "unhealthy": {"interval": 0.5, "http_failures": 1}}}
    strict = {"active": dict(checks["active"], unhealthy={"interval": 0.5, "http_failures": 1})}
    lenient = {"active": dict(checks["active"], unhealthy={"interval": 0.5, "http_failures": 3})}
    routes = [route(f"/r{i}/*", [(a.port,)], id=f"r{i}", upstream={"checks": checks})
              for i in range(8)]
    routes += [route("/strict/*", [(a.port,)], id="strict", upstream={"checks": strict}),
               route("/lenient/*", [(a.port,)], id="lenient", upstream={"checks": lenient})]
    gw = gateway({"routes": routes})
    time.sleep(2.2)
    probes = sum(1 for r in a.requests if r.target == "/health")
    # one probe every 0.5 s answers for all ten upstreams (not ten probes)
    assert 2 <= probes <= 7, probes

    def states():
        return {u["upstream"]: u["nodes"][0]["state"]
                for u in gw.control("/v1/healthcheck").json()["upstreams"]}
    a.health_status = 500
    # each upstream judges the shared answer by its own thresholds
    assert wait_until(lambda: states().get("routes/strict") == "unhealthy", 3), states()
    assert wait_until(lambda: set(states().values()) == {"unhealthy"}, 4), states()
