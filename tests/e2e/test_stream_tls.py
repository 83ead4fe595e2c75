"""TLS on stream listeners (`node.stream_listen: [{addr, ssl: true}]`): mobile IM clients speak
TLS to the TCP gateway, the certificate is chosen by SNI from the `ssls` objects, and
stream_routes may match on `sni`. Real TLS clients (Python's ssl) and the demo IM backend."""
import socket
import ssl
import time

import pytest
import requests
import yaml

from conftest import Gateway, free_port, wait_until
from im_demo import im_chat
from test_streams import metrics, stop_gateways, tlv_route  # noqa: F401 (fixture)
from test_tls import ca, client_context, issue, ssl_object, tls_metrics  # noqa: F401 (fixture)

C = im_chat


def tls_stream_gateway(tmp_path, routes, listener=None):
    """A gateway with a plain stream listener (g.stream_port) and a TLS one (g.tls_port)."""
    plain, secure = free_port(), free_port()
    listen = [f"127.0.0.1:{plain}", dict({"addr": f"127.0.0.1:{secure}", "ssl": True},
                                         **(listener or {}))]
    g = Gateway(tmp_path, routes, node={"stream_listen": listen})
    g.stream_port, g.tls_port = plain, secure
    g.start()
    g.wait_port(secure)
    # That probe was a connection that closed before any handshake (or PROXY header): let it be
    # counted before a test reads the counters.
    assert wait_until(lambda: (metrics(g).value("portico_stream_closed_total") or 0) >= 1, 5)
    return g


def im_tls_gateway(tmp_path, ca, backends, stop_gateways):
    """A gateway with a TLS stream listener serving im.test to the demo IM backend "demo1"
    through a tlv route (stopped at teardown)."""
    b = backends("demo1")
    cert = issue(ca, tmp_path, "im.test")
    g = tls_stream_gateway(tmp_path, {"ssls": [ssl_object("s1", cert, ["im.test"])],
                                      "stream_routes": [tlv_route(b)]})
    stop_gateways.append(g)
    return g


def tls_client(g, ca, name, **kw):
    return C.ImClient("127.0.0.1", g.tls_port, tls=client_context(ca), server_name=name, **kw)


def test_tls_and_tcp_users_chat_through_one_tlv_route(tmp_path, ca, backends, stop_gateways):
    g = im_tls_gateway(tmp_path, ca, backends, stop_gateways)
    alice = tls_client(g, ca, "im.test")
    assert alice.sock.getpeercert()["subject"][0][0][1] == "im.test"
    bob = C.ImClient("127.0.0.1", g.stream_port)
    assert alice.login(1001)[1]["server"] == "demo1"
    bob.login(1002)
    seq = alice.chat(1002, "over tls")
    assert alice.wait_for(C.RECEIPT, seq).status == 0
    assert C.decode_chat_message(bob.wait_for(C.CHAT).body)["text"] == "over tls"
    # Big messages both ways (many TLS records, partial frames across reads).
    big = "x" * 60000
    bob.chat(1001, big)
    assert C.decode_chat_message(alice.wait_for(C.CHAT).body)["text"] == big
    alice.chat(1002, big + "!")
    assert C.decode_chat_message(bob.wait_for(C.CHAT).body)["text"] == big + "!"
    # Quiet past the 2 s after which a connection gives its buffers back: it still works.
    time.sleep(2.6)
    seq = alice.send(C.HEARTBEAT, C.encode_heartbeat())
    assert alice.wait_for(C.HEARTBEAT_REPLY, seq)
    bob.chat(1001, "still there?")
    assert C.decode_chat_message(alice.wait_for(C.CHAT).body)["text"] == "still there?"
    assert tls_metrics(g)["ok"] == 1


def test_stream_routes_match_on_sni_before_routes_without(tmp_path, ca, backends, stop_gateways):
    a, b, c = backends("backend-a"), backends("backend-b"), backends("backend-c")
    x = backends("backend-x")
    cert = issue(ca, tmp_path, "a.test", "DNS:b.test", "DNS:x.chat.test", "DNS:y.chat.test",
                 "DNS:other.test")
    routes = {"ssls": [ssl_object("s1", cert, ["a.test", "b.test", "*.chat.test",
                                               "other.test"])],
              "stream_routes": [
                  dict(tlv_route(c), id="any"),  # created first, but names no server
                  dict(tlv_route(a), id="a", sni="a.test"),
                  dict(tlv_route(b), id="chat", sni="*.chat.test"),
                  # created after the wildcard, but names the server exactly: it wins
                  dict(tlv_route(x), id="x", sni="x.chat.test"),
              ]}
    g = tls_stream_gateway(tmp_path, routes)
    stop_gateways.append(g)

    def server(name):
        client = tls_client(g, ca, name)
        try:
            return client.login(1)[1]["server"]
        finally:
            client.close()
    assert server("a.test") == "backend-a"
    assert server("A.TEST") == "backend-a"  # names are case-insensitive
    assert server("y.chat.test") == "backend-b"
    assert server("x.chat.test") == "backend-x"
    assert server("other.test") == "backend-c"
    # A fully qualified name with its trailing dot is the same name.
    dotted = C.ImClient("127.0.0.1", g.tls_port, tls=client_context(ca, check_hostname=False),
                        server_name="a.test.")
    assert dotted.login(1)[1]["server"] == "backend-a"
    dotted.close()
    # A plain connection never matches an sni route.
    plain = C.ImClient("127.0.0.1", g.stream_port)
    assert plain.login(1)[1]["server"] == "backend-c"


def test_a_plain_tcp_route_over_tls(tmp_path, ca, upstream, stop_gateways):
    u = upstream(name="web")
    cert = issue(ca, tmp_path, "tcp.test")
    g = tls_stream_gateway(tmp_path, {
        "ssls": [ssl_object("s1", cert, ["tcp.test"])],
        "stream_routes": [{"id": "tcp", "upstream": {"nodes": {f"127.0.0.1:{u.port}": 1}}}]})
    stop_gateways.append(g)
    raw = socket.create_connection(("127.0.0.1", g.tls_port), timeout=5)
    s = client_context(ca).wrap_socket(raw, server_hostname="tcp.test")
    s.sendall(b"GET /big/300000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(body) == 300000


def test_clients_that_are_not_tls_or_ask_for_unknown_names_are_closed(tmp_path, ca, backends,
                                                                        stop_gateways):
    g = im_tls_gateway(tmp_path, ca, backends, stop_gateways)
    closes_before = metrics(g).value("portico_stream_closed_total", reason="tls_handshake")
    before = tls_metrics(g)
    # A TLV client on the TLS port: closed, and told nothing (no HTTP answer to a TLV client).
    plain = socket.create_connection(("127.0.0.1", g.tls_port), timeout=5)
    plain.sendall(C.encode_frame(C.HEARTBEAT, 1, C.encode_heartbeat()))
    assert plain.recv(100) == b""
    with pytest.raises(ssl.SSLError):
        tls_client(g, ca, "unknown.test")
    assert wait_until(lambda: metrics(g).value("portico_stream_closed_total",
                                               reason="tls_handshake") == closes_before + 2, 3)
    counts = tls_metrics(g)
    assert counts["plain_http"] == before["plain_http"] + 1
    assert counts["unknown_server_name"] == before["unknown_server_name"] + 1
    # The gateway goes on serving.
    assert tls_client(g, ca, "im.test").login(5)[0].status == 0


def test_a_slow_hello_gets_one_handshake_budget_not_two(tmp_path, ca, backends, stop_gateways):
    # 10 s from the connection to a finished handshake, however the hello's bytes trickle in
    # (a client that sends its first byte late does not get another 10 s after it).
    g = im_tls_gateway(tmp_path, ca, backends, stop_gateways)
    raw = socket.create_connection(("127.0.0.1", g.tls_port), timeout=30)
    started = time.monotonic()
    time.sleep(6)
    raw.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00]))  # a handshake record's header, no more
    try:
        assert raw.recv(100) == b""
    except ConnectionResetError:
        pass
    assert time.monotonic() - started < 13
    assert tls_metrics(g)["timeout"] >= 1


def test_proxy_header_then_tls(tmp_path, ca, backends, stop_gateways):
    b = backends("demo1", proxy_protocol=True)
    cert = issue(ca, tmp_path, "im.test")
    route = tlv_route(b, {"send_proxy_protocol": True})
    g = tls_stream_gateway(tmp_path, {"ssls": [ssl_object("s1", cert, ["im.test"])],
                                      "stream_routes": [route]},
                           listener={"proxy_protocol": True})
    stop_gateways.append(g)
    from im_demo import proxy_v2_header
    header = proxy_v2_header("203.0.113.7", 40000)
    client = tls_client(g, ca, "im.test", proxy_header=header)
    assert client.login(7)[1]["seen_addr"] == "203.0.113.7:40000"


def test_certificates_change_without_a_restart(tmp_path, ca, backends, stop_gateways):
    b = backends("demo1")
    old, new = issue(ca, tmp_path, "im.test"), issue(ca, tmp_path, "new.test", "DNS:im.test")
    g = tls_stream_gateway(tmp_path, {"ssls": [ssl_object("s1", old, ["im.test"])],
                                      "stream_routes": [tlv_route(b)]})
    stop_gateways.append(g)
    first = tls_client(g, ca, "im.test")
    first.login(1)
    g.write_routes({"ssls": [ssl_object("s2", new, ["im.test"])], "stream_routes": [tlv_route(b)]})

    def serves_new():
        c = tls_client(g, ca, "im.test")
        try:
            return c.sock.getpeercert()["subject"][0][0][1] == "new.test"
        finally:
            c.close()
    assert wait_until(serves_new, 5)
    seq = first.send(C.HEARTBEAT, C.encode_heartbeat())  # the old connection goes on
    assert first.wait_for(C.HEARTBEAT_REPLY, seq)
