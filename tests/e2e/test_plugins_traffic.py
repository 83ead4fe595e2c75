"""Traffic plugins through the binary: limit-req (nodelay, delays on a timer that leave the worker
free, keys, one bucket across workers), limit-conn (conn + burst, slots released), real-ip and
ip-restriction on the address real-ip settled on."""
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import raw, route, validate


def raw_request(port, request):
    """Sends `request` as bytes (repeated header lines, which requests would fold into one) on a
    `Connection: close` request; returns (status, body)."""
    head, _, body = raw(port, request).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def headers_seen(r):
    """The request headers the echo upstream received, lower-cased names -> list of values."""
    out = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


# ------------------------------------------------------------------------------- limit-req

def test_limit_req_nodelay_rejects_past_burst_with_code_and_message(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/custom", [(up.port,)], id="custom", plugins={"limit-req": {
            "rate": 1, "burst": 2, "nodelay": True, "rejected_code": 429,
            "rejected_msg": "slow down"}}),
        route("/default", [(up.port,)], id="default", plugins={"limit-req": {
            "rate": 1, "burst": 0, "nodelay": True}}),
    ]})
    t = time.time()
    codes = [gw.get("/custom").status_code for _ in range(3)]
    r = gw.get("/custom")
    assert time.time() - t < 0.5, "nodelay requests were held"
    assert codes == [200, 200, 200]  # the free one and a burst of 2, none delayed
    assert r.status_code == 429 and r.json() == {"error_msg": "slow down"}
    assert gw.get("/default").status_code == 200
    assert gw.get("/default").status_code == 503  # APISIX's default rejected_code


def test_limit_req_delays_on_a_timer_without_blocking_the_worker(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/limited", [(up.port,)], id="limited",
              plugins={"limit-req": {"rate": 2, "burst": 5}}),
        route("/free", [(up.port,)], id="free"),
    ]}, workers=1)
    assert gw.get("/limited").status_code == 200  # first request: free
    result = {}

    def delayed():
        t = time.time()
        result["status"] = gw.get("/limited").status_code
        result["elapsed"] = time.time() - t
    th = threading.Thread(target=delayed)
    th.start()
    time.sleep(0.1)
    t = time.time()
    assert gw.get("/free").status_code == 200
    free_elapsed = time.time() - t
    th.join()
    assert result["status"] == 200
    # excess 1 request at 2 r/s: held 500 ms (less the few ms since the first request).
    assert 0.4 <= result["elapsed"] < 1.5, result
    assert free_elapsed < 0.2, f"the only worker was blocked for {free_elapsed:.3f}s"


def test_limit_req_keys_by_header_and_by_var_combination(gateway, upstream):
    up = upstream()
    strict = {"rate": 1, "burst": 0, "nodelay": True}
    gw = gateway({"routes": [
        route("/by-user", [(up.port,)], id="by-user",
              plugins={"limit-req": dict(strict, key="http_x_user")}),
        route("/by-combo", [(up.port,)], id="by-combo", plugins={"limit-req": dict(
            strict, key_type="var_combination", key="$http_x_user:$arg_app")}),
    ]})
    get = lambda path, user=None, **kw: gw.get(
        path, headers={"X-User": user} if user else {}, **kw).status_code
    assert [get("/by-user", "a"), get("/by-user", "a"), get("/by-user", "b")] == [200, 503, 200]
    # Without the header the key falls back to the client address: its own bucket.
    assert [get("/by-user"), get("/by-user")] == [200, 503]
    assert get("/by-combo", "a", params={"app": "x"}) == 200
    assert get("/by-combo", "a", params={"app": "x"}) == 503
    assert get("/by-combo", "a", params={"app": "y"}) == 200
    assert get("/by-combo", "b", params={"app": "x"}) == 200


def test_limit_req_one_bucket_for_all_workers(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/shared", [(up.port,)], id="shared", plugins={
        "limit-req": {"rate": 1, "burst": 4, "nodelay": True, "rejected_code": 429}})]},
        workers=2)

    def one(_):  # a new connection per request: the kernel spreads them over both workers
        return requests.get(gw.url("/shared"), headers={"Connection": "close"}, timeout=5).status_code
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(16)))
    # All within a fraction of a second: the free request and a burst of 4, once for the node.
    assert codes.count(200) == 5 and codes.count(429) == 11, codes


# ------------------------------------------------------------------------------ limit-conn

def test_limit_conn_admits_conn_plus_burst_and_releases_slots(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/slow/*", [(up.port,)], id="slow", plugins={"limit-conn": {
        "conn": 2, "burst": 1, "default_conn_delay": 0.05, "rejected_code": 503,
        "rejected_msg": "too many"}})]})

    def one(_):
        r = requests.get(gw.url("/slow/400"), timeout=5)
        return r.status_code, r.text
    for _round in range(2):  # the second round finds every slot released
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(one, range(6)))
        codes = sorted(c for c, _ in results)
        assert codes == [200, 200, 200, 503, 503, 503], results
        assert all(json.loads(t) == {"error_msg": "too many"} for c, t in results if c == 503)
    assert gw.get("/slow/1").status_code == 200


def test_limit_conn_slot_released_when_the_client_leaves_mid_body(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/up", [(up.port,)], id="up", plugins={"limit-conn": {
        "conn": 1, "burst": 0, "default_conn_delay": 0.1}})]})
    for _ in range(2):  # a Content-Length the client never fills, then it hangs up
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789")
        time.sleep(0.1)
        s.close()
    time.sleep(0.1)
    assert gw.get("/up").status_code == 200


def test_limit_conn_releases_the_key_it_counted_after_a_streamed_body(gateway, upstream):
    # A body larger than the read buffer streams through it, over the request head: the key must
    # not be read again from there at the end (a wrong key was released, the right one leaked).
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)], id="all", plugins={"limit-conn": {
        "conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "http_x_user",
        "rejected_code": 429}})]})
    body = b"x" * 200_000
    for _ in range(3):
        r = requests.post(gw.url("/sink"), data=body, headers={"X-User": "alice"}, timeout=10)
        assert r.status_code == 200 and r.json() == {"received": len(body)}
    assert gw.get("/echo", headers={"X-User": "alice"}).status_code == 200
    assert gw.get("/echo", headers={"X-User": "bob"}).status_code == 200


def test_limit_req_rates_the_bucket_cannot_count_are_config_errors(tmp_path):
    for conf in ({"rate": 0.0001, "burst": 1}, {"rate": 1, "burst": 1e17}):
        doc = {"routes": [route("/", [(1,)], id="r", plugins={"limit-req": conf})]}
        code, out = validate(tmp_path, doc)
        assert code != 0 and "routes[0].plugins.limit-req." in out, out


# ------------------------------------------------------------------- real-ip, ip-restriction

def test_real_ip_from_a_trusted_peer_reaches_upstream_log_and_ip_restriction(gateway, upstream):
    up = upstream()
    xff = {"source": "http_x_forwarded_for", "trusted_addresses": ["127.0.0.0/8"]}
    gw = gateway({"routes": [
        route("/last", [(up.port,)], id="last", plugins={"real-ip": xff}),
        route("/recursive", [(up.port,)], id="recursive", plugins={"real-ip": dict(
            xff, recursive=True, trusted_addresses=["127.0.0.0/8", "10.0.0.0/8"])}),
        route("/untrusted", [(up.port,)], id="untrusted", plugins={"real-ip": dict(
            xff, trusted_addresses=["10.0.0.0/8"])}),
        route("/guarded", [(up.port,)], id="guarded", plugins={
            "real-ip": xff, "ip-restriction": {"whitelist": ["203.0.113.0/24"]}}),
        route("/by-arg", [(up.port,)], id="by-arg", plugins={"real-ip": {"source": "arg_client"}}),
    ]})
    chain = {"X-Forwarded-For": "203.0.113.7, 10.0.0.5"}
    # recursive off: the last hop's claim (nginx real_ip_recursive off).
    h = headers_seen(gw.get("/last", headers=chain))
    assert h["x-real-ip"] == ["10.0.0.5"]
    assert h["x-forwarded-for"][0].startswith("203.0.113.7, 10.0.0.5")
    # recursive: trusted proxies (10.0.0.5) are skipped from the right.
    assert headers_seen(gw.get("/recursive", headers=chain))["x-real-ip"] == ["203.0.113.7"]
    # The peer (127.0.0.1) is not trusted: the header is ignored.
    assert headers_seen(gw.get("/untrusted", headers=chain))["x-real-ip"] == ["127.0.0.1"]
    assert gw.get("/guarded", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
    assert gw.get("/guarded", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 403
    assert gw.get("/guarded").status_code == 403  # no header: 127.0.0.1
    # A proxy that adds its own X-Forwarded-For line puts it after the client's: every line
    # counts, or the client's own first line would name any address it likes.
    two_lines = (b"GET /guarded HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9\r\n"
                 b"X-Forwarded-For: 198.51.100.1\r\nConnection: close\r\n\r\n")
    assert raw_request(gw.port, two_lines)[0] == 403

    def real_ip(path, request):
        status, body = raw_request(gw.port, request.replace(b"/guarded", path))
        assert status == 200, body
        return [v for k, v in json.loads(body)["headers"] if k.lower() == "x-real-ip"]
    assert real_ip(b"/last", two_lines) == ["198.51.100.1"]
    three_hops = two_lines.replace(b"198.51.100.1", b"198.51.100.1, 10.0.0.5")
    assert real_ip(b"/recursive", three_hops) == ["198.51.100.1"]
    assert headers_seen(gw.get("/by-arg?client=192.0.2.44"))["x-real-ip"] == ["192.0.2.44"]
    # Not an address: ignored.
    assert headers_seen(gw.get("/by-arg?client=nonsense"))["x-real-ip"] == ["127.0.0.1"]
    gw.stop()
    clients = [json.loads(l)["client"] for l in gw.access_path.read_text().splitlines()]
    assert clients[0].startswith("10.0.0.5:") and clients[1].startswith("203.0.113.7:"), clients
    assert clients[2].startswith("127.0.0.1:")


def test_ip_restriction_lists_cidrs_message_and_code(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/white", [(up.port,)], id="white",
              plugins={"ip-restriction": {"whitelist": ["10.0.0.0/8", "127.0.0.1"]}}),
        route("/black", [(up.port,)], id="black", plugins={"ip-restriction": {
            "blacklist": ["127.0.0.0/24", "::1"], "message": "go away", "response_code": 404}}),
        route("/v6", [(up.port,)], id="v6",
              plugins={"ip-restriction": {"whitelist": ["2001:db8::/32"]}}),
    ]})
    assert gw.get("/white").status_code == 200
    r = gw.get("/black")
    assert r.status_code == 404 and r.json() == {"message": "go away"}
    r = gw.get("/v6")
    assert r.status_code == 403 and r.json() == {"message": "Your IP address is not allowed"}


def test_limit_req_buckets_survive_a_config_reload(gateway, upstream):
    """The plugin instance is rebuilt from the new config, its buckets (keyed by route) are not."""
    up = upstream()

    def routes(tag):
        return {"routes": [route("/kept", [(up.port,)], id="kept", plugins={
            "limit-req": {"rate": 0.1, "burst": 0, "nodelay": True, "rejected_code": 429},
            "response-rewrite": {"headers": {"X-Tag": tag}}})]}
    gw = gateway(routes("one"))
    assert gw.get("/kept").status_code == 200
    gw.write_routes(routes("two"))
    assert gw.wait_until(lambda: gw.get("/kept").headers.get("X-Tag") == "two", 5)
    assert gw.get("/kept").status_code == 429
