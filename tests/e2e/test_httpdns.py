"""httpdns through the real binary: clients placed by a real MaxMind DB (written by
make_geoip_db.pl with Debian's libmaxmind-db-writer-perl) get the nearest access nodes of the
route's upstream, healthy ones first as the active health checks see them; real-ip decides who
the client is."""
import os
import subprocess

import prom_text
import requests
import yaml

from conftest import validate, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
# Three made-up regions (documentation networks) and where they are.
SINGAPORE, FRANKFURT, SAN_FRANCISCO = "198.51.100.7", "203.0.113.9", "192.0.2.44"
PLACES = ["198.51.100.0/24=SG,1.29,103.85", "203.0.113.0/24=DE,50.11,8.68",
          "192.0.2.0/24=US,37.77,-122.42"]
CHECKS = {"active": {"type": "tcp", "timeout": 0.5,
                     "healthy": {"interval": 0.2, "successes": 1},
                     "unhealthy": {"interval": 0.2, "tcp_failures": 1}}}


def geoip_db(tmp_path, places=PLACES, name="city.mmdb"):
    path = str(tmp_path / name)
    subprocess.run(["perl", os.path.join(HERE, "make_geoip_db.pl"), path] + places, check=True)
    return path


def httpdns_route(db, nodes, **conf):
    """nodes: {name: (port, lat, lon)}; each is an access node 127.0.0.1:port placed there."""
    plugin = {"geoip_db": db, "ttl": 30,
              "locations": {f"127.0.0.1:{port}": {"lat": lat, "lon": lon}
                            for port, lat, lon in nodes.values()}}
    plugin.update(conf)
    return {"id": "dns", "uri": "/d",
            "upstream": {"nodes": {f"127.0.0.1:{port}": 1 for port, _, _ in nodes.values()},
                         "checks": CHECKS},
            "plugins": {"real-ip": {"source": "http_x_real_ip",
                                    "trusted_addresses": ["127.0.0.1"]},
                        "httpdns": plugin}}


def ask(gw, client, host="im.example.com", expect=200):
    r = requests.get(f"http://127.0.0.1:{gw.port}/d", params={"host": host},
                     headers={"X-Real-IP": client}, timeout=5)
    assert r.status_code == expect, r.text
    return r


def access_nodes(upstream):
    """Three live access nodes, in Singapore, Frankfurt and San Francisco."""
    sg, de, us = upstream(name="sg"), upstream(name="de"), upstream(name="us")
    return {"sg": (sg.port, 1.35, 103.82), "de": (de.port, 50.04, 8.56),
            "us": (us.port, 37.62, -122.38)}, {"sg": sg, "de": de, "us": us}


def node(nodes, name):
    return f"127.0.0.1:{nodes[name][0]}"


def test_each_client_gets_the_nearest_nodes_first(tmp_path, gateway, upstream):
    nodes, _ = access_nodes(upstream)
    gw = gateway({"routes": [httpdns_route(geoip_db(tmp_path), nodes)]})
    r = ask(gw, SINGAPORE)
    answer = r.json()
    assert answer["nodes"] == [node(nodes, "sg"), node(nodes, "de")], answer
    assert answer["ips"] == ["127.0.0.1"] and answer["ttl"] == 30
    assert answer["country"] == "SG" and answer["client_ip"] == SINGAPORE
    assert answer["host"] == "im.example.com" and "degraded" not in answer
    assert r.headers["Cache-Control"] == "private, max-age=30"
    # Frankfurt is 9,100 km from San Francisco and 10,300 from Singapore.
    assert ask(gw, FRANKFURT).json()["nodes"] == [node(nodes, "de"), node(nodes, "us")]
    assert ask(gw, SAN_FRANCISCO).json()["nodes"] == [node(nodes, "us"), node(nodes, "de")]
    # A client the database cannot place still gets nodes; such clients spread over all of them.
    firsts = {tuple(ask(gw, f"10.1.{i}.{i}").json()["nodes"])[0] for i in range(40)}
    assert firsts == {node(nodes, n) for n in nodes}, firsts
    m = prom_text.parse(gw.control("/metrics").text)
    assert m.value("portico_httpdns_answers_total", route="dns", result="nearest") == 3
    assert m.value("portico_httpdns_answers_total", route="dns", result="unplaced") == 40


def test_a_node_the_health_checks_take_out_is_not_given(tmp_path, gateway, upstream):
    nodes, servers = access_nodes(upstream)
    gw = gateway({"routes": [httpdns_route(geoip_db(tmp_path), nodes, answers=1)]})
    assert ask(gw, SINGAPORE).json()["nodes"] == [node(nodes, "sg")]
    servers["sg"].stop()
    assert wait_until(lambda: ask(gw, SINGAPORE).json()["nodes"] == [node(nodes, "de")], 5)
    # Every node down: the nearest anyway, flagged, rather than nothing.
    servers["de"].stop()
    servers["us"].stop()
    assert wait_until(lambda: ask(gw, SINGAPORE).json().get("degraded"), 5)
    assert ask(gw, SINGAPORE).json()["nodes"] == [node(nodes, "sg")]


def test_requests_it_cannot_answer(tmp_path, gateway, upstream):
    nodes, _ = access_nodes(upstream)
    gw = gateway({"routes": [httpdns_route(geoip_db(tmp_path), nodes,
                                           hosts=["im.example.com", "Chat.Example.com"])]})
    assert ask(gw, SINGAPORE, host="chat.example.COM").json()["nodes"]
    assert "no answer" in ask(gw, SINGAPORE, host="other.example.com",
                              expect=404).json()["error_msg"]
    r = requests.get(f"http://127.0.0.1:{gw.port}/d", timeout=5)
    assert r.status_code == 400 and "host argument" in r.json()["error_msg"]
    r = requests.post(f"http://127.0.0.1:{gw.port}/d?host=im.example.com", timeout=5)
    assert r.status_code == 405


def test_without_a_database_answers_spread_over_healthy_nodes(gateway, upstream):
    nodes, _ = access_nodes(upstream)
    route = httpdns_route(None, nodes, answers=3)
    del route["plugins"]["httpdns"]["geoip_db"]
    gw = gateway({"routes": [route]})
    answer = ask(gw, SINGAPORE).json()
    assert sorted(answer["nodes"]) == sorted(node(nodes, n) for n in nodes)
    assert "country" not in answer


def test_a_new_database_on_disk_is_followed_without_a_config_change(tmp_path, gateway, upstream):
    nodes, _ = access_nodes(upstream)
    db = geoip_db(tmp_path)
    gw = gateway({"routes": [httpdns_route(db, nodes, geoip_recheck="1s")]})
    assert ask(gw, SINGAPORE).json()["country"] == "SG"
    # A file that is not a database (a botched update) is logged; the one in use goes on.
    os.replace(_copy_text(tmp_path, "junk"), db)
    # (looked at when asked, at most once per geoip_recheck)
    assert wait_until(lambda: ask(gw, SINGAPORE).json()["country"] == "SG" and
                      "keeping the GeoIP database in use" in gw.error_log(), 5)
    assert ask(gw, SINGAPORE).json()["country"] == "SG"
    # The network moves to Frankfurt in this week's database.
    os.replace(geoip_db(tmp_path, ["198.51.100.0/24=DE,50.11,8.68"], "new.mmdb"), db)
    assert wait_until(lambda: ask(gw, SINGAPORE).json()["country"] == "DE", 5)
    assert ask(gw, SINGAPORE).json()["nodes"][0] == node(nodes, "de")


def test_a_database_rewritten_in_place_never_pulls_pages_from_under_lookups(
        tmp_path, gateway, upstream):
    # cp over the file (or a download tool writing into it) changes the same inode: a live
    # mapping of it would lose its pages (SIGBUS in the workers). The gateway reads a copy.
    nodes, _ = access_nodes(upstream)
    db = geoip_db(tmp_path)
    gw = gateway({"routes": [httpdns_route(db, nodes, geoip_recheck="1s")]})
    assert ask(gw, SINGAPORE).json()["country"] == "SG"
    with open(db, "r+b") as f:
        f.truncate(16)
    for _ in range(5):
        assert ask(gw, SINGAPORE).json()["country"] == "SG"
    with open(geoip_db(tmp_path, ["198.51.100.0/24=DE,50.11,8.68"], "new.mmdb"), "rb") as f:
        fresh = f.read()
    with open(db, "r+b") as f:
        f.write(fresh)
    assert wait_until(lambda: ask(gw, SINGAPORE).json()["country"] == "DE", 5)
    assert gw.proc.poll() is None


def test_names_that_cannot_be_dns_names_are_refused(tmp_path, gateway, upstream):
    nodes, _ = access_nodes(upstream)
    gw = gateway({"routes": [httpdns_route(geoip_db(tmp_path), nodes)]})
    for bad in ["%ff%fe.example.com", "a%20b.example.com", "x" * 300, "%22%7d"]:
        r = requests.get(f"http://127.0.0.1:{gw.port}/d?host={bad}", timeout=5)
        assert r.status_code == 400 and "not a DNS name" in r.json()["error_msg"], bad
    assert ask(gw, SINGAPORE, host="im-1_a.Example.com").json()["host"] == "im-1_a.Example.com"


def test_no_node_to_give_is_not_cached(tmp_path, gateway, upstream):
    nodes, _ = access_nodes(upstream)
    route = httpdns_route(geoip_db(tmp_path), nodes)
    route["upstream"]["nodes"] = {key: 0 for key in route["upstream"]["nodes"]}
    gw = gateway({"routes": [route]})
    r = ask(gw, SINGAPORE, expect=503)
    assert r.headers["Cache-Control"] == "no-store"


def _copy_text(tmp_path, text):
    path = tmp_path / "junk.mmdb"
    path.write_text(text)
    return str(path)


def test_config_errors_name_the_field(tmp_path):
    nodes = {"a": (1980, 1.0, 2.0)}
    db = geoip_db(tmp_path)
    rc, out = validate(tmp_path, {"routes": [httpdns_route(db, nodes)]})
    assert rc == 0, out
    for conf, expected in [
        ({"geoip_db": str(tmp_path / "missing.mmdb")}, "httpdns.geoip_db: cannot read"),
        ({"geoip_db": os.path.join(HERE, "make_geoip_db.pl")}, "httpdns.geoip_db: "),
        ({"locations": {"127.0.0.1:1980": {"lat": 91, "lon": 0}}},
         "httpdns.locations.127.0.0.1:1980.lat: must be a number of degrees in [-90, 90]"),
        ({"locations": {"x": {"lat": 1}}}, "httpdns.locations.x.lon: is required"),
        ({"answers": 0}, "httpdns.answers"),
        ({"colour": "red"}, "httpdns.colour"),
    ]:
        rc, out = validate(tmp_path, {"routes": [httpdns_route(db, nodes, **conf)]})
        assert rc != 0 and expected in out, (conf, out)


def test_the_make_run_route_answers_with_the_demo_access_node(gateway, upstream):
    with open(os.path.join(HERE, "../../conf/routes.yaml")) as f:
        route = next(r for r in yaml.safe_load(f)["routes"] if r["id"] == "httpdns")
    live = upstream(name="im")
    route["upstream"]["nodes"] = {f"127.0.0.1:{live.port}": 1}
    gw = gateway({"routes": [route]})
    answer = requests.get(f"http://127.0.0.1:{gw.port}/d?host=im.demo", timeout=5).json()
    assert answer["nodes"] == [f"127.0.0.1:{live.port}"] and answer["ttl"] == 60
    r = requests.get(f"http://127.0.0.1:{gw.port}/d?host=other", timeout=5)
    assert r.status_code == 404
