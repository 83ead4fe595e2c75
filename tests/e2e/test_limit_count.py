"""limit-count through the real binary: local and Redis policies, quota headers, two nodes on
one real Redis sharing one exact count, and Redis going away (allow_degradation) and coming
back; limit-req's Redis policy the same way (one bucket across nodes, delays, degradation)."""
import asyncio
import concurrent.futures
import time

import pytest
import requests
import websockets

import pki
from conftest import route, validate, wait_until
from redis_server import RedisServer


@pytest.fixture
def redis(tmp_path):
    d = tmp_path / "redis"
    d.mkdir()
    server = RedisServer(d).start()
    yield server
    server.stop()


def count_plugin(**kw):
    conf = {"count": 3, "time_window": 60, "rejected_code": 429}
    conf.update(kw)
    return {"limit-count": conf}


def test_local_policy_counts_and_sends_quota_headers(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/c", [(up.port,)], id="c", plugins=count_plugin())]}, workers=2)
    answers = [requests.get(gw.url("/c")) for _ in range(5)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in answers[:3]] == ["2", "1", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == "3" for r in answers)
    assert 0 < int(answers[3].headers["X-RateLimit-Reset"]) <= 60
    assert answers[3].json() == {"error_msg": "Too Many Requests"}


def test_keys_and_groups(gateway, upstream):
    up = upstream()
    plugins = count_plugin(count=1, key="http_x_user", group="shared")
    gw = gateway({"routes": [route("/a", [(up.port,)], id="a", plugins=plugins),
                             route("/b", [(up.port,)], id="b", plugins=plugins)]})
    assert requests.get(gw.url("/a"), headers={"X-User": "u1"}).status_code == 200
    assert requests.get(gw.url("/a"), headers={"X-User": "u2"}).status_code == 200
    # the group shares one counter across routes
    assert requests.get(gw.url("/b"), headers={"X-User": "u1"}).status_code == 429


def test_a_group_is_one_set_of_settings(tmp_path):
    # Routes sharing a group's counter with different limits would each count the other's
    # requests against their own quota: refused (APISIX: "group conf mismatched").
    same = count_plugin(count=2, group="g")
    also_same = count_plugin(count=2, group="g", policy="local", window_type="fixed")
    other = count_plugin(count=2, group="g", time_window=30)
    ok = {"routes": [route("/a", [(1,)], id="a", plugins=same),
                     route("/b", [(1,)], id="b", plugins=also_same)]}
    code, out = validate(tmp_path, ok)
    assert code == 0, out  # defaults written out are the same settings
    bad = {"routes": [route("/a", [(1,)], id="a", plugins=same),
                      route("/b", [(1,)], id="b", plugins=other)]}
    code, out = validate(tmp_path, bad)
    assert code != 0
    assert ('routes[1].plugins.limit-count.group: group "g" is configured differently at '
            'routes[0].plugins.limit-count') in out, out


def test_schema_errors_name_the_field(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/c", [(up.port,)], id="c", plugins=count_plugin())]})
    gw.write_routes({"routes": [route("/c", [(up.port,)], id="c",
                                      plugins={"limit-count": {"count": 0, "time_window": 1,
                                                               "policy": "redis"}})]})
    gw.wait_log("routes[0].plugins.limit-count.count")
    assert "routes[0].plugins.limit-count.redis_host" in gw.error_log()
    # the running config stays
    assert requests.get(gw.url("/c")).status_code == 200


def test_two_nodes_on_one_redis_let_exactly_the_limit_through(gateway, upstream, redis):
    up = upstream()
    plugins = count_plugin(count=100, time_window=60, policy="redis", redis_host="127.0.0.1",
                           redis_port=redis.port, key_type="constant", key="all")
    routes = {"routes": [route("/c", [(up.port,)], id="c", plugins=plugins)]}
    nodes = [gateway(routes, workers=2), gateway(routes, workers=2)]

    def hit(i):
        return requests.get(nodes[i % 2].url("/c"), timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(hit, range(260)))
    assert codes.count(200) == 100, codes
    assert codes.count(429) == 160
    keys = redis.keys("portico:limit-count:*")
    assert keys and all("routes/c" in k for k in keys), keys


def test_redis_down_degrades_or_fails_then_recovers(gateway, upstream, redis):
    up = upstream()

    def plugins(degrade):
        return count_plugin(count=1000, policy="redis", redis_host="127.0.0.1",
                            redis_port=redis.port, redis_timeout=300,
                            allow_degradation=degrade)
    gw = gateway({"routes": [route("/open", [(up.port,)], id="open", plugins=plugins(True)),
                             route("/closed", [(up.port,)], id="closed", plugins=plugins(False))]})
    assert requests.get(gw.url("/open")).status_code == 200
    assert requests.get(gw.url("/closed")).status_code == 200
    redis.stop()
    assert requests.get(gw.url("/open")).status_code == 200  # fail-open
    r = requests.get(gw.url("/closed"))
    assert r.status_code == 500 and r.json() == {"error_msg": "failed to limit count"}
    redis.start()
    assert gw.wait_until(lambda: requests.get(gw.url("/closed")).status_code == 200, timeout=5)
    assert "X-RateLimit-Remaining" in requests.get(gw.url("/closed")).headers


# ----------------------------------------------------------------------------- limit-req on Redis

def test_limit_req_on_redis_is_one_bucket_across_nodes(gateway, upstream, redis):
    up = upstream()
    req = {"rate": 1, "burst": 2, "nodelay": True, "rejected_code": 429, "key": "http_x_user",
           "policy": "redis", "redis_host": "127.0.0.1", "redis_port": redis.port}
    routes = {"routes": [route("/m", [(up.port,)], id="m", plugins={"limit-req": req})]}
    nodes = [gateway(routes), gateway(routes)]
    # One request and a burst of two, whichever node takes them; the rest within the second is
    # refused (the bucket drains one request a second).
    codes = [requests.get(nodes[i % 2].url("/m"), headers={"X-User": "u1"}).status_code
             for i in range(6)]
    assert codes == [200, 200, 200, 429, 429, 429]
    # Another key has its own bucket.
    assert requests.get(nodes[0].url("/m"), headers={"X-User": "u2"}).status_code == 200
    assert set(redis.keys("portico:limit-req:*")) == {"portico:limit-req:routes/m:u1",
                                                      "portico:limit-req:routes/m:u2"}


def test_limit_req_on_redis_keeps_a_slow_bucket_until_it_has_drained(gateway, upstream, redis):
    up = upstream()
    req = {"rate": 0.5, "burst": 0, "nodelay": True, "rejected_code": 429, "policy": "redis",
           "redis_host": "127.0.0.1", "redis_port": redis.port}
    gw = gateway({"routes": [route("/s", [(up.port,)], id="s", plugins={"limit-req": req})]})
    assert requests.get(gw.url("/s")).status_code == 200
    # One request every 2 s: 1.2 s later the bucket still holds 0.4 of one (and its key must
    # still be in Redis for that).
    time.sleep(1.2)
    assert requests.get(gw.url("/s")).status_code == 429
    assert int(redis.command("PTTL", "portico:limit-req:routes/s:127.0.0.1")) > 0


def test_limit_req_on_redis_delays_within_the_burst_and_degrades(gateway, upstream, redis):
    up = upstream()

    def req(**kw):
        conf = {"rate": 5, "burst": 5, "key": "remote_addr", "policy": "redis",
                "redis_host": "127.0.0.1", "redis_port": redis.port, "redis_timeout": 300}
        conf.update(kw)
        return {"limit-req": conf}
    gw = gateway({"routes": [route("/d", [(up.port,)], id="d", plugins=req()),
                             route("/open", [(up.port,)], id="open",
                                   plugins=req(allow_degradation=True)),
                             route("/closed", [(up.port,)], id="closed", plugins=req())]})
    assert requests.get(gw.url("/d")).status_code == 200
    t0 = time.monotonic()
    assert requests.get(gw.url("/d")).status_code == 200
    assert time.monotonic() - t0 >= 0.15  # held ~200 ms: it leaves at the rate
    redis.stop()
    assert requests.get(gw.url("/open")).status_code == 200  # fail-open
    r = requests.get(gw.url("/closed"))
    assert r.status_code == 500 and r.json() == {"error_msg": "failed to limit req"}
    redis.start()
    assert gw.wait_until(lambda: requests.get(gw.url("/closed")).status_code == 200, timeout=5)


# ----------------------------------------------------------------------------- Redis over TLS

def test_limit_count_on_redis_over_tls(gateway, upstream, tmp_path, monkeypatch):
    # Managed Redis (ElastiCache with in-transit encryption, Azure Cache) only speaks TLS.
    pki_dir = tmp_path / "pki"
    ca = pki.make_ca(pki_dir, "redis test CA")
    leaf = pki.issue(ca, pki_dir, "redis-server", ["DNS:localhost"])  # a name, no address
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", tls=(ca, leaf)).start()
    try:
        up = upstream()

        def counted(path, **kw):
            conf = dict(count=2, policy="redis", redis_host="127.0.0.1",
                        redis_port=server.tls_port, redis_ssl=True, redis_timeout=500)
            conf.update(kw)
            return route(path, [(up.port,)], id=path.strip("/"), plugins=count_plugin(**conf))

        routes = {"routes": [counted("/by-name", redis_host="localhost", redis_ssl_verify=True),
                             counted("/unverified"),
                             counted("/not-its-name", redis_ssl_verify=True),
                             counted("/plain-port", redis_port=server.port),
                             counted("/no-tls", redis_ssl=False)]}
        monkeypatch.setenv("SSL_CERT_FILE", ca.cert)  # this gateway trusts the test CA
        trusting = gateway(routes)
        for path in ("/by-name", "/unverified"):
            codes = [requests.get(trusting.url(path)).status_code for _ in range(3)]
            assert codes == [200, 200, 429], (path, codes)
        # The counts are on the server, reached over TLS.
        assert len(server.keys("*by-name*")) == 1 and len(server.keys("*unverified*")) == 1
        # Verified, the certificate must name redis_host: it names localhost, not 127.0.0.1.
        r = requests.get(trusting.url("/not-its-name"))
        assert r.status_code == 500 and r.json() == {"error_msg": "failed to limit count"}
        # TLS to a plain port, or plain to the TLS port: no count, a 500.
        for path in ("/plain-port", "/no-tls"):
            r = requests.get(trusting.url(path))
            assert r.status_code == 500 and r.json() == {"error_msg": "failed to limit count"}

        # A gateway that does not trust the CA: verification refuses the server, and only there.
        monkeypatch.delenv("SSL_CERT_FILE")
        doubting = gateway(routes)
        assert requests.get(doubting.url("/by-name")).status_code == 500
        doubting.wait_log("TLS handshake failed: certificate")
        assert requests.get(doubting.url("/unverified")).status_code == 429  # 2 used above
    finally:
        server.stop()


# ----------------------------------------------------------------------------- limit-conn on Redis

def conn_plugin(redis, **kw):
    conf = {"conn": 2, "burst": 0, "default_conn_delay": 0.1, "rejected_code": 429,
            "key_type": "constant", "key": "all", "policy": "redis", "redis_host": "127.0.0.1",
            "redis_port": redis.port, "redis_timeout": 300}
    conf.update(kw)
    return {"limit-conn": conf}


def test_limit_conn_on_redis_counts_requests_in_flight_across_nodes(gateway, upstream, redis):
    up = upstream()
    routes = {"routes": [route("/slow/*", [(up.port,)], id="c", plugins=conn_plugin(redis))]}
    nodes = [gateway(routes), gateway(routes)]

    def hit(i):
        return requests.get(nodes[i % 2].url("/slow/1500"), timeout=10).status_code

    # Four at once over two nodes: two hold the slots, two are refused.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(hit, range(4)))
    assert sorted(codes) == [200, 200, 429, 429], codes
    # Released when each response was done: the key is empty again (and gone).
    assert nodes[0].wait_until(lambda: redis.keys("portico:limit-conn:*") == [], timeout=5)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert list(pool.map(hit, range(2))) == [200, 200]


def test_limit_conn_on_redis_slots_expire_after_key_ttl(gateway, upstream, redis):
    up = upstream()
    gw = gateway({"routes": [route("/t", [(up.port,)], id="t",
                                   plugins=conn_plugin(redis, conn=1, key_ttl=1)),
                             route("/slow/*", [(up.port,)], id="held",
                                   plugins=conn_plugin(redis, conn=1, key_ttl=7))]})
    assert requests.get(gw.url("/t")).status_code == 200
    # A request in flight holds a slot scored by its expiry: key_ttl after it was taken.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.get, gw.url("/slow/800"), timeout=10)
        held = "portico:limit-conn:routes/held:all"
        assert wait_until(lambda: redis.command("ZCARD", held) == 1)
        member, score = redis.command("ZRANGE", held, 0, -1, "WITHSCORES")
        sec, usec = redis.command("TIME")
        now_ms = int(sec) * 1000 + int(usec) // 1000
        assert 5000 < int(float(score)) - now_ms <= 7000
        assert slow.result().status_code == 200
    # A slot whose release never came (its node died mid-request) holds the key...
    key = "portico:limit-conn:routes/t:all"
    sec, usec = redis.command("TIME")
    redis.command("ZADD", key, int(sec) * 1000 + int(usec) // 1000 + 2000, "ghost")
    assert requests.get(gw.url("/t")).status_code == 429
    # ...only until its expiry (key_ttl after it was taken).
    time.sleep(2.3)
    assert requests.get(gw.url("/t")).status_code == 200


def test_limit_conn_on_redis_renews_the_slot_of_a_session_that_outlives_key_ttl(gateway,
                                                                               upstream, redis):
    # An IM web client's WebSocket lasts hours; key_ttl only bounds what a dead node holds. A
    # session that outlives key_ttl keeps its slot (renewed on Redis), and lets go of it when it
    # ends: the renewals never bring it back.
    up = upstream()
    gw = gateway({"routes": [route("/ws", [(up.port,)], id="ws", enable_websocket=True,
                                   plugins=conn_plugin(redis, conn=1, key_ttl=1))]})
    key = "portico:limit-conn:routes/ws:all"

    def redis_now_ms():
        sec, usec = redis.command("TIME")
        return int(sec) * 1000 + int(usec) // 1000

    async def session():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws", ping_interval=None) as ws:
            first_score = None
            for _ in range(6):  # 3 s: three times key_ttl
                await ws.send("hi")
                assert await ws.recv() == "hi"
                member, score = redis.command("ZRANGE", key, 0, -1, "WITHSCORES")
                assert int(float(score)) > redis_now_ms()  # never lets it lapse
                first_score = first_score or float(score)
                # A second session is refused the whole time: the slot is still held.
                with pytest.raises(websockets.InvalidStatusCode) as refused:
                    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws"):
                        pass
                assert refused.value.status_code == 429
                await asyncio.sleep(0.5)
            assert float(score) > first_score + 1500  # renewed, not taken once
    asyncio.run(session())
    # Released at the end (well before the last renewal's ~667 ms ran out)...
    assert wait_until(lambda: redis.command("EXISTS", key) == 0, timeout=0.6)

    def scripts_run():
        stats = redis.command("INFO", "commandstats")
        return sum(int(line.split("calls=")[1].split(",")[0]) for line in stats.splitlines()
                   if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")))
    # ...and no longer renewed: no script reaches Redis past the renewal that would be due.
    before = scripts_run()
    time.sleep(1.2)
    assert scripts_run() == before

    async def next_session():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws") as ws:
            await ws.send("again")
            assert await ws.recv() == "again"
    asyncio.run(next_session())


def test_limit_conn_gives_slots_back_after_a_later_refusal_and_a_lost_reply(gateway, upstream,
                                                                             redis):
    up = upstream()
    both = dict(conn_plugin(redis, conn=1, redis_timeout=200),
                **count_plugin(count=1))  # limit-count (1002) runs after limit-conn (1003)
    gw = gateway({"routes": [route("/b", [(up.port,)], id="b", plugins=both),
                             route("/l", [(up.port,)], id="l",
                                   plugins=conn_plugin(redis, conn=1,
                                                       redis_timeout=200))]})
    assert requests.get(gw.url("/b")).status_code == 200
    assert requests.get(gw.url("/b")).status_code == 429  # refused by limit-count...
    key_b = "portico:limit-conn:routes/b:all"
    assert wait_until(lambda: redis.command("EXISTS", key_b) == 0)  # ...slot given back
    # Redis stalls past redis_timeout: the take's reply is lost (500), and the take may still run
    # when Redis wakes; its slot is given back all the same, so the key is not held for key_ttl.
    # (CLIENT PAUSE answers once the pause holds: no race with the request.)
    redis.command("CLIENT", "PAUSE", 1200, "ALL")
    assert requests.get(gw.url("/l")).status_code == 500
    key_l = "portico:limit-conn:routes/l:all"
    assert wait_until(lambda: redis.command("EXISTS", key_l) == 0, timeout=8)
    assert wait_until(lambda: requests.get(gw.url("/l")).status_code == 200, timeout=5)


def test_limit_conn_on_redis_down_degrades_or_fails(gateway, upstream, redis):
    up = upstream()
    gw = gateway({"routes": [
        route("/open", [(up.port,)], id="open", plugins=conn_plugin(redis, allow_degradation=True)),
        route("/closed", [(up.port,)], id="closed", plugins=conn_plugin(redis))]})
    assert requests.get(gw.url("/closed")).status_code == 200
    redis.stop()
    assert requests.get(gw.url("/open")).status_code == 200
    r = requests.get(gw.url("/closed"))
    assert r.status_code == 500 and r.json() == {"error_msg": "failed to limit conn"}
    redis.start()
    assert gw.wait_until(lambda: requests.get(gw.url("/closed")).status_code == 200, timeout=5)


def test_plugin_metadata_names_the_quota_headers(gateway, upstream, tmp_path):
    up = upstream()
    gw = gateway({"routes": [route("/c", [(up.port,)], id="c", plugins=count_plugin())],
                  "plugin_metadata": [{"id": "limit-count", "limit_header": "X-Quota-Limit",
                                       "remaining_header": "X-Quota-Left",
                                       "reset_header": "X-Quota-Reset"}]})
    r = requests.get(gw.url("/c"))
    assert (r.headers["X-Quota-Limit"], r.headers["X-Quota-Left"]) == ("3", "2")
    assert 0 < int(r.headers["X-Quota-Reset"]) <= 60 and "X-RateLimit-Limit" not in r.headers
    code, out = validate(tmp_path, {"plugin_metadata": [{"id": "limit-count",
                                                         "limit_header": "bad header"}]})
    assert code != 0 and "plugin_metadata[0].limit_header" in out, out
