"""What a client cannot make the proxy do: split the request sent upstream through a rewritten
path, smuggle a body into a WebSocket relay, or have a POST run twice by a stale pooled
connection."""
import socket
import threading
import time

import pytest
import requests

from conftest import raw, route, validate


def test_a_decoded_path_cannot_split_the_request_sent_upstream(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/api/*", [(up.port,)], id="api", plugins={
        "proxy-rewrite": {"regex_uri": ["^/api/(.*)", "/$1"],
                          "headers": {"X-Path": "$uri"}}})]})
    before = len(up.requests)
    answer = raw(gw.port, b"GET /api/x%20HTTP/1.1%0d%0aHost:%20internal%0d%0aX-Injected:%20yes"
                          b"%0d%0a%0d%0aGET%20/admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert len(up.requests) == before + 1  # one request, not two
    req = up.requests[-1]
    assert req.target == "/x%20HTTP/1.1%0D%0AHost:%20internal%0D%0AX-Injected:%20yes%0D%0A%0D%0AGET%20/admin"
    assert req.header("x-injected") is None
    assert "\r" not in (req.header("x-path") or "") and "\n" not in (req.header("x-path") or "")


def test_a_websocket_upgrade_with_a_body_is_refused(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/ws", [(up.port,)], id="ws", enable_websocket=True)]})
    head = (b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    for body in (b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                 b"Content-Length: 5\r\n\r\nhello"):
        answer = raw(gw.port, head + body)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"has no body" in answer


def serve_raw(answer):
    """A node that answers the nth request of a connection (from 0) with answer(head, nth): a
    list of byte strings sent with a pause between them, or None to close the connection
    without an answer. Request bodies are not read. Returns (port, close, connections
    accepted)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve(c):
        with c:
            c.settimeout(5)
            data = b""
            nth = 0
            while True:
                try:
                    chunk = c.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                data += chunk
                while b"\r\n\r\n" in data:
                    head, _, data = data.partition(b"\r\n\r\n")
                    pieces = answer(head, nth)
                    nth += 1
                    if pieces is None:
                        return
                    for i, piece in enumerate(pieces):
                        if i:
                            time.sleep(0.05)
                        try:
                            c.sendall(piece)
                        except OSError:  # the gateway gave up on this node
                            return

    def accept():
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            accepted.append(c)
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1], listener.close, accepted


def reply(body):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_a_post_is_not_sent_again_after_a_pooled_connection_fails(gateway):
    # The node answers the first request of each connection and closes on the second without
    # answering: it may have acted on that POST. Sending it again would pay twice.
    posts = []

    def answer(head, nth):
        if head.startswith(b"POST"):
            posts.append(head)
        return [reply(b"ok")] if nth == 0 else None  # acted on it (maybe), no answer, closed
    port, close, _ = serve_raw(answer)
    try:
        gw = gateway({"routes": [route("/*", [(port,)], id="pay")]})
        assert gw.get("/warm").status_code == 200  # leaves a pooled connection
        answer = raw(gw.port, b"POST /pay HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n"
                              b"Connection: close\r\n\r\namount=10")
        assert len(posts) == 1, posts
        assert answer.startswith(b"HTTP/1.1 502"), answer[:100]
    finally:
        close()


@pytest.mark.parametrize("stray", ["after the response", "as the body of a HEAD answer"])
def test_bytes_a_node_sends_between_requests_are_never_read_as_the_next_answer(gateway, stray):
    # A misbehaving node writes more after its response (an extra answer, or a body to HEAD).
    # The pooled connection holding those bytes must not carry the next request: its client
    # would get the stray bytes as its answer.
    def answer(head, nth):
        path = head.split(b" ")[1]
        if head.startswith(b"HEAD"):
            return [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"stray"]
        return [reply(path), reply(b"stray")]
    port, close, accepted = serve_raw(answer)
    try:
        gw = gateway({"routes": [route("/*", [(port,)], id="r")]})
        first = requests.head(gw.url("/first")) if stray.startswith("as") else gw.get("/first")
        assert first.status_code == 200
        for path in ("/second", "/third"):
            time.sleep(0.3)  # the stray bytes are in the pooled connection's socket by now
            r = gw.get(path)
            assert (r.status_code, r.text) == (200, path)
        assert len(accepted) == 3  # each poisoned connection was closed, not reused
    finally:
        close()


def test_route_patterns_the_router_cannot_reach_and_zone_ids_are_config_errors(tmp_path):
    deep = route("/" + "a/" * 70 + "*", [(1,)], id="deep")
    code, out = validate(tmp_path, {"routes": [deep]})
    assert code != 0 and "routes[0].uris[0]: has more than 64 segments" in out, out
    zoned = route("/admin/*", [(1,)], id="admin", remote_addrs=["fe80::1%lo"])
    code, out = validate(tmp_path, {"routes": [zoned]})
    assert code != 0 and "routes[0].remote_addrs" in out, out


def test_interim_responses_trickled_by_a_node_do_not_extend_the_read_timeout(gateway):
    # 100 Continue every 50 ms for 5 s, then the answer: a 1 s read timeout ends it first.
    def answer(head, nth):
        return [b"HTTP/1.1 100 Continue\r\n\r\n"] * 100 + [reply(b"late")]
    port, close, _ = serve_raw(answer)
    try:
        gw = gateway({"routes": [route("/*", [(port,)], id="r",
                                       upstream={"timeout": {"read": 1}, "retries": 0})]})
        r = requests.get(gw.url("/x"), timeout=30)
        assert r.status_code == 504, (r.status_code, r.text)
    finally:
        close()


@pytest.mark.parametrize("framing", [b"Content-Length: 5", b"Transfer-Encoding: chunked"])
def test_a_101_from_the_node_goes_out_without_body_framing(gateway, framing):
    def answer(head, nth):
        return [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" + framing + b"\r\n\r\n"]
    port, close, _ = serve_raw(answer)
    try:
        gw = gateway({"routes": [route("/ws", [(port,)], id="ws", enable_websocket=True)]})
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"sec-websocket-accept" in head.lower()
        assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower()
    finally:
        close()


def test_a_method_rewritten_to_or_from_head_frames_the_answer_by_what_each_side_sent(gateway):
    methods = []

    def answer(head, nth):
        method = head.split(b" ")[0]
        methods.append(method)
        if method == b"HEAD":  # no body, whatever the length says
            return [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"]
        return [reply(b"hello")]
    port, close, accepted = serve_raw(answer)
    try:
        gw = gateway({"routes": [
            route("/to-head", [(port,)], id="to-head", upstream={"timeout": {"read": 2}},
                  plugins={"proxy-rewrite": {"method": "HEAD"}}),
            route("/to-get", [(port,)], id="to-get", plugins={"proxy-rewrite": {"method": "GET"}}),
        ]})
        r = requests.get(gw.url("/to-head"), timeout=10)  # the node sent no body: neither do we
        assert (r.status_code, r.content, methods[-1]) == (200, b"", b"HEAD")
        assert r.headers["content-length"] == "0"  # (not the 5 the client would wait for)
        r = requests.head(gw.url("/to-get"), timeout=10)  # the node's body is not forwarded
        assert (r.status_code, r.headers["content-length"], methods[-1]) == (200, "5", b"GET")
        before = len(accepted)
        r = requests.get(gw.url("/to-head"), timeout=10)
        assert (r.status_code, r.headers["content-length"]) == (200, "0")
        assert len(accepted) == before + 1  # the connection with a body left in it was not reused
    finally:
        close()
