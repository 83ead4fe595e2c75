"""Limits answer with the right status and never reach the upstream; ambiguous requests
(request smuggling) are rejected with 400 and never forwarded."""
import socket
import time

import pytest

from conftest import route
from test_proxy_basics import raw


@pytest.fixture
def gw_up(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]},
                 node={"client_max_body_size": "1k", "client_header_timeout": "1s",
                       "client_body_timeout": "1s", "keepalive_timeout": "1s"})
    return gw, up


def status_of(out):
    return int(out.split(b" ", 2)[1])


SMUGGLING = {
    "cl_and_te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "differing_cl": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "cl_list_differing": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 5\r\n\r\nabcde",
    "bad_chunk_size": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nabcde",
    "invalid_header_name": b"GET / HTTP/1.1\r\nHost: a\r\nX@A: b\r\n\r\n",
    "te_chunked_twice": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "te_in_http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "duplicate_host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "missing_host": b"GET / HTTP/1.1\r\n\r\n",
    "bare_cr": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rX-B: c\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_ambiguous_requests_are_rejected_and_never_forwarded(gw_up, name):
    gw, up = gw_up
    out = raw(gw.port, SMUGGLING[name])
    assert status_of(out) == 400, out
    assert b"Connection: close" in out
    assert up.requests == []


def test_unsupported_transfer_coding_is_501(gw_up):
    gw, up = gw_up
    out = raw(gw.port, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert status_of(out) == 501 and up.requests == []


def test_head_over_32k_is_431(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})  # default limits
    out = raw(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"a" * 33000 + b"\r\n\r\n")
    assert status_of(out) == 431
    ok = raw(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Big: " + b"a" * 30000 + b"\r\n\r\n")
    assert status_of(ok) == 200
    assert len(up.requests) == 1


def test_long_uri_is_414(gw_up):
    gw, up = gw_up
    out = raw(gw.port, b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(out) == 414 and up.requests == []


def test_body_over_limit_is_413(gw_up):
    gw, up = gw_up
    out = raw(gw.port, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n" + b"b" * 2000)
    assert status_of(out) == 413 and up.requests == []
    chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b"7d0\r\n" + b"c" * 2000 + b"\r\n0\r\n\r\n"
    assert status_of(raw(gw.port, chunked)) == 413


def test_slow_header_is_408(gw_up):
    gw, up = gw_up
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        start = time.time()
        # slowloris: keep sending header bytes; the 1 s timeout covers the whole head
        out = b""
        try:
            for _ in range(30):
                s.sendall(b"X-A: b\r\n")
                time.sleep(0.1)
        except OSError:
            pass
        out = s.recv(4096)
        assert status_of(out) == 408
        assert time.time() - start < 4
    assert up.requests == []


def test_slow_body_is_408(gw_up):
    gw, up = gw_up
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        out = s.recv(4096)
    assert status_of(out) == 408


def test_idle_keepalive_connection_is_closed(gw_up):
    gw, up = gw_up
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        first = s.recv(65536)
        assert status_of(first) == 200
        start = time.time()
        assert s.recv(4096) == b""  # closed by the gateway after keepalive_timeout (1 s)
        assert 0.5 < time.time() - start < 4


def test_keepalive_requests_limit_closes_connection(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]}, node={"keepalive_requests": 3})
    req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 5
    out = raw(gw.port, req)
    assert out.count(b"HTTP/1.1 200") == 3
    assert out.count(b"Connection: close") == 1


def test_routes_match_the_normalised_path(gateway, upstream):
    """Encoded or dot-segment spellings of /admin/... hit the /admin/* route, as nginx's $uri."""
    public, admin = upstream(name="public"), upstream(name="admin")
    gw = gateway({"routes": [
        route("/*", [(public.port,)], id="public"),
        route("/admin/*", [(admin.port,)], id="admin"),
    ]})
    for path in (b"/admin/x", b"/%61dmin/x", b"/public/../admin/x", b"//admin/x", b"/./admin/x"):
        out = raw(gw.port, b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert b'"upstream": "admin"' in out, path
        assert b'"target": "' + path + b'"' in out  # forwarded as the client sent it
    assert public.requests == []
    assert status_of(raw(gw.port, b"GET /../x HTTP/1.1\r\nHost: a\r\n\r\n")) == 400
    assert status_of(raw(gw.port, b"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n")) == 400
