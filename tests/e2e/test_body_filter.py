"""The body_filter phase through response-rewrite's `filters`: upstream bodies with a length,
chunked and close-delimited are rewritten whole; a body over the limit or a compressed one
passes unchanged."""
import requests

from conftest import route


def filters(*items):
    return {"response-rewrite": {"filters": list(items)}}


def test_filters_rewrite_length_and_chunked_bodies(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/*", [(up.port,)], id="all", plugins=filters(
            {"regex": "upstream", "replace": "UPSTREAM", "scope": "global"},
            {"regex": "(hel)lo", "replace": "$1p", "options": "i"})),
    ]})
    r = requests.get(gw.url("/echo"))  # JSON echo with a Content-Length
    assert r.status_code == 200
    assert '"UPSTREAM"' in r.text and "upstream" not in r.text
    assert int(r.headers["Content-Length"]) == len(r.content)
    r = requests.get(gw.url("/chunked"))  # "hello world" in two chunks
    assert r.text == "help world"
    assert r.headers.get("Content-Length") == str(len("help world"))
    r = requests.get(gw.url("/close"))  # close-delimited
    assert r.text == "until close"


def test_big_bodies_stream_unchanged_and_errors_name_fields(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/*", [(up.port,)], id="all",
              plugins=filters({"regex": "\\x00", "replace": "1", "scope": "global"}))]})
    # over the 8 MiB limit with a length: untouched
    r = requests.get(gw.url("/big/9000000"))
    assert len(r.content) == 9000000 and r.content.count(b"1") == 0
    # chunked and over the limit: the part already read and the rest, unchanged
    r = requests.get(gw.url("/bigchunked/9000000"))
    assert len(r.content) == 9000000 and r.content.count(b"1") == 0
    # small: rewritten
    assert set(requests.get(gw.url("/big/1000")).content) == {ord("1")}
    gw.write_routes({"routes": [route("/*", [(up.port,)], id="all", plugins={
        "response-rewrite": {"body": "x", "filters": [{"regex": "(", "replace": "y"}]}})]})
    gw.wait_log("routes[0].plugins.response-rewrite.filters[0].regex")
