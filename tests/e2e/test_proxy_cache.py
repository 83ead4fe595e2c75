"""proxy-cache through the binary: MISS then HIT without the upstream, keys, statuses, methods,
TTL expiry, PURGE, cache_bypass and no_cache, the upstream's Cache-Control (cache_control),
responses that are never stored (Set-Cookie, Vary), hidden cache headers, a zone shared by the
workers, and schema errors."""
import http.server
import threading
import time
import urllib.parse

import requests

from conftest import assert_plugin_errors, route


class Origin:
    """Answers /<anything>?h=Name:Value&h=... with those headers, and counts requests per path."""

    def __init__(self):
        self.hits = {}
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path, _, query = self.path.partition("?")
                origin.hits[path] = origin.hits.get(path, 0) + 1
                body = f"{path} #{origin.hits[path]}".encode()
                status = int(path.split("/")[-1]) if path.split("/")[-1].isdigit() else 200
                self.send_response(status)
                for item in query.split("&"):
                    if item.startswith("h="):
                        name, _, value = urllib.parse.unquote(item[2:]).partition(":")
                        self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def cache_route(origin, uri="/c/*", **conf):
    return route(uri, [(origin.port,)], id=uri.strip("/*"), plugins={"proxy-cache": conf})


def status_of(r):
    return r.headers.get("Apisix-Cache-Status")


def test_miss_then_hit_shared_by_workers(gateway):
    origin = Origin()
    gw = gateway({"routes": [cache_route(origin)]}, workers=2)
    first = gw.get("/c/a?x=1")
    assert (first.status_code, status_of(first), first.text) == (200, "MISS", "/c/a #1")
    for _ in range(6):  # whichever worker takes it
        r = gw.get("/c/a?x=1")
        assert (r.status_code, status_of(r), r.text) == (200, "HIT", "/c/a #1")
        assert r.headers["Content-Type"] == "text/plain"
    assert origin.hits["/c/a"] == 1
    assert status_of(gw.get("/c/a?x=2")) == "MISS"  # another key ($request_uri)
    # 404 is stored by default, 500 is not; POST is not a cached method by default.
    assert [status_of(gw.get("/c/404")) for _ in range(2)] == ["MISS", "HIT"]
    assert [status_of(gw.get("/c/500")) for _ in range(2)] == ["MISS", "MISS"]
    assert [requests.post(gw.url("/c/p")).headers.get("Apisix-Cache-Status") for _ in range(2)] == [None, None]
    assert origin.hits["/c/p"] == 2
    # HEAD is answered from the entry GET stored, without a body.
    r = requests.head(gw.url("/c/a?x=1"))
    assert status_of(r) == "HIT" and r.headers["Content-Length"] == str(len("/c/a #1"))
    origin.stop()


def test_expiry_purge_bypass_and_no_cache(gateway):
    origin = Origin()
    gw = gateway({"routes": [cache_route(origin, cache_strategy="memory", cache_ttl=1,
                                         cache_bypass=["$arg_fresh"], no_cache=["$arg_nostore"])]})
    assert [status_of(gw.get("/c/t")) for _ in range(2)] == ["MISS", "HIT"]
    time.sleep(1.2)
    r = gw.get("/c/t")
    assert (status_of(r), r.text) == ("EXPIRED", "/c/t #2")
    r = requests.request("PURGE", gw.url("/c/t"))
    assert r.status_code == 200
    assert requests.request("PURGE", gw.url("/c/t")).status_code == 404
    assert status_of(gw.get("/c/t")) == "MISS"
    # bypass: not answered from the cache ("0" and "" do not count)
    assert [status_of(gw.get("/c/t?fresh=0")) for _ in range(2)] == ["MISS", "HIT"]
    r = gw.get("/c/b?fresh=1")
    assert status_of(r) == "BYPASS"
    assert [status_of(gw.get("/c/n?nostore=1")) for _ in range(2)] == ["MISS", "MISS"]
    origin.stop()


def test_what_is_never_stored_and_the_upstreams_cache_control(gateway):
    origin = Origin()
    gw = gateway({"routes": [
        cache_route(origin, "/c/*"),
        cache_route(origin, "/cc/*", cache_strategy="memory", cache_control=True, cache_ttl=300),
        cache_route(origin, "/h/*", hide_cache_headers=True)]})
    # One client's cookie or an answer that varies by request header is never shared.
    assert [status_of(gw.get("/c/cookie?h=Set-Cookie:sid%3D1")) for _ in range(2)] == ["MISS", "MISS"]
    assert [status_of(gw.get("/c/vary?h=Vary:Authorization")) for _ in range(2)] == ["MISS", "MISS"]
    # cache_control: private / no-store are not stored; max-age sets the time to live.
    assert [status_of(gw.get("/cc/p?h=Cache-Control:private")) for _ in range(2)] == ["MISS"] * 2
    assert [status_of(gw.get("/cc/m?h=Cache-Control:max-age%3D1")) for _ in range(2)] == [
        "MISS", "HIT"]
    time.sleep(1.2)
    assert status_of(gw.get("/cc/m?h=Cache-Control:max-age%3D1")) == "EXPIRED"
    # ... and a client's no-cache goes upstream.
    r = gw.get("/cc/m?h=Cache-Control:max-age%3D100", headers={"Cache-Control": "no-cache"})
    assert status_of(r) == "BYPASS"
    # hide_cache_headers: neither the first answer nor a hit carries them.
    for want in ("MISS", "HIT"):
        r = gw.get("/h/x?h=Cache-Control:max-age%3D60&h=Expires:Thu,%2001%20Jan%202099")
        assert status_of(r) == want and "Cache-Control" not in r.headers
        assert "Expires" not in r.headers
    origin.stop()


def test_private_encoded_credentialed_rewritten_or_bypassed_answers_are_not_shared(gateway):
    origin = Origin()
    gw = gateway({"routes": [
        cache_route(origin, "/c/*", cache_bypass=["$http_x_fresh"]),
        cache_route(origin, "/k/*", cache_key=["$uri", "$args"]),
        route("/rw/*", [(origin.port,)], id="rw", plugins={
            "proxy-cache": {}, "response-rewrite": {"filters": [{"regex": "rw", "replace": "RW"}]}})]})
    twice = lambda path, **kw: [status_of(gw.get(path, **kw)) for _ in range(2)]  # noqa: E731
    # Even without cache_control, what the upstream keeps private stays so.
    assert twice("/c/priv?h=Cache-Control:private,%20max-age%3D60") == ["MISS", "MISS"]
    assert twice("/c/split?h=Cache-Control:max-age%3D60&h=Cache-Control:no-store") == ["MISS"] * 2
    # A compressed body would reach clients that cannot read it.
    assert twice("/c/gz?h=Content-Encoding:gzip", stream=True) == ["MISS", "MISS"]
    # An answer to a request with credentials is shared only when it says so.
    auth = {"Authorization": "Bearer alice"}
    assert twice("/c/me", headers=auth) == ["MISS", "MISS"]
    assert twice("/c/pub?h=Cache-Control:public", headers=auth) == ["MISS", "HIT"]
    # A bypassed request's answer does not replace the shared entry.
    assert status_of(gw.get("/c/bp", headers={"X-Fresh": "1"})) == "BYPASS"
    assert twice("/c/bp") == ["MISS", "HIT"]
    assert gw.get("/c/bp", headers={"X-Fresh": "1"}).text == "/c/bp #3"
    assert gw.get("/c/bp").text == "/c/bp #2"
    # A hit says how old it is.
    assert int(gw.get("/c/bp").headers["Age"]) >= 0
    # Key parts stay apart: "/k/ab=1" + "" is not "/k/a" + "b=1".
    assert status_of(gw.get("/k/ab=1")) == "MISS" and status_of(gw.get("/k/a?b=1")) == "MISS"
    # A body another plugin rewrites is not stored (a hit would skip the rewrite).
    r = gw.get("/rw/x")
    assert r.text == "/RW/x #1" and status_of(gw.get("/rw/x")) == "MISS"
    origin.stop()


def test_proxy_cache_schema_errors(tmp_path):
    assert_plugin_errors(tmp_path, "proxy-cache", [
        ({"cache_strategy": "redis"}, "proxy-cache.cache_strategy"),
        ({"cache_key": []}, "proxy-cache.cache_key"),
        ({"cache_method": ["DELETE"]}, "proxy-cache.cache_method"),
        ({"cache_http_status": [99]}, "proxy-cache.cache_http_status"),
        ({"cache_ttl": 0}, "proxy-cache.cache_ttl"),
        ({"cache_bypass": ["arg_x"]}, "proxy-cache.cache_bypass"),
        ({"cache_zone": ""}, "proxy-cache.cache_zone"),
        ({"cache_method": []}, "proxy-cache.cache_method"),
        ({"cache_size": 1}, "proxy-cache.cache_size")])
