"""Configuration from a real etcd (contract: config plane): watch propagation across nodes, etcd
outages and recovery, compaction while a node is away, hand-written invalid values, start-up
with etcd late or unreachable, endpoint failover."""
import socket
import threading
import time

import prom_text
from conftest import free_port, inline_upstream, served_by, wait_until
from tcp_relay import TcpRelay


def metric(gw, name, **labels):
    r = gw.control("/metrics")
    assert r.status_code == 200
    return prom_text.parse(r.text).value(name, **labels)


def route_obj(id, uri, port, **kw):
    return dict({"id": id, "uri": uri, "upstream": inline_upstream(port)}, **kw)


def test_watch_propagates_to_a_second_node(etcd, gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    node_a = gateway(etcd=etcd)
    node_b = gateway(etcd=etcd)
    assert node_a.prefix == node_b.prefix

    r = node_a.admin("PUT", "/routes/r1", {"uri": "/w", "upstream": inline_upstream(a.port)})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: served_by(node_b, "/w") == "a", 2), served_by(node_b, "/w")
    assert node_b.admin("GET", "/routes/r1").json()["value"]["uri"] == "/w"

    # an upstream object and a route referring to it, written on A, served on B
    assert node_a.admin("PUT", "/upstreams/u1", inline_upstream(a.port)).status_code == 201
    assert node_a.admin("PUT", "/routes/r2", {"uri": "/w2", "upstream_id": "u1"}).status_code == 201
    assert wait_until(lambda: served_by(node_b, "/w2") == "a", 2)
    assert node_a.admin("PATCH", "/upstreams/u1", {"nodes": {f"127.0.0.1:{a.port}": None,
                                                             f"127.0.0.1:{b.port}": 1}}).status_code == 200
    assert wait_until(lambda: all(served_by(node_b, "/w2") == "b" for _ in range(3)), 2)

    # a value written straight into etcd (as etcdctl would) reaches both nodes
    etcd.put_json(node_a.key("routes", "hand"), route_obj("hand", "/hand", b.port))
    assert wait_until(lambda: served_by(node_a, "/hand") == "b" and served_by(node_b, "/hand") == "b", 2)

    # a delete through B disappears on A
    assert node_b.admin("DELETE", "/routes/r1").status_code == 200
    assert wait_until(lambda: served_by(node_a, "/w") == 404, 2)

    # both report the etcd revision they serve
    assert wait_until(lambda: node_a.health()["config"]["revision"] == etcd.revision()
                      and node_b.health()["config"]["revision"] == etcd.revision(), 2)


def test_etcd_outage_keeps_serving_then_recovers(etcd, gateway, upstream):
    a = upstream(name="a")
    gw = gateway(etcd=etcd, etcd_options={"timeout": "1s"})
    assert gw.admin("PUT", "/routes/old", {"uri": "/old", "upstream": inline_upstream(a.port)}).status_code == 201
    assert wait_until(lambda: served_by(gw, "/old") == "a", 2)
    r = gw.control("/v1/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok"
    assert h["config"]["provider"] == "etcd" and h["config"]["reachable"] is True
    assert h["config"]["last_error"] == ""
    assert metric(gw, "portico_config_source_reachable") == 1

    etcd.kill()
    assert wait_until(lambda: gw.health()["config"]["reachable"] is False, 10), gw.health()
    r = gw.control("/v1/health")
    assert r.status_code == 200  # degraded, still serving
    h = r.json()
    assert h["status"] == "degraded"
    assert h["config"]["last_error"] != ""
    assert metric(gw, "portico_config_source_reachable") == 0
    for _ in range(20):
        assert served_by(gw, "/old") == "a"
    # a write cannot succeed while etcd is away
    r = gw.admin("PUT", "/routes/during", {"uri": "/during", "upstream": inline_upstream(a.port)})
    assert r.status_code >= 400, r.text

    etcd.start()
    assert wait_until(lambda: gw.health()["config"]["reachable"] is True, 15), gw.health()
    assert wait_until(lambda: gw.health()["status"] == "ok", 5), gw.health()
    assert gw.health()["config"]["last_error"] == ""
    assert metric(gw, "portico_config_source_reachable") == 1
    # a route written after the restart is picked up; the old one still serves
    r = gw.admin("PUT", "/routes/new", {"uri": "/new", "upstream": inline_upstream(a.port)})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: served_by(gw, "/new") == "a", 2)
    assert served_by(gw, "/old") == "a"
    assert gw.admin("GET", "/routes/during").status_code == 404
    assert served_by(gw, "/during") == 404


def test_compaction_while_away_resyncs_to_the_latest_state(etcd, gateway, upstream):
    ups = {n: upstream(name=n) for n in ("keep", "old", "final", "new")}
    gw = gateway(etcd=etcd, routes={"routes": [
        route_obj("keep", "/keep", ups["keep"].port),
        route_obj("changed", "/changed", ups["old"].port),
        route_obj("gone", "/gone", ups["old"].port),
    ]})
    assert [served_by(gw, p) for p in ("/keep", "/changed", "/gone")] == ["keep", "old", "old"]
    seen = gw.health()["config"]["revision"]

    # the node cannot see etcd while history is written and compacted away
    with etcd.offline():
        for i in range(5):
            etcd.put_json(gw.key("routes", "changed"), route_obj("changed", "/changed", ups["old"].port,
                                                                 name=f"v{i}"))
        etcd.put_json(gw.key("routes", "changed"), route_obj("changed", "/changed", ups["final"].port))
        etcd.delete(gw.key("routes", "gone"))
        etcd.put_json(gw.key("routes", "flash"), route_obj("flash", "/flash", ups["old"].port))
        etcd.delete(gw.key("routes", "flash"))
        etcd.put_json(gw.key("routes", "new"), route_obj("new", "/new", ups["new"].port))
        latest = etcd.revision()
        assert latest > seen + 5
        etcd.compact(latest)
        assert served_by(gw, "/keep") == "keep"  # still serving meanwhile

    def converged():
        return ([served_by(gw, p) for p in ("/keep", "/changed", "/gone", "/flash", "/new")]
                == ["keep", "final", 404, 404, "new"])
    assert wait_until(converged, 15), [served_by(gw, p) for p in ("/keep", "/changed", "/gone", "/flash", "/new")]
    h = gw.health()
    assert h["config"]["reachable"] is True and h["config"]["revision"] >= latest
    assert gw.admin("GET", "/routes/gone").status_code == 404

    # and the watch goes on from there
    r = gw.admin("PUT", "/routes/after", {"uri": "/after", "upstream": inline_upstream(ups["new"].port)})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: served_by(gw, "/after") == "new", 2)


class SlowRangeLink(TcpRelay):
    """A TCP relay to etcd that holds back answers to range reads (the node's periodic probe)
    for `delay` seconds while the watch stream flows freely: a slow cross-border link, and a
    window in which watch events newer than the probe's answer always arrive first."""

    def __init__(self, target_port, delay):
        super().__init__(target_port)
        self.delay = delay

    def on_data(self, data, to_target, state):
        if to_target and data.startswith(b"POST "):
            state["range"] = data.startswith(b"POST /v3/kv/range ")
        elif not to_target and state.get("range"):
            time.sleep(self.delay)


def test_watch_events_newer_than_a_probe_answer_are_not_taken_for_a_restored_etcd(etcd, gateway, upstream):
    """Every 2 s the node asks etcd for its revision, to notice a restored backup (revision
    going backwards). Events applied while that answer was on its way are newer than it: that is
    not "backwards", and re-reading every key each time would cost a big node seconds of CPU."""
    a = upstream(name="a")
    link = SlowRangeLink(etcd.client_port, 0.3)
    try:
        gw = gateway(etcd=etcd, endpoints=[f"http://127.0.0.1:{link.port}"])
        stop = threading.Event()
        last = {}

        def writer():
            i = 0
            while not stop.is_set():
                etcd.put_json(gw.key("routes", f"busy{i % 10}"), route_obj(f"busy{i % 10}", f"/busy/{i}", a.port))
                last["i"] = i
                i += 1
                time.sleep(0.02)

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(5)  # two probes, each answered 0.3 s late while events keep coming
        stop.set()
        t.join()
        assert wait_until(lambda: served_by(gw, f"/busy/{last['i']}") == "a", 5)
        h = gw.health()["config"]
        assert h["resyncs"] == 0 and h["reachable"] is True, h
    finally:
        link.close()


def test_a_watch_connection_that_went_silent_is_noticed_and_replaced(etcd, gateway, upstream):
    """The watch's connection stops carrying anything without closing (a NAT that forgot it),
    while new connections work: reads succeed, the watch delivers nothing, and a node that only
    checks reads would serve a frozen config forever."""
    a = upstream(name="a")
    link = TcpRelay(etcd.client_port)
    try:
        gw = gateway(etcd=etcd, endpoints=[f"http://127.0.0.1:{link.port}"])
        etcd.put_json(gw.key("routes", "r1"), route_obj("r1", "/before", a.port))
        assert wait_until(lambda: served_by(gw, "/before") == "a", 5)
        link.freeze()
        etcd.put_json(gw.key("routes", "r2"), route_obj("r2", "/after", a.port))
        # a probe (2 s) on a pooled connection that times out (5 s) and then on a fresh one,
        # another probe to see the change still undelivered, and a new watch
        assert wait_until(lambda: served_by(gw, "/after") == "a", 25), served_by(gw, "/after")
        gw.wait_log_line("watch has not delivered revision")
        assert gw.health()["config"]["resyncs"] == 0
    finally:
        link.close()


def test_a_silent_watch_is_noticed_by_a_delete_alone(etcd, gateway, upstream):
    """A delete leaves no newer revision under the prefix to compare with: the node notices the
    missing event by the number of keys etcd holds there against the number its watch knows."""
    a = upstream(name="a")
    link = TcpRelay(etcd.client_port)
    try:
        gw = gateway(etcd=etcd, endpoints=[f"http://127.0.0.1:{link.port}"])
        etcd.put_json(gw.key("routes", "r1"), route_obj("r1", "/gone", a.port))
        etcd.put_json(gw.key("routes", "r2"), route_obj("r2", "/stays", a.port))
        assert wait_until(lambda: served_by(gw, "/gone") == "a" and served_by(gw, "/stays") == "a", 5)
        link.freeze()
        etcd.delete(gw.key("routes", "r1"))
        assert wait_until(lambda: served_by(gw, "/gone") == 404, 25), served_by(gw, "/gone")
        gw.wait_log_line("count of keys under the prefix differed")
        assert served_by(gw, "/stays") == "a"
        assert gw.health()["config"]["resyncs"] == 0
    finally:
        link.close()


def test_invalid_values_are_skipped_and_logged(etcd, gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    gw = gateway(etcd=etcd, start=False)
    etcd.put(gw.key("routes", "bad0"), "{not json")  # present at start-up already
    gw.seed({"routes": [route_obj("ok", "/ok", a.port)]})
    gw.start()
    assert served_by(gw, "/ok") == "a"
    gw.wait_log_line("skipped", "routes/bad0")
    errors0 = metric(gw, "portico_config_apply_errors_total")
    assert errors0 is not None and errors0 >= 1

    etcd.put(gw.key("routes", "bad1"), "not json")
    gw.wait_log_line("skipped", "routes/bad1")
    etcd.put_json(gw.key("routes", "bad2"), {"id": "bad2", "uri": "/bad2", "upstream": {
        "type": "roundrobin", "nodes": [{"host": "127.0.0.1", "port": 70000, "weight": 1}]}})
    line = gw.wait_log_line("skipped", "routes/bad2")
    assert "port" in line, line  # the reason
    etcd.put_json(gw.key("routes", "orphan"), {"id": "orphan", "uri": "/orphan", "upstream_id": "later"})
    gw.wait_log_line("skipped", "routes/orphan")
    assert served_by(gw, "/ok") == "a"
    assert served_by(gw, "/bad2") == 404 and served_by(gw, "/orphan") == 404

    # a bad version of a good key: the previous good version keeps serving
    etcd.put_json(gw.key("routes", "ok"), route_obj("ok", "/ok", b.port, bogus_field=True))
    line = gw.wait_log_line("skipped", "routes/ok")
    assert "bogus_field" in line, line
    for _ in range(10):
        assert served_by(gw, "/ok") == "a"
    assert metric(gw, "portico_config_apply_errors_total") >= errors0 + 3  # bad1, bad2, ok
    assert gw.health()["config"]["reachable"] is True

    # the watch goes on: the missing upstream arrives, a fixed value applies
    etcd.put_json(gw.key("upstreams", "later"), dict(inline_upstream(b.port), id="later"))
    assert wait_until(lambda: served_by(gw, "/orphan") == "b", 2)
    etcd.put_json(gw.key("routes", "ok"), route_obj("ok", "/ok", b.port))
    assert wait_until(lambda: all(served_by(gw, "/ok") == "b" for _ in range(3)), 2)


def test_startup_waits_for_etcd_control_api_first(etcd, gateway, upstream):
    a = upstream(name="a")
    gw = gateway(etcd=etcd, routes={"routes": [route_obj("r", "/r", a.port)]}, start=False,
                 etcd_options={"startup_timeout": "30s", "timeout": "1s"})
    etcd.stop()
    gw.launch()
    gw.wait_port(gw.control_port, 5)
    r = gw.control("/v1/health")
    assert r.status_code == 503
    assert r.json()["status"] == "starting"
    time.sleep(0.5)
    assert not port_open(gw.port)  # HTTP opens only after the first full read
    etcd.start()
    gw.wait_port(gw.port, 15)
    assert served_by(gw, "/r") == "a"
    r = gw.control("/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_startup_with_etcd_unreachable_exits_1_naming_etcd(gateway):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = gateway(etcd=dead, start=False, etcd_options={"startup_timeout": "2s", "timeout": "500ms"})
    t0 = time.time()
    gw.launch()
    rc = gw.wait_exit(20)
    elapsed = time.time() - t0
    assert rc == 1, (rc, gw.stderr())
    assert 1.5 <= elapsed < 15, elapsed
    out = gw.stderr() + gw.stdout() + gw.error_log()
    assert "etcd" in out.lower(), out
    assert not port_open(gw.port)


def test_endpoints_fail_over_in_order(etcd, gateway, upstream):
    a = upstream(name="a")
    dead = f"http://127.0.0.1:{free_port()}"
    gw = gateway(etcd=etcd, endpoints=[dead, etcd.url], routes={"routes": [route_obj("r", "/r", a.port)]},
                 etcd_options={"timeout": "1s"})
    assert served_by(gw, "/r") == "a"
    assert gw.admin("PUT", "/routes/r2", {"uri": "/r2", "upstream": inline_upstream(a.port)}).status_code == 201
    assert wait_until(lambda: served_by(gw, "/r2") == "a", 3)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_etcd_authentication(etcd, gateway, upstream):
    a = upstream(name="a")
    gw = gateway(etcd=etcd, start=False, routes={"routes": [route_obj("r", "/r", a.port)]},
                 etcd_options={"user": "portico", "password": "etcd-s3cret-pw"})
    etcd.enable_auth("portico", "etcd-s3cret-pw", gw.prefix)
    gw.start()
    assert served_by(gw, "/r") == "a"
    assert gw.admin("PUT", "/routes/r2", {"uri": "/r2", "upstream": inline_upstream(a.port)}).status_code == 201
    assert wait_until(lambda: served_by(gw, "/r2") == "a", 2)
    assert etcd.get_json(gw.key("routes", "r2"))["uri"] == "/r2"
    # the password never shows in the running config
    r = gw.control("/v1/config")
    assert r.status_code == 200
    assert "etcd-s3cret-pw" not in r.text
    # after an etcd restart (its tokens are gone) the node logs in again
    etcd.restart()
    assert wait_until(lambda: gw.admin("PUT", "/routes/r3", {"uri": "/r3", "upstream": inline_upstream(a.port)})
                      .status_code in (200, 201), 10)
    assert wait_until(lambda: served_by(gw, "/r3") == "a", 10)

    # a wrong password: start-up fails naming etcd
    bad = gateway(etcd=etcd, start=False, etcd_options={"user": "portico", "password": "wrong-password",
                                                        "startup_timeout": "2s"})
    bad.launch()
    assert bad.wait_exit(20) == 1
    assert "etcd" in (bad.stderr() + bad.error_log()).lower()
