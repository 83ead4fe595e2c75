"""gzip through the binary: compressed upstream bodies for clients that accept gzip (by media
type, size, status and Accept-Encoding), chunked bodies compressed whole with a length, other
body filters seeing the text first, and schema errors."""
import gzip

import requests

from conftest import assert_plugin_errors, route


def raw_get(gw, path, headers=None):
    """(response, the body bytes as sent, not decoded)."""
    r = requests.get(gw.url(path), headers=headers or {}, stream=True, timeout=5)
    return r, r.raw.read(decode_content=False)


def test_gzip_compresses_matching_bodies_for_clients_that_accept_it(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/json/*", [(up.port,)], id="json", plugins={"gzip": {
            "types": ["application/json"], "comp_level": 6, "vary": True}}),
        route("/html/*", [(up.port,)], id="html", plugins={"gzip": {}}),  # text/html only
    ]})
    r, body = raw_get(gw, "/json/" + "x" * 2000, {"Accept-Encoding": "gzip, deflate"})
    assert r.headers["Content-Encoding"] == "gzip" and r.headers["Vary"] == "Accept-Encoding"
    assert int(r.headers["Content-Length"]) == len(body)
    text = gzip.decompress(body)
    assert b'"target": "/json/' + b"x" * 2000 in text and len(body) < len(text) / 5
    for accept in (None, "identity", "gzip;q=0", "br"):
        r, body = raw_get(gw, "/json/a", {"Accept-Encoding": accept})  # None: no header
        assert "Content-Encoding" not in r.headers, accept
        assert body.startswith(b'{"upstream"'), accept
    r, _ = raw_get(gw, "/html/page", {"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in r.headers  # application/json is not in the default types
    r = requests.head(gw.url("/json/a"), headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert "Content-Encoding" not in r.headers


def test_gzip_sizes_statuses_and_chunked_bodies(gateway, upstream):
    up = upstream()
    small = {"gzip": {"types": "*", "min_length": 5}}
    gw = gateway({"routes": [
        route("/chunked", [(up.port,)], id="chunked", plugins=small),
        route("/status/*", [(up.port,)], id="status", plugins=small),
        route("/status/*", [(up.port,)], id="big", host="big.test",
              plugins={"gzip": {"types": "*", "min_length": 100}}),
    ]})
    # A chunked body is read whole, compressed, and sent with a length.
    r, body = raw_get(gw, "/chunked", {"Accept-Encoding": "gzip"})
    assert r.headers["Content-Encoding"] == "gzip" and "Transfer-Encoding" not in r.headers
    assert gzip.decompress(body) == b"hello world"
    r, body = raw_get(gw, "/status/200", {"Accept-Encoding": "gzip", "Host": "big.test"})
    assert "Content-Encoding" not in r.headers and body == b"status 200\n"  # 11 < min_length
    r, body = raw_get(gw, "/status/404", {"Accept-Encoding": "gzip"})
    assert r.status_code == 404 and gzip.decompress(body) == b"status 404\n"
    r, body = raw_get(gw, "/status/500", {"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in r.headers and body == b"status 500\n"  # as nginx


def test_gzip_runs_after_the_filters_that_read_the_text(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/f/*", [(up.port,)], id="f", plugins={
        "gzip": {"types": ["application/json"]},
        "response-rewrite": {"filters": [{"regex": "upstream", "replace": "UPSTREAM"}]}})]})
    r, body = raw_get(gw, "/f/x", {"Accept-Encoding": "gzip"})
    assert r.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).startswith(b'{"UPSTREAM"')


def test_gzip_on_a_global_rule_and_the_route_compresses_once(gateway, upstream):
    up = upstream()
    gw = gateway({
        "global_rules": [{"id": "g", "plugins": {"gzip": {"types": "*"}}}],
        "routes": [route("/g/*", [(up.port,)], id="g", plugins={"gzip": {"types": "*"}})]})
    r, body = raw_get(gw, "/g/x", {"Accept-Encoding": "gzip"})
    assert r.raw.headers.getlist("Content-Encoding") == ["gzip"]
    assert gzip.decompress(body).startswith(b'{"upstream"')


def test_gzip_accept_encoding_q_values(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/q/*", [(up.port,)], id="q", plugins={"gzip": {
        "types": "*"}})]})
    for accept, compressed in (("*", True), ("*;q=1, gzip;q=0", False), ("gzip;Q=0", False),
                               ("deflate, gzip;q=0.5", True), ("identity;q=1, *;q=0", False)):
        r, _ = raw_get(gw, "/q/x", {"Accept-Encoding": accept})
        assert ("Content-Encoding" in r.headers) == compressed, accept


def test_gzip_schema_errors(tmp_path):
    assert_plugin_errors(tmp_path, "gzip", [
        ({"types": []}, "gzip.types"),
        ({"types": "text/html"}, "gzip.types"),
        ({"comp_level": 10}, "gzip.comp_level"),
        ({"min_length": 0}, "gzip.min_length"),
        ({"http_version": 2}, "gzip.http_version")])
