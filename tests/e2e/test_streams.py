"""Stream routes through the real binary: plain TCP proxying and the TLV frame-aware proxy in
front of the demo IM backend (portico-im-demo)."""
import socket
import time

import pytest

import prom_text
from conftest import Gateway, free_port, validate, wait_until
from im_demo import im_chat

C = im_chat


def gateway(tmp_path, stream_routes, upstreams=None, listen=None):
    listen = listen or [f"127.0.0.1:{free_port()}"]
    first = listen[0]["addr"] if isinstance(listen[0], dict) else listen[0]
    g = Gateway(tmp_path, {"stream_routes": stream_routes, "upstreams": upstreams or []},
                node={"stream_listen": listen})
    g.stream_port = port = int(first.rsplit(":", 1)[1])
    g.start()
    g.wait_port(port)
    return g


def tlv_route(backend, conf=None, **extra):
    route = {"id": "im", "upstream": {"nodes": {f"127.0.0.1:{backend.port}": 1}},
             "protocol": {"name": "tlv", "conf": conf or {}}}
    route.update(extra)
    return route


def client(g, **kw):
    return C.ImClient("127.0.0.1", g.stream_port, **kw)


def metrics(g):
    return prom_text.parse(g.control("/metrics").text)


@pytest.fixture
def stop_gateways():
    gs = []
    yield gs
    for g in gs:
        g.stop()


def test_two_users_chat_through_the_gateway(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    g = gateway(tmp_path, [tlv_route(a)])
    stop_gateways.append(g)
    alice, bob = client(g), client(g)
    assert alice.login(1001)[1]["server"] == "backend-a"
    bob.login(1002)
    seq = alice.chat(1002, "hello bob", client_msg_id="m-1")
    assert alice.wait_for(C.RECEIPT, seq).status == 0
    push = bob.wait_for(C.CHAT)
    assert C.decode_chat_message(push.body)["text"] == "hello bob"
    bob.chat(1001, "hi alice")
    assert C.decode_chat_message(alice.wait_for(C.CHAT).body)["text"] == "hi alice"
    m = metrics(g)
    assert m.value("portico_stream_frames_total", direction="to_upstream", cmd="other") >= 4
    assert m.value("portico_stream_connections_active") == 2


def test_plain_tcp_proxy_relays_both_ways_and_half_close(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    g = gateway(tmp_path, [{"id": "raw", "upstream": {"nodes": {f"127.0.0.1:{a.port}": 1}}}])
    stop_gateways.append(g)
    c = client(g)
    assert c.login(1001)[1]["seen_addr"].startswith("127.0.0.1:")
    # Many frames in small pieces arrive whole and in order.
    data = b"".join(C.encode_frame(C.HEARTBEAT, s, C.encode_heartbeat(s)) for s in range(1, 41))
    for i in range(0, len(data), 13):
        c.sock.sendall(data[i:i + 13])
    assert [c.wait_for(C.HEARTBEAT_REPLY).seq for _ in range(40)] == list(range(1, 41))
    # Half-close: the reply to a frame sent just before our FIN still arrives.
    seq = c.send(C.HEARTBEAT, C.encode_heartbeat(1))
    c.sock.shutdown(socket.SHUT_WR)
    assert c.wait_for(C.HEARTBEAT_REPLY, seq).status == 0


def test_rate_limit_answers_excess_frames_locally(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    conf = {"rate_limit": {"per_connection": {"rate": 1, "burst": 2}, "status": 429}}
    g = gateway(tmp_path, [tlv_route(a, conf)])
    stop_gateways.append(g)
    c = client(g)
    seqs = [c.send(C.HEARTBEAT, C.encode_heartbeat(1)) for _ in range(10)]
    replies = [c.wait_for(C.HEARTBEAT_REPLY, s) for s in seqs]
    statuses = [r.status for r in replies]
    assert statuses[:3] == [0, 0, 0] and statuses.count(429) >= 6, statuses
    assert all(r.body == b"" for r in replies if r.status == 429)  # answered at the edge
    m = metrics(g)
    assert m.value("portico_stream_refused_frames_total", reason="rate_limit_connection",
                   action="reply") >= 6
    # A second connection of the same process has its own bucket.
    assert client(g).login(1002)[0].status == 0


def test_per_user_rate_limit_spans_connections_and_can_drop(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    conf = {"rate_limit": {"per_user": {"rate": 0.5, "burst": 0}, "action": "drop"}}
    g = gateway(tmp_path, [tlv_route(a, conf)])
    stop_gateways.append(g)
    c1, c2 = client(g), client(g)
    c1.uid = c2.uid = 77
    s1 = c1.send(C.HEARTBEAT, C.encode_heartbeat(1))
    assert c1.wait_for(C.HEARTBEAT_REPLY, s1).status == 0
    c2.send(C.HEARTBEAT, C.encode_heartbeat(1), seq=500)  # same user, too soon: dropped
    with pytest.raises(socket.timeout):
        c2.wait_for(C.HEARTBEAT_REPLY, 500, timeout=0.5)
    assert metrics(g).value("portico_stream_refused_frames_total", reason="rate_limit_user",
                            action="drop") == 1


def test_denied_cmd_never_reaches_the_backend(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    conf = {"commands": {"deny": ["0x7000-0x7fff"], "status": 403}}
    g = gateway(tmp_path, [tlv_route(a, conf)])
    stop_gateways.append(g)
    c = client(g)
    seq = c.send(0x7001, b"x")
    reply = c.wait_for(0x7002, seq)
    assert reply.status == 403  # the backend would have said 5 (unknown command)
    seq = c.send(0x6001, b"x")
    assert c.wait_for(0x6002, seq).status == 5  # not denied: the backend answers
    m = metrics(g)
    assert m.value("portico_stream_refused_frames_total", reason="command_denied",
                   action="reply") == 1


def test_allow_list_refuses_everything_else(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    conf = {"commands": {"allow": [0x1001, "0x4001", "0x9001"], "status": 7}}
    g = gateway(tmp_path, [tlv_route(a, conf)])
    stop_gateways.append(g)
    c = client(g)
    assert c.login(1001)[0].status == 0
    seq = c.send(0x6001)
    assert c.wait_for(0x6002, seq).status == 7


def test_cmd_routing_reaches_the_right_upstream(tmp_path, backends, stop_gateways):
    a, b = backends("backend-a"), backends("backend-b")
    conf = {"routes": [{"cmds": ["0x9001"], "upstream_id": "hb"}]}
    g = gateway(tmp_path, [tlv_route(a, conf)],
                upstreams=[{"id": "hb", "nodes": {f"127.0.0.1:{b.port}": 1}}])
    stop_gateways.append(g)
    c = client(g)
    assert c.login(1001)[1]["server"] == "backend-a"
    seq = c.send(C.HEARTBEAT, C.encode_heartbeat(5))
    assert C.decode_heartbeat(c.wait_for(C.HEARTBEAT_REPLY, seq).body)["server"] == "backend-b"
    m = metrics(g)
    assert m.value("portico_stream_frames_total", direction="to_upstream", cmd="0x9001") == 1
    assert m.value("portico_stream_frames_total", direction="to_client", cmd="0x9002") == 1


def test_unreachable_sub_route_is_answered_at_the_edge(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    dead = free_port()  # nothing listens there
    conf = {"routes": [{"cmds": ["0x9001"],
                        "upstream": {"nodes": {f"127.0.0.1:{dead}": 1}, "retries": 0}}]}
    g = gateway(tmp_path, [tlv_route(a, conf)])
    stop_gateways.append(g)
    c = client(g)
    assert c.login(1001)[1]["server"] == "backend-a"
    for _ in range(2):  # the first waits for the refused connect, the next is answered at once
        seq = c.send(C.HEARTBEAT, C.encode_heartbeat(5))
        r = c.wait_for(C.HEARTBEAT_REPLY, seq)
        assert r.status == 503 and r.body == b""
    # the connection and its own upstream keep working
    assert c.login(1001)[1]["server"] == "backend-a"
    assert metrics(g).value("portico_stream_upstream_connect_failures_total") >= 1


def test_cmd_routing_hash_on_to_picks_a_stable_node(tmp_path, backends, stop_gateways):
    a, b, c_ = backends("backend-a"), backends("backend-b"), backends("backend-c")
    conf = {"routes": [{"cmds": ["0x9001"], "hash_on": "to",
                        "upstream": {"type": "chash", "key": "remote_addr",
                                     "nodes": {f"127.0.0.1:{b.port}": 1,
                                               f"127.0.0.1:{c_.port}": 1}}}]}
    g = gateway(tmp_path, [tlv_route(a, conf)])
    stop_gateways.append(g)
    seen = {}
    for to in range(1, 9):
        servers = set()
        for _ in range(2):
            cl = client(g)
            seq = cl.send(C.HEARTBEAT, C.encode_heartbeat(1), to_uid=to)
            servers.add(C.decode_heartbeat(cl.wait_for(C.HEARTBEAT_REPLY, seq).body)["server"])
            cl.close()
        assert len(servers) == 1  # the same user id always lands on the same node
        seen[to] = servers.pop()
    assert set(seen.values()) <= {"backend-b", "backend-c"}


def test_hash_on_to_needs_a_chash_upstream(tmp_path):
    # Another balancer would ignore the user id: a backend connection per id, up to the cap.
    conf = {"routes": [{"cmds": ["0x9001"], "hash_on": "to",
                        "upstream": {"nodes": {"127.0.0.1:1": 1, "127.0.0.1:2": 1}}}]}
    doc = {"stream_routes": [{"id": "im", "upstream": {"nodes": {"127.0.0.1:3": 1}},
                              "protocol": {"name": "tlv", "conf": conf}}]}
    code, out = validate(tmp_path, doc)
    assert code != 0
    assert ('stream_routes[0].protocol.conf.routes[0].hash_on: "to" needs a chash upstream'
            in out), out


def test_heartbeat_answered_locally(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    conf = {"heartbeat": {"cmd": "0x9001", "answer_locally": True}}
    g = gateway(tmp_path, [tlv_route(a, conf)])
    stop_gateways.append(g)
    c = client(g)
    seq = c.send(C.HEARTBEAT, C.encode_heartbeat(1), seq=4242)
    r = c.wait_for(C.HEARTBEAT_REPLY, seq)
    assert r.status == 0 and r.seq == 4242 and r.body == b""  # the backend would fill a body
    assert metrics(g).value("portico_stream_heartbeats_answered_total") == 1


def test_silent_connection_is_closed_after_idle_timeout(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    g = gateway(tmp_path, [tlv_route(a, {"idle_timeout": 1, "stall_timeout": 0.5})])
    stop_gateways.append(g)
    quiet, stalled = client(g), client(g)
    stalled.sock.sendall(C.encode_frame(C.HEARTBEAT, 1)[:10])
    assert stalled.recv(timeout=5) is None
    assert quiet.recv(timeout=5) is None
    m = metrics(g)
    assert m.value("portico_stream_closed_total", reason="stalled") == 1
    assert m.value("portico_stream_closed_total", reason="idle_timeout") == 1


def test_dead_node_new_connections_go_to_the_other(tmp_path, backends, stop_gateways):
    a, b = backends("backend-a"), backends("backend-b")
    route = {"id": "im", "protocol": {"name": "tlv"},
             "upstream": {"nodes": {f"127.0.0.1:{a.port}": 1, f"127.0.0.1:{b.port}": 1},
                          "timeout": {"connect": 1}}}
    g = gateway(tmp_path, [route])
    stop_gateways.append(g)
    servers = {client(g).login(1000 + i)[1]["server"] for i in range(4)}
    assert servers == {"backend-a", "backend-b"}
    a.stop()
    for i in range(6):
        assert client(g).login(2000 + i)[1]["server"] == "backend-b"
    assert metrics(g).value("portico_stream_upstream_connect_failures_total") >= 1


def test_proxy_protocol_v2_reaches_the_backend(tmp_path, backends, stop_gateways):
    a = backends("backend-pp", proxy_protocol=True)
    g = gateway(tmp_path, [tlv_route(a, {"send_proxy_protocol": True})])
    stop_gateways.append(g)
    c = client(g)
    frame, reply = c.login(1001)
    assert frame.status == 0
    assert reply["seen_addr"] == "127.0.0.1:%d" % c.sock.getsockname()[1]


def test_proxy_protocol_listener_address_is_passed_on(tmp_path, backends, stop_gateways):
    from im_demo import proxy_v2_header
    a = backends("backend-pp", proxy_protocol=True)
    port = free_port()
    g = gateway(tmp_path, [tlv_route(a, {"send_proxy_protocol": True})],
                listen=[{"addr": f"127.0.0.1:{port}", "proxy_protocol": True}])
    stop_gateways.append(g)
    c = C.ImClient("127.0.0.1", port, proxy_header=proxy_v2_header("203.0.113.9", 5555))
    assert c.login(1001)[1]["seen_addr"] == "203.0.113.9:5555"


def test_corrupt_frames_close_only_the_offending_connection(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    g = gateway(tmp_path, [tlv_route(a, {"framing": {"max_body": "1k"}})])
    stop_gateways.append(g)
    good = client(g)
    good.login(1001)
    bad_start, bad_end, oversize = client(g), client(g), client(g)
    bad_start.sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    frame = bytearray(C.encode_frame(C.HEARTBEAT, 1, b"abc"))
    frame[-1] = 0x0B
    bad_end.sock.sendall(bytes(frame))
    oversize.sock.sendall(C.encode_frame(C.HEARTBEAT, 1, b"x" * 2000))
    for c in (bad_start, bad_end, oversize):
        assert c.recv(timeout=5) is None
    seq = good.send(C.HEARTBEAT, C.encode_heartbeat(1))
    assert good.wait_for(C.HEARTBEAT_REPLY, seq).status == 0
    m = metrics(g)
    for reason in ("bad_start_marker", "bad_end_marker", "oversize"):
        assert m.value("portico_stream_closed_total", reason=reason) == 1, reason


def test_route_change_applies_to_new_connections_only(tmp_path, backends, stop_gateways):
    a, b = backends("backend-a"), backends("backend-b")
    g = gateway(tmp_path, [tlv_route(a)])
    stop_gateways.append(g)
    old = client(g)
    assert old.login(1001)[1]["server"] == "backend-a"
    g.write_routes({"stream_routes": [tlv_route(b)]})

    def new_goes_to_b():
        return client(g).login(1002)[1]["server"] == "backend-b"
    assert wait_until(new_goes_to_b, timeout=10)
    seq = old.send(C.HEARTBEAT, C.encode_heartbeat(1))
    assert C.decode_heartbeat(old.wait_for(C.HEARTBEAT_REPLY, seq).body)["server"] == "backend-a"


def test_no_matching_route_closes_and_server_port_selects(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    p1, p2 = free_port(), free_port()
    g = gateway(tmp_path, [tlv_route(a, server_port=p1)],
                listen=[f"127.0.0.1:{p1}", f"127.0.0.1:{p2}"])
    stop_gateways.append(g)
    assert C.ImClient("127.0.0.1", p1).login(1)[0].status == 0
    assert C.ImClient("127.0.0.1", p2).recv(timeout=5) is None
    assert metrics(g).value("portico_stream_closed_total", reason="no_route") == 1


def test_stream_route_plugins_ip_restriction_and_limit_conn(tmp_path, backends, stop_gateways):
    a = backends("backend-a")
    g = gateway(tmp_path, [
        tlv_route(a, plugins={"limit-conn": {"conn": 1, "burst": 1, "default_conn_delay": 2}}),
    ])
    stop_gateways.append(g)
    # the start-up probe of the stream port was a connection too: wait until it is gone
    assert wait_until(lambda: metrics(g).value("portico_stream_connections_active") == 0)
    started = time.monotonic()
    first = client(g)
    assert first.login(1001)[1]["server"] == "backend-a"
    # within conn: not delayed (the margin is for a loaded machine, the delay is 2 s)
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    second = client(g)  # over conn, within burst: waits default_conn_delay, then served
    assert second.login(1002)[1]["server"] == "backend-a"
    assert time.monotonic() - started >= 1.9
    third = client(g)  # past conn + burst for 127.0.0.1: closed at once
    assert third.recv(timeout=5) is None
    first.close()  # its slot is free again (once the gateway has seen the close)

    def logs_in():
        try:
            return client(g).login(1003)[1]["server"] == "backend-a"
        except EOFError:
            return False
    assert wait_until(logs_in, timeout=5)
    m = metrics(g)
    assert m.value("portico_stream_closed_total", reason="conn_limited") >= 1

    # ip-restriction: a whitelist without loopback refuses us; errors name the field
    g.write_routes({"stream_routes": [tlv_route(a, plugins={
        "ip-restriction": {"whitelist": ["10.0.0.0/8"]}})]})
    assert wait_until(lambda: client(g).recv(timeout=2) is None, timeout=5)
    g.write_routes({"stream_routes": [tlv_route(a, plugins={
        "ip-restriction": {"whitelist": ["not-an-ip"]}, "syslog": {}})]})
    g.wait_log("stream_routes[0].plugins.ip-restriction.whitelist")
    assert "stream_routes[0].plugins.syslog: unknown stream plugin" in g.error_log()


def test_stream_route_written_through_the_admin_api_in_etcd_mode(tmp_path, etcd, backends,
                                                                  stop_gateways):
    a = backends("backend-a")
    port = free_port()
    g = Gateway(tmp_path, None, node={"stream_listen": [f"127.0.0.1:{port}"]}, etcd=etcd)
    g.stream_port = port
    g.start()
    stop_gateways.append(g)
    r = g.admin("PUT", "/stream_routes/im", tlv_route(a, {"heartbeat": {"cmd": "0x9001"}}))
    assert r.status_code == 201, r.text
    bad = tlv_route(a, {"rate_limit": {"per_connection": {"rate": -1, "burst": 0}}}, id="bad")
    r = g.admin("PUT", "/stream_routes/bad", bad)
    assert r.status_code == 400 and "protocol.conf.rate_limit" in r.json()["error_msg"]

    def logs_in():
        try:
            return client(g).login(1001)[1]["server"] == "backend-a"
        except (EOFError, OSError):
            return False
    assert wait_until(logs_in, timeout=5)
    assert g.admin("DELETE", "/stream_routes/im").status_code == 200
    assert wait_until(lambda: not logs_in(), timeout=5)  # new connections find no route


def test_least_conn_balances_connections_by_how_many_are_open(tmp_path, backends, stop_gateways):
    """IM connections last hours: least_conn counts each on its node until it closes, so new
    ones go where fewer are open (round robin would alternate regardless)."""
    a, c = backends("node-a"), backends("node-c")
    route = tlv_route(a)
    route["upstream"] = {"type": "least_conn",
                         "nodes": {f"127.0.0.1:{a.port}": 1, f"127.0.0.1:{c.port}": 1}}
    g = gateway(tmp_path, [route])
    stop_gateways.append(g)
    assert wait_until(lambda: metrics(g).value("portico_stream_connections_active") == 0)
    clients = []
    for uid in range(1, 5):
        cl = client(g)
        clients.append((cl, cl.login(uid)[1]["server"]))
    assert sorted(server for _, server in clients) == ["node-a", "node-a", "node-c", "node-c"]
    for cl, server in clients:
        if server == "node-a":
            cl.close()
    assert wait_until(lambda: metrics(g).value("portico_stream_connections_active") == 2)
    assert [client(g).login(uid)[1]["server"] for uid in (5, 6)] == ["node-a", "node-a"]


def test_least_conn_counts_survive_an_unrelated_config_change(tmp_path, etcd, backends,
                                                              stop_gateways):
    """The stream route's inline upstream is not compiled again when another object changes:
    its least_conn counts of the open connections (hours-long IM sessions) carry over."""
    a, c = backends("node-a"), backends("node-c")
    port = free_port()
    g = Gateway(tmp_path, None, node={"stream_listen": [f"127.0.0.1:{port}"]}, etcd=etcd)
    g.stream_port = port
    g.start()
    stop_gateways.append(g)
    route = tlv_route(a)
    route["upstream"] = {"type": "least_conn",  # a list: node-a is the first node
                         "nodes": [{"host": "127.0.0.1", "port": a.port, "weight": 1},
                                   {"host": "127.0.0.1", "port": c.port, "weight": 1}]}
    assert g.admin("PUT", "/stream_routes/im", route).status_code == 201

    def logs_in():
        try:
            cl = client(g)
            cl.login(99)
            cl.close()
            return True
        except (EOFError, OSError):
            return False
    assert wait_until(logs_in, timeout=5)
    assert wait_until(lambda: metrics(g).value("portico_stream_connections_active") == 0)
    # One connection on each node, then the one on node-c closes: node-c has fewer (0 to 1).
    # A target compiled anew would count 0 and 0, and its first pick is the first node.
    first, second = client(g), client(g)
    on = {first.login(1)[1]["server"]: first, second.login(2)[1]["server"]: second}
    assert sorted(on) == ["node-a", "node-c"], on
    on["node-c"].close()
    assert wait_until(lambda: metrics(g).value("portico_stream_connections_active") == 1)
    # another object changes: the config is built again
    assert g.admin("PUT", "/upstreams/other", {"nodes": {"127.0.0.1:9": 1}}).status_code == 201
    rev = etcd.revision()
    assert wait_until(lambda: metrics(g).value("portico_config_revision") >= rev)
    assert client(g).login(10)[1]["server"] == "node-c"


def test_a_node_added_to_scale_out_gets_the_new_connections(tmp_path, backends, stop_gateways):
    """The upstream is compiled anew when a node is added; it must still see the connections
    open on the old node (hours-long IM sessions), or least_conn spreads the new ones evenly
    and the new node never catches up."""
    a, c = backends("node-a"), backends("node-c")
    route = tlv_route(a)
    route["upstream"] = {"type": "least_conn",
                         "nodes": [{"host": "127.0.0.1", "port": a.port, "weight": 1}]}
    g = gateway(tmp_path, [route])
    stop_gateways.append(g)
    old = [client(g) for _ in range(3)]
    assert [cl.login(uid)[1]["server"] for uid, cl in enumerate(old, 1)] == ["node-a"] * 3
    route["upstream"]["nodes"].append({"host": "127.0.0.1", "port": c.port, "weight": 1})
    g.write_routes({"stream_routes": [route], "upstreams": []})
    g.wait_log("config reloaded")
    new = [client(g) for _ in range(3)]
    assert [cl.login(uid)[1]["server"] for uid, cl in enumerate(new, 4)] == ["node-c"] * 3
    sessions = {n["address"]: n["sessions"]
                for n in g.control("/v1/healthcheck").json()["upstreams"][0]["nodes"]}
    assert sessions == {f"127.0.0.1:{a.port}": 3, f"127.0.0.1:{c.port}": 3}
