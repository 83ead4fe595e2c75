"""Proxying behaviour a user of nginx/APISIX expects: methods, bodies both ways, keep-alive,
pipelining, forwarding headers, hop-by-hop headers, HEAD/204/304, 100-continue."""
import json
import socket
import time

import requests

from conftest import raw, read_to_close, route


def test_get_is_proxied_with_forwarding_headers(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    r = requests.get(gw.url("/a/b?x=1&y=2"), headers={"X-Forwarded-For": "10.0.0.1"})
    assert r.status_code == 200
    body = r.json()
    assert body["target"] == "/a/b?x=1&y=2"
    h = {k.lower(): v for k, v in body["headers"]}
    assert h["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == f"127.0.0.1:{gw.port}"
    assert h["x-forwarded-port"] == str(gw.port)
    assert h["host"] == f"127.0.0.1:{gw.port}"  # pass_host: pass (default)


def test_hop_by_hop_headers_are_removed_both_ways(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    r = requests.get(gw.url("/x"), headers={"Connection": "keep-alive, X-Secret-Hop",
                                            "X-Secret-Hop": "1", "Keep-Alive": "timeout=5",
                                            "TE": "trailers", "X-Kept": "yes"})
    names = {k.lower() for k, _ in r.json()["headers"]}
    assert "x-secret-hop" not in names and "keep-alive" not in names and "te" not in names
    assert "x-kept" in names
    r = requests.get(gw.url("/chunked"))
    assert r.text == "hello world"
    assert "X-Trailer" not in r.headers  # trailers are dropped


def test_post_content_length_and_chunked_bodies_reach_upstream(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    r = requests.post(gw.url("/p"), data=b"x" * 5000)
    assert r.json()["body_len"] == 5000
    assert r.json()["body"] == "x" * 5000

    def gen():
        yield b"hello "
        yield b"chunked "
        yield b"world"
    r = requests.post(gw.url("/p"), data=gen())
    assert r.json()["body"] == "hello chunked world"
    h = {k.lower(): v for k, v in r.json()["headers"]}
    assert h["transfer-encoding"] == "chunked"


def test_response_bodies_chunked_and_close_delimited(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    r = requests.get(gw.url("/chunked"))
    assert r.status_code == 200 and r.text == "hello world"
    r = requests.get(gw.url("/close"))
    assert r.text == "until close"
    assert r.headers.get("Transfer-Encoding") == "chunked"  # re-framed for a 1.1 client
    out = raw(gw.port, b"GET /close HTTP/1.0\r\nHost: a\r\n\r\n")
    assert out.endswith(b"\r\n\r\nuntil close")  # 1.0 client: delimited by close


def test_head_204_304_have_no_body(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    r = requests.head(gw.url("/echo"))
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) > 0
    for code in (204, 304):
        out = raw(gw.port, f"GET /status/{code} HTTP/1.1\r\nHost: a\r\n\r\n"
                           f"GET /status/200 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        first, _, rest = out.partition(b"\r\n\r\n")
        assert first.startswith(f"HTTP/1.1 {code}".encode())
        assert rest.startswith(b"HTTP/1.1 200")  # nothing between the two responses


def test_keepalive_reuses_upstream_connections(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    with requests.Session() as s:
        for _ in range(50):
            assert s.get(gw.url("/k")).status_code == 200
    for _ in range(50):
        assert requests.get(gw.url("/k")).status_code == 200  # new client connection each time
    assert len(up.requests) == 100
    assert up.connections == 1


def test_pipelined_requests_are_answered_in_order(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    req = b"".join(f"GET /n{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for i in range(5))
    req += b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    out = raw(gw.port, req)
    assert out.count(b"HTTP/1.1 200 OK") == 6
    positions = [out.index(f'"target": "/n{i}"'.encode()) for i in range(5)]
    assert positions == sorted(positions)
    assert b'"target": "/last"' in out


def test_a_client_that_half_closes_after_its_requests_gets_answers_then_a_close(gateway, upstream):
    """Requests and the client's FIN may arrive together: both are answered, then the gateway
    closes at once (it must not wait for more bytes that cannot come until its idle timeout)."""
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    for requests_sent in (1, 3):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            time.sleep(0.2)  # the gateway is waiting for the first request when all of it comes
            s.sendall(b"".join(f"GET /h{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
                               for i in range(requests_sent)))
            s.shutdown(socket.SHUT_WR)
            started = time.monotonic()
            out = read_to_close(s)
            assert out.count(b"HTTP/1.1 200 OK") == requests_sent, out
            assert time.monotonic() - started < 1, "the gateway waited instead of closing"


def test_expect_100_continue(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        out = b""
        while b"}" not in out:
            out += s.recv(65536)
    assert b"HTTP/1.1 200" in out and b'"body": "hello"' in out
    h = {k.lower() for k, _ in up.requests[-1].headers}
    assert "expect" not in h


def test_pass_host_node_and_rewrite(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/node", [(up.port,)], upstream={"pass_host": "node"}),
        route("/rewrite", [(up.port,)], upstream={"pass_host": "rewrite", "upstream_host": "api.internal"}),
    ]})
    h = dict((k.lower(), v) for k, v in requests.get(gw.url("/node")).json()["headers"])
    assert h["host"] == f"127.0.0.1:{up.port}"
    h = dict((k.lower(), v) for k, v in requests.get(gw.url("/rewrite")).json()["headers"])
    assert h["host"] == "api.internal"


def test_access_log_has_one_json_line_per_request(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)], id="r1")]})
    requests.get(gw.url("/logged?q=1"))
    requests.get(gw.url("/status/503"))
    gw.stop()
    lines = [json.loads(l) for l in gw.access_path.read_text().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["uri"] == "/logged?q=1" and first["status"] == 200 and first["route"] == "r1"
    assert first["upstream"] == f"127.0.0.1:{up.port}" and first["upstream_status"] == 200
    for key in ("time", "client", "method", "bytes_in", "bytes_out", "latency_ms", "upstream_latency_ms"):
        assert key in first
    assert lines[1]["status"] == 503 and lines[1]["upstream_status"] == 503


def test_small_body_sent_late_after_a_large_pipelined_request(gateway, upstream):
    """The second request's body is read whole before the upstream is involved, even when the
    read buffer must be compacted under its parsed head (headers must survive intact)."""
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    first = b"GET /first HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 8000 + b"\r\n\r\n"
    body = b"b" * 8800
    second_head = (b"POST /second HTTP/1.1\r\nHost: a\r\nX-Check: intact-value\r\n"
                   b"Content-Length: 8800\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(first + second_head + body[:100])
        time.sleep(0.3)
        s.sendall(body[100:])
        out = read_to_close(s)
    assert out.count(b"HTTP/1.1 200") == 2
    second = up.requests[-1]
    assert second.target == "/second" and second.body == body
    assert second.header("x-check") == "intact-value"


def test_upstream_keepalive_pool_limits(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)],
                                   upstream={"keepalive_pool": {"size": 4, "idle_timeout": 1,
                                                                "requests": 3}})]})
    with requests.Session() as s:
        for _ in range(6):
            assert s.get(gw.url("/k")).status_code == 200
    assert up.connections == 2  # a connection carries 3 requests, then a new one is opened
    time.sleep(2.5)  # idle past idle_timeout: the pooled connection is closed
    assert requests.get(gw.url("/k")).status_code == 200
    assert up.connections == 3


def test_http10_client_keepalive(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = b""
        while b"}" not in first:
            first += s.recv(65536)
        assert b"Connection: keep-alive" in first
        s.sendall(b"GET /b HTTP/1.0\r\n\r\n")  # no keep-alive asked: closed after the answer
        rest = read_to_close(s)
    assert rest.startswith(b"HTTP/1.1 200") and b"Connection: close" in rest
