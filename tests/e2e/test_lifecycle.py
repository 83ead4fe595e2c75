"""The process contract: hot reload of routes.yaml (valid applies without dropping connections,
invalid is logged and the running config stays), SIGHUP, SIGTERM drain, validate, version."""
import datetime
import http.client
import os
import signal
import subprocess
import threading
import time

import pytest
import requests
import yaml

from conftest import PORTICO_BIN, route


def wait_until(fn, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(0.05)
    return False


def test_valid_change_applies_without_dropping_connections(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    gw = gateway({"routes": [route("/*", [(a.port,)], id="r")]})
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    conn.request("GET", "/x")
    resp = conn.getresponse()
    assert b'"upstream": "a"' in resp.read()
    gw.write_routes({"routes": [route("/*", [(b.port,)], id="r")]})

    def switched():
        conn.request("GET", "/x")
        r = conn.getresponse()
        return b'"upstream": "b"' in r.read()
    assert wait_until(switched)  # same client connection, new config
    conn.close()
    gw.wait_log("config reloaded")


def test_a_reload_keeps_the_balancer_state_of_unchanged_upstreams(gateway, upstream):
    x, y = upstream(name="x"), upstream(name="y")
    rr = route("/rr/*", [(x.port,), (y.port,)], id="rr")
    gw = gateway({"routes": [rr]})
    first = gw.get("/rr/1").json()["upstream"]
    gw.write_routes({"routes": [rr, route("/other", [(x.port,)], id="other")]})
    assert wait_until(lambda: gw.get("/other").status_code == 200)
    # the rotation goes on where it was: a compiled anew upstream would start over
    assert gw.get("/rr/2").json()["upstream"] != first


def test_invalid_change_is_logged_and_running_config_stays(gateway, upstream):
    a = upstream(name="a")
    gw = gateway({"routes": [route("/*", [(a.port,)], id="r")]})
    bad = {"routes": [route("/*", [(a.port,)], id="r"),
                      {"id": "broken", "uri": "/b", "upstream": {"nodes": [{"host": "127.0.0.1", "port": 70000}]}}]}
    gw.write_routes(bad)
    gw.wait_log("routes[1].upstream.nodes[0].port: must be 1..65535")
    assert "rejected" in gw.error_log()
    assert requests.get(gw.url("/x")).json()["upstream"] == "a"
    gw.write_routes("routes: [ {id: x, uri: /x")  # YAML syntax error
    gw.wait_log("YAML syntax error")
    assert requests.get(gw.url("/x")).json()["upstream"] == "a"


@pytest.mark.parametrize("how", ["in place", "new file"])
def test_a_routes_file_caught_half_written_is_not_applied(gateway, upstream, how):
    # An editor (or `cat > routes.yaml`) truncates the file and writes it again in place; vim,
    # tar and `kubectl cp` create a new file and write it. Cut at a line, the first half is
    # valid YAML with fewer routes: applied, it would drop them.
    a = upstream(name="a")
    routes = {"routes": [route("/one", [(a.port,)], id="one"), route("/two", [(a.port,)], id="two")]}
    gw = gateway(routes)
    text = yaml.safe_dump(routes)
    half = text[:text.index("- id: two")]
    assert yaml.safe_load(half)["routes"][0]["id"] == "one"
    seen = []

    def serve_two_for(seconds):
        until = time.time() + seconds
        while time.time() < until:
            seen.append(requests.get(gw.url("/two")).status_code)
            time.sleep(0.02)
    # The watcher polls every 0.5 s, counting from the end of its last reload: a reload's log
    # line tells when the next poll comes. The half-written file is then there for one poll.
    gw.write_routes(text + "# primed\n")
    line = gw.wait_log_line("config reloaded (file changed)")
    stamp = datetime.datetime.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    poll = stamp.replace(tzinfo=datetime.timezone.utc).timestamp() + 0.5
    time.sleep(max(0.0, poll - 0.25 - time.time()))
    if how == "new file":  # (the old file kept linked, so that the new one gets a new inode)
        os.link(gw.routes_path, str(gw.routes_path) + ".old")
        os.unlink(gw.routes_path)
    with open(gw.routes_path, "r+" if how == "in place" else "w") as f:
        f.truncate(0)
        f.write(half)
        f.flush()
        serve_two_for(0.4)  # shorter than one poll interval (0.5 s): never seen twice
        f.write(text[len(half):])
    serve_two_for(2.0)  # long enough for the watcher to settle and apply the whole file
    assert set(seen) == {200}, seen
    gw.wait_log("config reloaded (file changed)")


def test_an_emptied_routes_file_keeps_the_running_config(gateway, upstream):
    a = upstream(name="a")
    gw = gateway({"routes": [route("/one", [(a.port,)], id="one")]})
    gw.write_routes("# nothing here yet\n\n")
    gw.wait_log("is empty; keeping the running config")
    assert requests.get(gw.url("/one")).status_code == 200
    gw.write_routes({"routes": []})  # said explicitly: every route goes
    assert wait_until(lambda: requests.get(gw.url("/one")).status_code == 404)


def test_sighup_rereads_node_config_limits(gateway, upstream):
    a = upstream()
    gw = gateway({"routes": [route("/*", [(a.port,)])]})
    assert requests.post(gw.url("/x"), data=b"z" * 2000).status_code == 200
    text = gw.config_path.read_text().replace("workers: 1", "workers: 1\n  client_max_body_size: 1k")
    gw.config_path.write_text(text)
    gw.signal(signal.SIGHUP)
    gw.wait_log("config reloaded (SIGHUP)")
    assert requests.post(gw.url("/x"), data=b"z" * 2000).status_code == 413


def test_sigterm_drains_in_flight_requests(gateway, upstream):
    a = upstream()
    gw = gateway({"routes": [route("/*", [(a.port,)])]}, node={"shutdown_timeout": "10s"})
    results = []

    def slow():
        results.append(requests.get(gw.url("/slow/1500"), timeout=10).status_code)
    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    gw.signal(signal.SIGTERM)
    time.sleep(0.3)
    try:  # no new connections once draining
        requests.get(gw.url("/x"), timeout=1)
        refused = False
    except requests.ConnectionError:
        refused = True
    for t in threads:
        t.join()
    assert results == [200, 200, 200]
    assert refused
    assert gw.proc.wait(10) == 0


def test_drain_gives_up_after_shutdown_timeout(gateway, upstream):
    a = upstream()
    gw = gateway({"routes": [route("/*", [(a.port,)])]}, node={"shutdown_timeout": "1s"})
    outcome = []

    def hang():
        try:
            requests.get(gw.url("/hang"), timeout=10)
        except requests.ConnectionError as e:
            outcome.append(e)  # the gateway closed it at the deadline
    t = threading.Thread(target=hang, daemon=True)
    t.start()
    time.sleep(0.3)
    start = time.time()
    gw.signal(signal.SIGTERM)
    assert gw.proc.wait(10) == 0
    assert time.time() - start < 3
    t.join(5)
    assert len(outcome) == 1


def test_validate_prints_every_error_with_its_path(tmp_path):
    (tmp_path / "config.yaml").write_text("node:\n  listen: ['127.0.0.1:1']\n  bogus: 1\n")
    rc = subprocess.run([PORTICO_BIN, "validate", "-c", str(tmp_path / "config.yaml")],
                        capture_output=True, text=True)
    assert rc.returncode == 1 and "node.bogus: unknown field" in rc.stderr
    (tmp_path / "config.yaml").write_text("config: {file: routes.yaml}\n")
    (tmp_path / "routes.yaml").write_text("""
routes:
  - id: 1
    uri: /a
    upstream: {nodes: {"127.0.0.1:80": 1}}
  - id: 2
    uri: /b
    upstream_id: missing
  - id: 3
    uri: /c
    upstream: {nodes: [{host: 127.0.0.1, port: 0}], type: magic}
    plugins: {no-such-plugin: {}}
    colour: blue
""")
    rc = subprocess.run([PORTICO_BIN, "validate", "-c", str(tmp_path / "config.yaml")],
                        capture_output=True, text=True)
    assert rc.returncode == 1
    for expected in ('routes[1].upstream_id: unknown upstream "missing"',
                     "routes[2].upstream.nodes[0].port: must be 1..65535",
                     "routes[2].upstream.type: must be one of roundrobin, chash, least_conn, ewma",
                     "routes[2].plugins.no-such-plugin: unknown plugin",
                     "routes[2].colour: unknown field"):
        assert expected in rc.stderr, rc.stderr
    (tmp_path / "routes.yaml").write_text("routes:\n  - {id: 1, uri: /a, upstream: {nodes: {'127.0.0.1:80': 1}}}\n")
    rc = subprocess.run([PORTICO_BIN, "validate", "-c", str(tmp_path / "config.yaml")],
                        capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr


def test_start_fails_loudly_on_bad_routes(tmp_path):
    (tmp_path / "config.yaml").write_text("node: {listen: ['127.0.0.1:0']}\n")
    (tmp_path / "routes.yaml").write_text("routes: [{id: 1, uri: nope}]\n")
    rc = subprocess.run([PORTICO_BIN, "start", "-c", str(tmp_path / "config.yaml")],
                        capture_output=True, text=True, timeout=10)
    assert rc.returncode == 1 and "routes[0].uris[0]" in rc.stderr


def test_version():
    out = subprocess.run([PORTICO_BIN, "version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("portico ")


def test_a_second_gateway_on_the_same_port_refuses_to_start(gateway, upstream):
    # SO_REUSEPORT would let both bind and the kernel would split the traffic between them.
    up = upstream()
    first = gateway({"routes": [route("/*", [(up.port,)])]})
    second = gateway({"routes": [route("/*", [(up.port,)])]}, start=False)
    cfg = second.config()
    cfg["node"]["listen"] = [f"127.0.0.1:{first.port}"]
    second.config_path.write_text(yaml.safe_dump(cfg))
    second.launch()
    assert second.wait_exit(10) == 1
    assert "Address already in use" in second.error_log() + second.stderr()
    assert requests.get(first.url("/x")).status_code == 200
