"""The limits' `redis-cluster` policy through the real binary on a real three-master Redis
Cluster (redis_server.RedisCluster): counters spread over the masters by slot, two gateways
sharing exact counts, a slot moved under load (MOVED) or half-moved (ASK) without a miscount,
a master going away (allow_degradation) and coming back, limit-req's bucket on the cluster,
and schema errors."""
import concurrent.futures

import pytest
import requests

import pki
from conftest import assert_plugin_errors, route, wait_until
from redis_server import RedisCluster, RedisError


@pytest.fixture
def cluster(tmp_path):
    c = RedisCluster(tmp_path / "cluster").start()
    yield c
    c.stop()


def cluster_fields(cluster, **kw):
    conf = {"policy": "redis-cluster", "redis_cluster_name": "test-cluster",
            "redis_cluster_nodes": cluster.addresses[:2]}  # the third is found by the map
    conf.update(kw)
    return conf


def count_plugin(cluster, **kw):
    conf = cluster_fields(cluster, count=3, time_window=60, rejected_code=429)
    conf.update(kw)
    return {"limit-count": conf}


def holders(cluster, pattern):
    """Per node, the keys it holds matching `pattern`."""
    return [set(n.command("KEYS", pattern)) for n in cluster.nodes]


def test_two_nodes_share_exact_counts_spread_over_the_masters(gateway, upstream, cluster):
    up = upstream()
    plugins = count_plugin(cluster, count=20, key="http_x_user")
    routes = {"routes": [route("/c", [(up.port,)], id="c", plugins=plugins)]}
    nodes = [gateway(routes, workers=2), gateway(routes, workers=2)]
    users = [f"user{i}" for i in range(6)]

    def hit(i):
        user = users[i % len(users)]
        return user, requests.get(nodes[i % 2].url("/c"), headers={"X-User": user},
                                  timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(hit, range(6 * 30)))
    for user in users:  # 30 tries each, 20 let through, whichever node took them
        codes = [code for u, code in results if u == user]
        assert codes.count(200) == 20 and codes.count(429) == 10, (user, codes)
    held = holders(cluster, "portico:limit-count:*")
    assert sum(len(h) for h in held) == len(users)
    assert sum(1 for h in held if h) >= 2, held  # the keys live on several masters
    for node, keys in zip(cluster.nodes, held):
        for k in keys:  # each on the master that serves its slot
            assert cluster.owner(cluster.slot_of(k)) is node


def test_a_moved_slot_is_followed_without_losing_the_count(gateway, upstream, cluster):
    up = upstream()
    gw = gateway({"routes": [route("/m", [(up.port,)], id="m",
                                   plugins=count_plugin(cluster, count=4, key="http_x_user"))]})

    def remaining():
        r = requests.get(gw.url("/m"), headers={"X-User": "mover"})
        return r.status_code, r.headers.get("X-RateLimit-Remaining")

    assert [remaining() for _ in range(2)] == [(200, "3"), (200, "2")]
    key = "portico:limit-count:routes/m:mover"
    slot = cluster.slot_of(key)
    src = cluster.owner(slot)
    assert src.command("EXISTS", key) == 1
    dst = next(n for n in cluster.nodes if n is not src)
    cluster.move(slot, dst)  # the gateway's map still names src: src answers MOVED
    assert [remaining() for _ in range(3)] == [(200, "1"), (200, "0"), (429, "0")]
    assert dst.command("EXISTS", key) == 1
    with pytest.raises(RedisError, match="MOVED"):
        src.command("EXISTS", key)


def test_a_slot_being_migrated_is_served_with_asking(gateway, upstream, cluster):
    up = upstream()
    gw = gateway({"routes": [route("/a", [(up.port,)], id="a",
                                   plugins=count_plugin(cluster, count=3, key="http_x_user"))]})
    assert requests.get(gw.url("/a"), headers={"X-User": "asker"}).status_code == 200
    key = "portico:limit-count:routes/a:asker"
    slot = cluster.slot_of(key)
    dst = next(n for n in cluster.nodes if n is not cluster.owner(slot))
    # The key moves ahead of its slot: the source no longer has it and answers ASK; the target
    # serves it only to a client that says ASKING first.
    src = cluster.begin_move(slot, dst)
    src.command("MIGRATE", "127.0.0.1", dst.port, key, 0, 5000)
    codes = [requests.get(gw.url("/a"), headers={"X-User": "asker"}) for _ in range(3)]
    assert [(r.status_code, r.headers.get("X-RateLimit-Remaining")) for r in codes] == [
        (200, "1"), (200, "0"), (429, "0")]
    assert dst.commands(["ASKING"], ["EXISTS", key]) == 1  # counted there, behind ASKING
    with pytest.raises(RedisError, match="ASK"):
        src.command("EXISTS", key)
    cluster.finish_move(slot, src, dst)
    assert requests.get(gw.url("/a"), headers={"X-User": "asker"}).status_code == 429


def test_a_master_down_degrades_or_fails_then_recovers(gateway, upstream, cluster):
    up = upstream()

    def plugins(degrade):
        return count_plugin(cluster, count=1000, key_type="constant", key="k",
                            redis_timeout=300, allow_degradation=degrade)
    gw = gateway({"routes": [route("/open", [(up.port,)], id="open", plugins=plugins(True)),
                             route("/closed", [(up.port,)], id="closed", plugins=plugins(False))]})
    assert requests.get(gw.url("/open")).status_code == 200
    assert requests.get(gw.url("/closed")).status_code == 200
    owner = cluster.owner(cluster.slot_of("portico:limit-count:routes/closed:k"))
    owner.stop()
    assert requests.get(gw.url("/closed")).status_code == 500
    assert requests.get(gw.url("/open")).status_code == 200  # fail-open (or its master is up)
    owner.start()  # it rejoins with its nodes.conf
    assert wait_until(lambda: requests.get(gw.url("/closed")).status_code == 200, timeout=20)
    assert "X-RateLimit-Remaining" in requests.get(gw.url("/closed")).headers


def test_limit_req_is_one_bucket_on_the_cluster(gateway, upstream, cluster):
    up = upstream()
    req = cluster_fields(cluster, rate=1, burst=2, nodelay=True, rejected_code=429,
                         key="http_x_user")
    routes = {"routes": [route("/r", [(up.port,)], id="r", plugins={"limit-req": req})]}
    nodes = [gateway(routes), gateway(routes)]
    codes = [requests.get(nodes[i % 2].url("/r"), headers={"X-User": "u1"}).status_code
             for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    key = "portico:limit-req:routes/r:u1"
    assert cluster.owner(cluster.slot_of(key)).command("EXISTS", key) == 1


def test_limit_conn_holds_slots_on_the_cluster(gateway, upstream, cluster):
    up = upstream()
    conn = cluster_fields(cluster, conn=1, burst=0, default_conn_delay=0.1, rejected_code=429,
                          key="http_x_user")
    routes = {"routes": [route("/slow/*", [(up.port,)], id="s", plugins={"limit-conn": conn})]}
    nodes = [gateway(routes), gateway(routes)]

    def hit(i):
        return requests.get(nodes[i % 2].url("/slow/1000"), headers={"X-User": "u1"},
                            timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(hit, range(2))) == [200, 429]
    key = "portico:limit-conn:routes/s:u1"
    owner = cluster.owner(cluster.slot_of(key))
    assert wait_until(lambda: owner.command("ZCARD", key) == 0, timeout=5)  # released


def test_a_cluster_with_a_password(gateway, upstream, tmp_path):
    c = RedisCluster(tmp_path / "secure", requirepass="cluster-secret").start()
    try:
        up = upstream()
        plugins = count_plugin(c, count=2, key="http_x_user", redis_password="cluster-secret")
        gw = gateway({"routes": [route("/p", [(up.port,)], id="p", plugins=plugins)]})
        codes = [requests.get(gw.url("/p"), headers={"X-User": u}).status_code
                 for u in ("a", "b", "c", "a", "b", "c", "a", "b", "c")]
        assert codes == [200] * 6 + [429] * 3
        wrong = count_plugin(c, count=2, redis_password="nope", redis_timeout=300)
        gw.write_routes({"routes": [route("/p", [(up.port,)], id="p", plugins=wrong)]})
        assert wait_until(lambda: requests.get(gw.url("/p")).status_code == 500, timeout=5)
        assert "WRONGPASS" in gw.error_log() or "invalid password" in gw.error_log()
    finally:
        c.stop()


def test_a_cluster_over_tls(gateway, upstream, tmp_path, monkeypatch):
    pki_dir = tmp_path / "pki"
    ca = pki.make_ca(pki_dir, "cluster test CA")
    leaf = pki.issue(ca, pki_dir, "redis-node", ["IP:127.0.0.1"], usage="serverAuth,clientAuth")
    c = RedisCluster(tmp_path / "tls", tls=(ca, leaf)).start()
    try:
        up = upstream()
        over_tls = cluster_fields(c, redis_cluster_nodes=c.tls_addresses[:1],
                                  redis_cluster_ssl=True, redis_cluster_ssl_verify=True,
                                  redis_timeout=500)
        plugins = {"limit-count": dict(over_tls, count=2, time_window=60, rejected_code=429,
                                       key="http_x_user")}
        monkeypatch.setenv("SSL_CERT_FILE", ca.cert)
        gw = gateway({"routes": [route("/t", [(up.port,)], id="t", plugins=plugins)]})
        users = [f"u{i}" for i in range(6)]
        codes = [requests.get(gw.url("/t"), headers={"X-User": u}).status_code
                 for _ in range(3) for u in users]
        assert codes == [200] * 12 + [429] * 6
        # Counted on the masters that serve each key's slot, found over TLS from one seed.
        held = holders(c, "portico:limit-count:*")
        assert sum(len(h) for h in held) == len(users) and sum(1 for h in held if h) >= 2
        for node, keys in zip(c.nodes, held):
            for k in keys:
                assert c.owner(c.slot_of(k)) is node
        # Plain to the TLS ports: no count, a 500.
        plain = {"limit-count": dict(over_tls, count=2, time_window=60, redis_cluster_ssl=False)}
        gw.write_routes({"routes": [route("/t", [(up.port,)], id="t", plugins=plain)]})
        assert wait_until(lambda: requests.get(gw.url("/t")).status_code == 500, timeout=5)
    finally:
        c.stop()


def test_schema_errors(tmp_path):
    fields = {"count": 1, "time_window": 1, "policy": "redis-cluster"}
    assert_plugin_errors(tmp_path, "limit-count", [
        (dict(fields, redis_cluster_name="c"), "limit-count.redis_cluster_nodes"),
        (dict(fields, redis_cluster_nodes=["127.0.0.1:7000"]), "limit-count.redis_cluster_name"),
        (dict(fields, redis_cluster_name="c", redis_cluster_nodes=[]),
         "limit-count.redis_cluster_nodes"),
        (dict(fields, redis_cluster_name="c", redis_cluster_nodes=["127.0.0.1"]),
         "limit-count.redis_cluster_nodes"),
        (dict(fields, redis_cluster_name="c", redis_cluster_nodes=["127.0.0.1:7000"],
              redis_cluster_ssl="yes"), "limit-count.redis_cluster_ssl"),
        (dict(fields, redis_cluster_name="", redis_cluster_nodes=["127.0.0.1:7000"]),
         "limit-count.redis_cluster_name"),
        (dict(fields, redis_cluster_name="c", redis_cluster_nodes=["127.0.0.1:7000"],
              redis_database=2), "limit-count.redis_database")])
    assert_plugin_errors(tmp_path, "limit-req", [
        ({"rate": 1, "burst": 0, "policy": "redis-cluster", "redis_cluster_name": "c"},
         "limit-req.redis_cluster_nodes")])
