"""tlv-bridge through the real binary: browser-like WebSocket clients (the websockets library)
whose sessions the gateway terminates and bridges to the demo IM backend (portico-im-demo) as
TLV frames. JSON envelopes and raw binary frames, refused envelopes, the handshake, a missing or
dying backend, the PROXY header, config errors, and the Admin API in etcd mode."""
import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import prom_text
import pytest
import requests
import websockets
import yaml
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

from conftest import free_port, inline_upstream, validate, wait_until
from im_demo import im_chat

C = im_chat

PROTO = open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "../../conf/im_demo.proto")).read()
TYPES = {"0x1001": "portico.im_demo.LoginRequest", "0x1002": "LoginReply",
         "0x4001": "ChatMessage", "0x4002": "Receipt",
         "0x9001": "Heartbeat", "0x9002": "Heartbeat"}
LOGIN, LOGIN_REPLY, CHAT, RECEIPT = 0x1001, 0x1002, 0x4001, 0x4002
HEARTBEAT, HEARTBEAT_REPLY = 0x9001, 0x9002
PATH = "/im/ws"
HANDSHAKE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
GOOD_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example: base64 of 16 bytes


def bridge_route(port, **conf):
    plugin = {"proto_id": "im", "types": TYPES}
    plugin.update(conf)
    return {"id": "webim", "uri": PATH, "upstream": inline_upstream(port),
            "plugins": {"tlv-bridge": plugin}}


def bridge_config(port, **conf):
    """routes.yaml: the demo proto and one bridge route to 127.0.0.1:port."""
    return {"protos": [{"id": "im", "content": PROTO}], "routes": [bridge_route(port, **conf)]}


def ws_url(gw):
    return f"ws://127.0.0.1:{gw.port}{PATH}"


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def recv(ws, timeout=5):
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_json(ws, timeout=5):
    message = await recv(ws, timeout)
    assert isinstance(message, str), f"expected a text message, got {message!r}"
    return json.loads(message)


async def send_json(ws, envelope):
    await ws.send(json.dumps(envelope))


async def login(ws, uid, id=1, token="t"):
    await send_json(ws, {"id": id, "cmd": LOGIN, "data": {"uid": uid, "token": token}})
    reply = await recv_json(ws)
    assert reply["cmd"] == LOGIN_REPLY and reply["id"] == id, reply
    return reply


async def closed(ws, timeout=5):
    """Waits for the server to close the WebSocket; (close code, reason)."""
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(ws, timeout)
    return ws.close_code, ws.close_reason


def heartbeat_answered(gw):
    """True when a new session through the bridge gets its heartbeat answered."""
    async def talk():
        async with websockets.connect(ws_url(gw), open_timeout=3) as ws:
            await send_json(ws, {"id": 9, "cmd": HEARTBEAT, "data": {"sent_at": 1}})
            reply = await recv_json(ws)
            return reply["cmd"] == HEARTBEAT_REPLY and reply["status"] == 0
    try:
        return run(talk(), 10)
    except (websockets.WebSocketException, asyncio.TimeoutError):
        return False


# ---------------------------------------------------------------------------------------------
# JSON envelopes


def test_two_users_chat_in_json_through_the_bridge(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))

    async def talk():
        async with websockets.connect(ws_url(gw)) as alice, \
                websockets.connect(ws_url(gw)) as bob:
            reply = await login(alice, 1)
            assert reply["status"] == 0 and reply["to"] == 1
            assert reply["data"]["uid"] == 1 and reply["data"]["server"] == "demo1"
            assert (await login(bob, 2))["data"]["uid"] == 2
            await send_json(alice, {"id": 7, "cmd": CHAT, "from": 1, "to": 2,
                                    "data": {"to": 2, "text": "hi bob", "client_msg_id": "m1"}})
            receipt = await recv_json(alice)
            assert receipt["cmd"] == RECEIPT and receipt["id"] == 7 and receipt["status"] == 0
            assert receipt["data"]["result"] == "OK" and receipt["data"]["client_msg_id"] == "m1"
            assert receipt["data"]["server_msg_id"] > 0
            push = await recv_json(bob)
            assert push["cmd"] == CHAT and push["from"] == 1 and push["to"] == 2
            assert push["data"]["text"] == "hi bob" and push["data"]["from"] == 1
            assert push["data"]["server_msg_id"] == receipt["data"]["server_msg_id"]
            # and back
            await send_json(bob, {"id": 8, "cmd": CHAT, "to": 1, "data": {"to": 1, "text": "yo"}})
            assert (await recv_json(bob))["data"]["result"] == "OK"
            back = await recv_json(alice)
            assert back["cmd"] == CHAT and back["data"]["text"] == "yo" and back["data"]["from"] == 2
    run(talk())


BAD_ENVELOPES = [
    # (message, id, cmd of the answer, start of the error)
    ("not json", 0, 0, "expected a JSON object"),
    (json.dumps({"id": 2, "cmd": HEARTBEAT, "colour": "red"}), 2, HEARTBEAT_REPLY,
     "colour: unknown field"),
    (json.dumps({"id": 3, "cmd": CHAT, "data": {"to": "x"}}), 3, RECEIPT,
     'data.to: expected an unsigned 64-bit integer, got "x"'),
    (json.dumps({"id": 4, "cmd": LOGIN, "data": {"uid": 1, "nickname": "n"}}), 4, LOGIN_REPLY,
     "data.nickname: unknown field"),
    (json.dumps({"id": 5, "cmd": 0x7001, "data": {"a": 1}}), 5, 0x7002,
     "data: no message type is configured for cmd 28673"),
]


def test_bad_envelopes_get_an_error_envelope_and_the_session_goes_on(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))

    async def talk():
        async with websockets.connect(ws_url(gw)) as ws:
            for message, id, cmd, error in BAD_ENVELOPES:
                await ws.send(message)
                answer = await recv_json(ws)
                assert answer["id"] == id and answer["cmd"] == cmd, (message, answer)
                assert answer["status"] == 400, answer
                assert answer["error"].startswith(error), (message, answer)
            await send_json(ws, {"id": 6, "cmd": HEARTBEAT, "data": {"sent_at": 1234}})
            reply = await recv_json(ws)
            assert reply["cmd"] == HEARTBEAT_REPLY and reply["id"] == 6 and reply["status"] == 0
            assert reply["data"] == {"sent_at": 1234, "server": "demo1"}
    run(talk())


def test_large_64_bit_values_travel_as_strings_and_enums_as_names(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))
    big = 2 ** 60 + 1  # a JavaScript number would round it

    async def talk():
        async with websockets.connect(ws_url(gw)) as ws:
            await send_json(ws, {"id": 1, "cmd": HEARTBEAT, "data": {"sent_at": big}})
            assert (await recv_json(ws))["data"]["sent_at"] == str(big)
            await send_json(ws, {"id": 2, "cmd": HEARTBEAT, "data": {"sent_at": str(-big)}})
            assert (await recv_json(ws))["data"]["sent_at"] == str(-big)
            await send_json(ws, {"id": 3, "cmd": HEARTBEAT, "data": {"sent_at": 2 ** 53}})
            assert (await recv_json(ws))["data"]["sent_at"] == 2 ** 53  # still a number
            # enums by name: a refused login and a message to nobody
            refused = await login(ws, 5, id=4, token="")
            assert refused["status"] == 1 and refused["data"]["result"] == "BAD_TOKEN"
            assert (await login(ws, 5, id=5))["data"]["result"] == "OK"
            await send_json(ws, {"id": 6, "cmd": CHAT, "data": {"to": 4242, "text": "anyone?"}})
            receipt = await recv_json(ws)
            assert receipt["status"] == 3 and receipt["data"]["result"] == "RECEIVER_OFFLINE"
    run(talk())


def test_fragmented_text_message_and_ping(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))

    async def talk():
        async with websockets.connect(ws_url(gw), ping_interval=None) as ws:
            await ws.send(['{"id": 11, "cmd": 36865, ', '"data": {"sent_at": ', '77}}'])
            reply = await recv_json(ws)
            assert reply["cmd"] == HEARTBEAT_REPLY and reply["id"] == 11
            assert reply["data"]["sent_at"] == 77
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)
            assert (await login(ws, 3, id=12))["data"]["uid"] == 3  # still in step
    run(talk())


# ---------------------------------------------------------------------------------------------
# binary mode


def test_binary_messages_are_raw_tlv_frames_both_ways(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))

    async def talk():
        async with websockets.connect(ws_url(gw)) as ws:
            await ws.send(C.encode_frame(LOGIN, 7, C.encode_login_request(1001), from_uid=1001))
            message = await recv(ws)
            assert isinstance(message, bytes), message
            frames, rest = C.decode_frames(message)
            assert rest == b"" and len(frames) == 1
            f = frames[0]
            assert (f.cmd, f.seq, f.status, f.to_uid) == (LOGIN_REPLY, 7, 0, 1001)
            assert C.decode_login_reply(f.body)["server"] == "demo1"
            # two frames in one binary message: both reach the backend, answers come as binary
            await ws.send(C.encode_frame(HEARTBEAT, 8, C.encode_heartbeat(8)) +
                          C.encode_frame(HEARTBEAT, 9, C.encode_heartbeat(9)))
            got = b""
            while len(C.decode_frames(got)[0]) < 2:
                message = await recv(ws)
                assert isinstance(message, bytes), message
                got += message
            frames, rest = C.decode_frames(got)
            assert rest == b"" and [(f.cmd, f.seq) for f in frames] == \
                [(HEARTBEAT_REPLY, 8), (HEARTBEAT_REPLY, 9)]
            assert C.decode_heartbeat(frames[1].body) == {"sent_at": 9, "server": "demo1"}
            # a text message again: answers are JSON again
            await send_json(ws, {"id": 10, "cmd": HEARTBEAT, "data": {"sent_at": 10}})
            assert (await recv_json(ws))["id"] == 10
    run(talk())


def test_corrupt_binary_frame_closes_with_1007_and_spares_other_sessions(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))

    async def talk():
        async with websockets.connect(ws_url(gw)) as good, websockets.connect(ws_url(gw)) as bad:
            frame = bytearray(C.encode_frame(HEARTBEAT, 1, C.encode_heartbeat(1)))
            frame[0] = 0x08  # not the start marker
            await bad.send(bytes(frame))
            code, reason = await closed(bad)
            assert code == 1007, (code, reason)
            assert "start_marker" in reason, reason
            await good.send(C.encode_frame(HEARTBEAT, 2, C.encode_heartbeat(2)))
            frames, _ = C.decode_frames(await recv(good))
            assert [(f.cmd, f.seq) for f in frames] == [(HEARTBEAT_REPLY, 2)]
    run(talk())


# ---------------------------------------------------------------------------------------------
# the handshake, and the backend's absence or death


def test_plain_get_and_bad_websocket_key_get_400(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))
    r = gw.get(PATH)
    assert r.status_code == 400
    assert "WebSocket" in r.json()["error_msg"], r.text
    r = gw.get(PATH, headers=dict(HANDSHAKE, **{"Sec-WebSocket-Key": "not-sixteen-bytes"}))
    assert r.status_code == 400
    assert "Sec-WebSocket-Key" in r.json()["error_msg"], r.text
    # the same handshake with a good key is accepted
    r = gw.get(PATH, headers=dict(HANDSHAKE, **{"Sec-WebSocket-Key": GOOD_KEY}))
    assert r.status_code == 101
    assert r.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_no_backend_listening_refuses_the_handshake_with_502(gateway):
    gw = gateway(bridge_config(free_port()))  # nothing listens there

    async def talk():
        async with websockets.connect(ws_url(gw), open_timeout=10):
            pass
    with pytest.raises(InvalidStatusCode) as e:
        run(talk())
    assert e.value.status_code == 502
    r = gw.get(PATH, headers=dict(HANDSHAKE, **{"Sec-WebSocket-Key": GOOD_KEY}))
    assert r.status_code == 502 and "backend" in r.json()["error_msg"], r.text


def test_backend_death_closes_the_websocket_with_1001(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))

    async def talk():
        async with websockets.connect(ws_url(gw)) as ws:
            assert (await login(ws, 1))["status"] == 0
            b.stop()
            code, reason = await closed(ws)
            assert code == 1001, (code, reason)
    run(talk())


def test_proxy_protocol_tells_the_backend_the_websocket_client_address(gateway, backends):
    b = backends("demo-pp", proxy_protocol=True)
    gw = gateway(bridge_config(b.port, send_proxy_protocol=True))

    async def talk():
        async with websockets.connect(ws_url(gw)) as ws:
            reply = await login(ws, 1)
            assert reply["status"] == 0, reply
            host, port = ws.local_address[:2]
            assert reply["data"]["seen_addr"] == f"{host}:{port}"
    run(talk())


# ---------------------------------------------------------------------------------------------
# configuration


BAD_CONFIGS = [
    ("unknown_proto", {"proto_id": "nope"},
     'routes[0].plugins.tlv-bridge.proto_id: unknown proto "nope"'),
    ("unknown_type", {"types": dict(TYPES, **{"0x4001": "NoSuchMessage"})},
     "routes[0].plugins.tlv-bridge.types: "),
    ("bad_content", {}, "protos[0].content: line 3:"),
    ("same_cmd_twice", {"types": {"0x1001": "LoginRequest", "4097": "LoginReply"}},
     "routes[0].plugins.tlv-bridge.types.4097: names cmd 4097 a second time"),
    ("bad_cmd_key", {"types": {"login": "LoginRequest"}},
     "routes[0].plugins.tlv-bridge.types.login: the key must be a command"),
]


@pytest.mark.parametrize("case,conf,expected", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_validate_names_the_field_of_bridge_config_errors(tmp_path, case, conf, expected):
    rc, out = validate(tmp_path, bridge_config(1980))
    assert rc == 0, out  # the good config passes
    doc = bridge_config(1980, **conf)
    if case == "bad_content":
        doc["protos"][0]["content"] = 'syntax = "proto3";\nmessage A {\n  int32 a = ;\n}\n'
    rc, out = validate(tmp_path, doc)
    assert rc != 0
    assert expected in out, out
    if case == "unknown_type":
        assert "NoSuchMessage" in out, out


def test_admin_api_protos_and_a_bridge_route(etcd, gateway, backends):
    b = backends("demo1")
    gw = gateway(etcd=etcd)
    r = gw.admin("PUT", "/routes/webim", bridge_route(b.port))
    assert r.status_code == 400 and "proto_id" in r.json()["error_msg"], r.text  # no proto yet
    r = gw.admin("PUT", "/protos/im", {"content": PROTO})
    assert r.status_code == 201, r.text
    r = gw.admin("PUT", "/routes/webim", bridge_route(b.port))
    assert r.status_code == 201, r.text
    assert wait_until(lambda: heartbeat_answered(gw), timeout=10)

    r = gw.admin("DELETE", "/protos/im")
    assert 400 <= r.status_code < 500, r.text
    assert "webim" in r.json()["error_msg"], r.text
    assert gw.admin("GET", "/protos/im").status_code == 200
    assert heartbeat_answered(gw)

    # A new version of the proto that loses a message the route binds would leave it out.
    r = gw.admin("PUT", "/protos/im", {"content": PROTO.replace("ChatMessage", "ChatMsg")})
    assert r.status_code == 400, r.text
    assert r.json()["error_msg"].startswith(
        "invalid configuration: routes/webim.plugins.tlv-bridge.types: "), r.text
    assert 'leave route "webim" out' in r.json()["error_msg"], r.text
    assert "ChatMessage" in gw.admin("GET", "/protos/im").json()["value"]["content"]
    assert heartbeat_answered(gw)

    r = gw.admin("PUT", "/protos/bad", {"content": 'syntax = "proto3";\nmessage A { int32 a = ; }'})
    assert r.status_code == 400, r.text
    assert "content" in r.json()["error_msg"] and "line 2" in r.json()["error_msg"], r.text
    assert gw.admin("GET", "/protos/bad").status_code == 404


DEFAULT_ROUTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../conf/routes.yaml")
WEB_CHAT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../demo/im_web_chat.py")


def default_webim(backend_port):
    """The `make run` config's protos and web IM route, aimed at `backend_port`."""
    with open(DEFAULT_ROUTES) as f:
        doc = yaml.safe_load(f)
    route = next(r for r in doc["routes"] if r["id"] == "webim")
    route["upstream"]["nodes"] = {f"127.0.0.1:{backend_port}": 1}
    return {"protos": doc["protos"], "routes": [route]}


def test_default_routes_carry_the_demo_proto_unchanged():
    with open(DEFAULT_ROUTES) as f:
        doc = yaml.safe_load(f)
    assert [p["content"] for p in doc["protos"] if p["id"] == "im_demo"] == [PROTO]


@pytest.mark.parametrize("transport", ["websocket", "poll"])
def test_web_chat_cli_and_a_tcp_user_chat_through_the_default_route(gateway, backends, transport):
    b = backends("demo1")
    gw = gateway(default_webim(b.port), workers=2)
    tcp_user = b.client()
    tcp_user.login(1001)
    extra = ["--poll"] if transport == "poll" else []
    cli = subprocess.Popen([sys.executable, WEB_CHAT, "--url", ws_url(gw),
                            "--uid", "1002"] + extra,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert "logged in as 1002 on demo1 via the bridge" in cli.stdout.readline()
        cli.stdin.write("1001 hello from the browser\n")
        cli.stdin.flush()
        push = tcp_user.wait_for(C.CHAT)
        assert C.decode_chat_message(push.body)["text"] == "hello from the browser"
        assert C.decode_chat_message(push.body)["from"] == 1002
        assert "OK msg" in cli.stdout.readline()  # its receipt, converted from 0x4002
        tcp_user.chat(1002, "hi from tcp")
        assert cli.stdout.readline().strip() == "<1001> hi from tcp"
    finally:
        cli.stdin.close()
        cli.wait(10)


# --- HTTP RPC: a POST of one envelope, answered with the backend's reply ----------------------

def rpc_url(gw):
    return f"http://127.0.0.1:{gw.port}{PATH}"


def test_http_rpc_answers_with_the_backend_reply_on_a_kept_alive_connection(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))
    with requests.Session() as s:
        r = s.post(rpc_url(gw), json={"id": 5, "cmd": LOGIN, "data": {"uid": 7, "token": "x"}})
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
        reply = r.json()
        assert reply["cmd"] == LOGIN_REPLY and reply["id"] == 5 and reply["to"] == 7
        assert reply["data"] == {"result": "OK", "uid": 7, "server": "demo1",
                                 "seen_addr": reply["data"]["seen_addr"]}
        r = s.post(rpc_url(gw), json={"id": 6, "cmd": HEARTBEAT, "data": {"sent_at": 2**60}})
        assert r.status_code == 200
        assert r.json()["data"] == {"sent_at": str(2**60), "server": "demo1"}
        assert r.headers.get("Connection", "").lower() != "close"
    m = prom_text.parse(gw.control("/metrics").text)
    assert m.value("portico_tlv_bridge_rpc_replies_total") == 2


def connections(backend_log):
    """How many connections the demo backend's log (ImDemoBackend.stop()) saw opened."""
    return sum(line.endswith(" connected") for line in backend_log.splitlines())


def test_http_rpc_keepalive_reuses_backend_connections(gateway, backends):
    b = backends("demo-ka")
    gw = gateway(bridge_config(b.port, rpc_keepalive=True), workers=1)
    for i in range(6):  # each on a new client connection
        r = requests.post(rpc_url(gw), json={"id": i, "cmd": HEARTBEAT, "data": {"sent_at": i}})
        assert r.status_code == 200 and r.json()["id"] == i
    # The backend goes away and comes back on the same port: the pooled connection it closed is
    # not used; the next call gets a new one.
    port = b.port
    first_log = b.stop()
    assert connections(first_log) == 1, first_log
    b2 = backends("demo-ka2", port=port)
    r = requests.post(rpc_url(gw), json={"id": 9, "cmd": HEARTBEAT, "data": {"sent_at": 9}})
    assert r.status_code == 200 and r.json()["data"]["server"] == "demo-ka2"
    # Without the option, every call has its own connection.
    gw2 = gateway(bridge_config(b2.port), workers=1)
    for i in range(3):
        requests.post(rpc_url(gw2), json={"id": i, "cmd": HEARTBEAT, "data": {"sent_at": i}})
    assert connections(b2.stop()) == 1 + 3
    # keepalive_pool.requests bounds the calls one connection carries.
    b3 = backends("demo-ka3")
    config = bridge_config(b3.port, rpc_keepalive=True)
    config["routes"][0]["upstream"]["keepalive_pool"] = {"requests": 2}
    gw3 = gateway(config, workers=1)
    for i in range(6):
        r = requests.post(rpc_url(gw3), json={"id": i, "cmd": HEARTBEAT, "data": {"sent_at": i}})
        assert r.status_code == 200
    assert connections(b3.stop()) == 3


def test_http_rpc_keepalive_and_proxy_protocol_do_not_go_together(tmp_path):
    rc, out = validate(tmp_path, bridge_config(1980, rpc_keepalive=True, send_proxy_protocol=True))
    assert rc != 0 and "rpc_keepalive" in out and "send_proxy_protocol" in out


def test_http_rpc_refusals(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port, max_message="4k"))
    r = requests.post(rpc_url(gw), json={"id": 3, "cmd": HEARTBEAT, "data": {"sent_at": "x"}})
    assert r.status_code == 400
    assert r.json() == {"id": 3, "cmd": HEARTBEAT_REPLY, "status": 400,
                        "error": 'data.sent_at: expected a 64-bit integer, got "x"'}
    r = requests.get(rpc_url(gw))
    assert r.status_code == 400 and "POST of one JSON envelope" in r.json()["error_msg"]
    r = requests.post(rpc_url(gw), data=json.dumps({"cmd": HEARTBEAT, "body": "A" * 8000}))
    assert r.status_code == 413
    # a cmd the backend does not know: its own answer (UNKNOWN_COMMAND) comes back as is
    r = requests.post(rpc_url(gw), json={"id": 8, "cmd": 0x7001})
    assert r.status_code == 200 and r.json()["status"] == 5 and r.json()["cmd"] == 0x7002


def test_http_rpc_can_be_switched_off(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port, http_rpc=False))
    r = requests.post(rpc_url(gw), json={"id": 1, "cmd": HEARTBEAT})
    assert r.status_code == 400 and "WebSocket" in r.json()["error_msg"]


def test_http_rpc_backend_unreachable_or_silent(gateway, upstream):
    gw = gateway(bridge_config(free_port()))
    r = requests.post(rpc_url(gw), json={"id": 1, "cmd": HEARTBEAT})
    assert r.status_code == 502
    silent = upstream(name="silent")
    silent.hang = True  # reads what it gets, never answers
    gw2 = gateway(bridge_config(silent.port, rpc_timeout="0.5s"))
    r = requests.post(rpc_url(gw2), json={"id": 1, "cmd": HEARTBEAT}, timeout=10)
    assert r.status_code == 504 and "no reply" in r.json()["error_msg"]
    m = prom_text.parse(gw2.control("/metrics").text)
    assert m.value("portico_tlv_bridge_rpc_timeouts_total") == 1


def test_http_rpc_client_that_leaves_ends_the_wait(gateway):
    from test_client_abort import SilentBackend
    silent = SilentBackend()
    try:
        gw = gateway(bridge_config(silent.port, rpc_timeout="20s"))
        body = json.dumps({"id": 1, "cmd": HEARTBEAT}).encode()
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (PATH.encode(), len(body), body))
        assert wait_until(lambda: len(silent.opened) == 1)
        time.sleep(0.2)
        given_up = time.time()
        s.close()
        assert wait_until(lambda: len(silent.closed) == 1, timeout=3)
        assert silent.closed[0] - given_up < 1.5
        assert wait_until(lambda: '"status":499' in gw.access_path.read_text())
        m = prom_text.parse(gw.control("/metrics").text)
        assert m.value("portico_tlv_bridge_rpc_timeouts_total") == 0
    finally:
        silent.stop()


def test_waf_scans_the_rpc_envelope_before_the_backend_sees_it(gateway, backends):
    b = backends("demo1")
    config = bridge_config(b.port)
    config["routes"][0]["plugins"]["waf"] = {"rulesets": ["php-injection"]}
    gw = gateway(config)
    attack = {"id": 1, "cmd": CHAT, "to": 2,
              "data": {"to": 2, "text": "<?php eval(base64_decode($_POST['x'])); ?>"}}
    r = requests.post(rpc_url(gw), json=attack)
    assert r.status_code == 403
    # the same call padded with blanks past the WAF's max_body (64k) but within the bridge's
    # max_message (2m): refused, not passed half-scanned
    padded = json.dumps(attack).replace('"data"', " " * 70000 + '"data"')
    r = requests.post(rpc_url(gw), data=padded, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    benign = {"id": 2, "cmd": HEARTBEAT, "data": {"sent_at": 1}}
    r = requests.post(rpc_url(gw), json=benign)
    assert r.status_code == 200 and r.json()["cmd"] == HEARTBEAT_REPLY
    # the attacks never reached the backend: one connection there, the heartbeat's
    log = b.stop()
    assert len([line for line in log.splitlines() if line.endswith(" connected")]) == 1, log


def test_a_long_session_does_not_keep_old_configs_alive(gateway, backends):
    """A WebSocket session may last hours while routes change many times: once upgraded it
    holds its route's plugins and upstream, not the whole config it was routed with."""
    b = backends("demo1")
    config = bridge_config(b.port)
    gw = gateway(config)

    def gauge(name):
        return prom_text.parse(gw.control("/metrics").text).value(name)

    async def session():
        async with websockets.connect(ws_url(gw)) as ws:
            await login(ws, 1)
            for version in range(4):
                revision = gauge("portico_config_revision")
                config["routes"][0]["name"] = f"v{version}"  # a new file: a new config
                gw.write_routes(config)
                assert wait_until(lambda: gauge("portico_config_revision") > revision, 10)
            # A worker takes the newest config at its next request; then only the running
            # config is left (retired ones are freed within a moment).
            requests.get(f"http://127.0.0.1:{gw.port}/elsewhere")
            assert wait_until(lambda: gauge("portico_config_snapshots_alive") == 1, 10), \
                gauge("portico_config_snapshots_alive")
            await send_json(ws, {"id": 9, "cmd": HEARTBEAT, "data": {"sent_at": 5}})
            reply = await recv_json(ws)
            assert reply["cmd"] == HEARTBEAT_REPLY and reply["data"]["sent_at"] == 5
    run(session(), timeout=60)


# --- robustness (from the review of the first version) ----------------------------------------

class RawWs:
    """A WebSocket client on a plain socket, for what libraries will not send: frames glued to
    a close, bad close codes, floods without reading."""

    def __init__(self, gw, path=PATH):
        self.sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {GOOD_KEY}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = b""

    @staticmethod
    def frame(opcode, payload, fin=True):
        mask = b"\x01\x02\x03\x04"
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))

    def recv_frame(self):
        """(opcode, payload), or None at EOF."""
        while True:
            if len(self.buf) >= 2:
                n, pos = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, pos = struct.unpack(">H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, pos = struct.unpack(">Q", self.buf[2:10])[0], 10
                if n < 126 or pos > 2:
                    if len(self.buf) >= pos + n:
                        op, payload = self.buf[0] & 0x0F, self.buf[pos:pos + n]
                        self.buf = self.buf[pos + n:]
                        return op, payload
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data

    def close_code(self):
        """Reads until the server's close frame: its code."""
        while True:
            f = self.recv_frame()
            if f is None:
                return None
            if f[0] == 0x8:
                return struct.unpack(">H", f[1][:2])[0]


def test_deeply_nested_json_is_refused_and_the_gateway_lives(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port, max_message="1m"))

    async def talk():
        async with websockets.connect(ws_url(gw), max_size=None) as ws:
            deep = '{"id": 1, "cmd": %d, "data": {"text": %s"x"%s}}' % (
                CHAT, "[" * 100000, "]" * 100000)
            await ws.send(deep)
            answer = await recv_json(ws)
            assert answer["id"] == 0 and "nested too deeply" in answer["error"]
            await send_json(ws, {"id": 2, "cmd": CHAT, "data": {"text": [[1]]}})
            answer = await recv_json(ws)  # a wrong type named, not dumped
            assert answer["error"] == "data.text: expected a string, got an array"
            await send_json(ws, {"id": 3, "cmd": HEARTBEAT, "data": {"sent_at": 1}})
            assert (await recv_json(ws))["cmd"] == HEARTBEAT_REPLY
    run(talk())
    assert gw.proc.poll() is None


def test_a_client_that_does_not_read_cannot_grow_the_gateway(gateway):
    """A backend pushing to a client that does not read, while the client keeps sending
    messages that are refused: past a bound the gateway stops reading the client (TCP pushes
    back) instead of queueing refusals without limit."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def pushing_backend():
        conn, _ = listener.accept()
        push = C.encode_frame(HEARTBEAT_REPLY, 1, b"\x0a\x04push") * 512
        try:
            while not stop.is_set():
                conn.sendall(push)
        except OSError:
            pass
        conn.close()
    threading.Thread(target=pushing_backend, daemon=True).start()
    gw = gateway(bridge_config(listener.getsockname()[1]))
    ws = RawWs(gw)
    time.sleep(0.5)  # the pushes fill the socket buffers towards the client
    rss_before = gw.rss_kib()
    bad = RawWs.frame(0x1, b"{}") * 4096  # 8-byte frames, each refused with ~100 bytes
    ws.sock.settimeout(1)
    sent = 0
    try:
        while sent < 64 << 20:
            sent += ws.sock.send(bad)
    except (socket.timeout, BlockingIOError):
        pass  # the gateway stopped reading us
    grown = gw.rss_kib() - rss_before
    stop.set()
    ws.sock.close()
    listener.close()
    assert sent < 16 << 20, f"the gateway kept reading: {sent} bytes"
    assert grown < 40 * 1024, f"RSS grew by {grown} KiB"


def test_messages_glued_to_a_close_frame_still_reach_the_backend(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))
    ws = RawWs(gw)
    login = json.dumps({"id": 1, "cmd": LOGIN, "data": {"uid": 4242, "token": "t"}}).encode()
    ws.sock.sendall(RawWs.frame(0x1, login) + RawWs.frame(0x8, struct.pack(">H", 1000)))
    assert ws.close_code() == 1000
    ws.sock.close()
    time.sleep(0.3)  # the backend logs the login before it sees the close
    assert "login uid 4242" in b.stop()


def test_invalid_close_codes_are_answered_with_1002(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))
    for payload in (struct.pack(">H", 1005), struct.pack(">H", 999), b"\x03"):
        ws = RawWs(gw)
        ws.sock.sendall(RawWs.frame(0x8, payload))
        assert ws.close_code() == 1002, payload
        ws.sock.close()
    ws = RawWs(gw)
    ws.sock.sendall(RawWs.frame(0x8, struct.pack(">H", 4001) + b"bye"))
    assert ws.close_code() == 4001
    ws.sock.close()


def test_backend_frames_and_the_close_are_all_delivered_while_the_client_pings(gateway):
    """A backend that sends its last frames and closes: every frame and then the 1001 close
    reach a client that keeps pinging meanwhile."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    count = 300

    def backend():
        conn, _ = listener.accept()
        body = b"\x0a\x04last"  # Heartbeat.server = "last"
        conn.sendall(b"".join(C.encode_frame(HEARTBEAT_REPLY, i, body) for i in range(count)))
        conn.close()
    gw = gateway(bridge_config(port))
    t = threading.Thread(target=backend, daemon=True)
    t.start()
    ws = RawWs(gw)
    stop = threading.Event()

    def pinger():
        while not stop.is_set():
            try:
                ws.sock.sendall(RawWs.frame(0x9, b"p"))
            except OSError:
                return
            time.sleep(0.002)
    threading.Thread(target=pinger, daemon=True).start()
    texts, close = 0, None
    while True:
        f = ws.recv_frame()
        if f is None:
            break
        if f[0] == 0x1:
            texts += 1
        elif f[0] == 0x8:
            close = struct.unpack(">H", f[1][:2])[0]
            break
    stop.set()
    ws.sock.close()
    listener.close()
    assert (texts, close) == (count, 1001)


def test_limit_conn_counts_sessions_until_they_end(gateway, backends):
    b = backends("demo1")
    config = bridge_config(b.port)
    config["routes"][0]["plugins"]["limit-conn"] = {
        "conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"}
    gw = gateway(config)

    async def talk():
        async with websockets.connect(ws_url(gw)) as first:
            await login(first, 1)
            with pytest.raises(InvalidStatusCode) as refused:
                await websockets.connect(ws_url(gw), open_timeout=5)
            assert refused.value.status_code == 503
        # the first session is over: its slot is free again
        async def second():
            async with websockets.connect(ws_url(gw)) as ws:
                return (await login(ws, 2))["data"]["result"]
        for _ in range(50):
            try:
                assert await second() == "OK"
                return
            except InvalidStatusCode:
                await asyncio.sleep(0.1)
        raise AssertionError("the slot was never released")
    run(talk())


def test_shutdown_closes_sessions_with_1001_at_once(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port), node={"shutdown_timeout": "10s"})
    ws = RawWs(gw)
    # One round trip first: the session is up (the 101 can come before it is registered).
    ws.sock.sendall(RawWs.frame(0x1, json.dumps({"id": 1, "cmd": HEARTBEAT}).encode()))
    assert ws.recv_frame()[0] == 0x1
    started = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert ws.close_code() == 1001
    assert time.monotonic() - started < 5
    assert gw.proc.wait(10) == 0


def test_websocket_handshake_must_be_a_get(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port))
    r = requests.post(rpc_url(gw), headers={**HANDSHAKE, "Sec-WebSocket-Key": GOOD_KEY})
    assert r.status_code == 400 and "GET" in r.json()["error_msg"]


# --- command policy and message rate limits, as on tlv stream routes ---------------------------

def test_denied_commands_are_answered_at_the_edge_in_json_binary_and_rpc(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port, commands={"deny": ["0x7000-0x7fff"], "status": 403}))

    async def talk():
        async with websockets.connect(ws_url(gw)) as ws:
            await send_json(ws, {"id": 4, "cmd": 0x7001, "body": ""})
            answer = await recv_json(ws)
            # the backend would answer 5 (UNKNOWN_COMMAND): 403 is the gateway's
            assert (answer["cmd"], answer["id"], answer["status"]) == (0x7002, 4, 403)
            await ws.send(C.encode_frame(0x7005, 9))
            reader = C.FrameReader()
            reader.feed(await recv(ws))
            frame = reader.frames()[0]
            assert (frame.cmd, frame.seq, frame.status) == (0x7006, 9, 403)
            await ws.send(C.encode_frame(HEARTBEAT, 10, b"\x08\x05"))  # allowed: the backend's
            reader.feed(await recv(ws))
            assert reader.frames()[0].cmd == HEARTBEAT_REPLY
    run(talk())
    r = requests.post(rpc_url(gw), json={"id": 5, "cmd": 0x7001})
    assert r.status_code == 403 and r.json()["status"] == 403 and r.json()["cmd"] == 0x7002
    m = prom_text.parse(gw.control("/metrics").text)
    assert m.value("portico_tlv_bridge_refused_frames_total", reason="command_denied") == 3


def test_message_rate_limits_per_connection_and_per_user(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port, rate_limit={
        "per_connection": {"rate": 1, "burst": 0}, "per_user": {"rate": 1, "burst": 1},
        "action": "reply", "status": 429}))

    async def heartbeats(ws, uid, n, first_id):
        statuses = []
        for i in range(n):
            await send_json(ws, {"id": first_id + i, "cmd": HEARTBEAT, "from": uid,
                                 "data": {"sent_at": i}})
            statuses.append((await recv_json(ws))["status"])
        return statuses

    async def talk():
        async with websockets.connect(ws_url(gw)) as a, websockets.connect(ws_url(gw)) as c:
            # one connection, no burst: the first goes through, the next ones are refused
            assert await heartbeats(a, 0, 3, 1) == [0, 429, 429]
            # user 77 on a fresh connection: per_user allows 1 + burst 1 across connections
            async with websockets.connect(ws_url(gw)) as d:
                assert await heartbeats(c, 77, 1, 10) == [0]
                assert await heartbeats(d, 77, 1, 20) == [0]
                async with websockets.connect(ws_url(gw)) as e:
                    assert await heartbeats(e, 77, 1, 30) == [429]
    run(talk())
    m = prom_text.parse(gw.control("/metrics").text)
    assert m.value("portico_tlv_bridge_refused_frames_total", reason="rate_limited") == 3
    r = requests.post(rpc_url(gw), json={"id": 1, "cmd": HEARTBEAT, "from": 77})
    assert r.status_code == 429 and r.json()["status"] == 429


def test_rate_limit_and_commands_errors_name_the_field(tmp_path):
    doc = bridge_config(1, rate_limit={"per_connection": {"rate": -1}},
                        commands={"deny": ["nope"]})
    code, out = validate(tmp_path, doc)
    assert code != 0
    assert "routes[0].plugins.tlv-bridge.rate_limit.per_connection.rate" in out
    assert "routes[0].plugins.tlv-bridge.commands.deny[0]" in out


def test_allow_origins_and_subprotocols(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port, allow_origins=["https://web.example.com"],
                               subprotocols=["tlv.json"]))

    async def talk():
        with pytest.raises(InvalidStatusCode) as refused:
            await websockets.connect(ws_url(gw), origin="https://evil.example.net")
        assert refused.value.status_code == 403
        async with websockets.connect(ws_url(gw)) as ws:  # no Origin: not a browser, allowed
            assert (await login(ws, 2))["data"]["result"] == "OK"
        async with websockets.connect(ws_url(gw), origin="https://web.example.com",
                                      subprotocols=["chat", "tlv.json"]) as ws:
            assert ws.subprotocol == "tlv.json"
            assert (await login(ws, 1))["data"]["result"] == "OK"
        async with websockets.connect(ws_url(gw), origin="https://web.example.com") as ws:
            assert ws.subprotocol is None
    run(talk())

    r = requests.post(rpc_url(gw), json={"id": 1, "cmd": HEARTBEAT},
                      headers={"Origin": "https://evil.example.net"})
    assert r.status_code == 403  # a page of another origin cannot post commands either
    r = requests.post(rpc_url(gw), json={"id": 1, "cmd": HEARTBEAT},
                      headers={"Origin": "https://web.example.com"})
    assert r.status_code == 200


def test_rpc_per_connection_rate_applies_per_client_address(gateway, backends):
    b = backends("demo1")
    gw = gateway(bridge_config(b.port, rate_limit={"per_connection": {"rate": 1, "burst": 0}}))
    statuses = [requests.post(rpc_url(gw), json={"id": i, "cmd": HEARTBEAT}).status_code
                for i in range(3)]
    assert statuses == [200, 429, 429]


def test_rpc_refused_per_client_address_uses_none_of_the_users_rate(gateway, backends):
    # Frames meet the rates in order, per connection (here: per client address) first: a call
    # that one refuses leaves the user's rate alone for the user's other clients.
    b = backends("demo1")
    config = bridge_config(b.port, rate_limit={"per_connection": {"rate": 1, "burst": 0},
                                               "per_user": {"rate": 1, "burst": 1}})
    config["routes"][0]["plugins"]["real-ip"] = {"source": "http_x_forwarded_for",
                                                 "trusted_addresses": ["127.0.0.1"]}
    gw = gateway(config)

    def call(client, i):
        return requests.post(rpc_url(gw), json={"id": i, "cmd": HEARTBEAT, "from": 77},
                             headers={"X-Forwarded-For": client}).status_code
    assert [call("10.0.0.1", 1), call("10.0.0.1", 2)] == [200, 429]
    assert call("10.0.0.2", 3) == 200  # the user's burst of 1 is still there
    assert call("10.0.0.3", 4) == 429  # and now it is used


def test_limit_conn_keyed_by_a_header_is_released_after_big_messages(gateway, backends):
    """The log phase at the end of a session reads the request's key again: the session has
    reused the connection's buffer by then, so the head must have been kept aside."""
    b = backends("demo1")
    config = bridge_config(b.port)
    config["routes"][0]["plugins"]["limit-conn"] = {
        "conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "http_x_user"}
    gw = gateway(config)
    headers = {"X-User": "alice"}

    async def session():
        async with websockets.connect(ws_url(gw), extra_headers=headers, max_size=None) as ws:
            await send_json(ws, {"id": 1, "cmd": HEARTBEAT,
                                 "data": {"server": "x" * 100000, "sent_at": 1}})
            assert (await recv_json(ws))["cmd"] == HEARTBEAT_REPLY

    async def talk():
        await session()
        for _ in range(50):  # the slot comes back once the gateway has seen the close
            try:
                return await session()
            except InvalidStatusCode as e:
                assert e.status_code == 503
                await asyncio.sleep(0.1)
        raise AssertionError("alice's slot was never released")
    run(talk())


def test_bytes_of_a_frame_that_never_completes_do_not_keep_a_session(gateway, backends):
    """Idle is "no whole frame for idle_timeout": a client dribbling one byte of a frame now and
    then is closed at the timeout all the same (1001), not kept with its backend connection."""
    b = backends("demo1")
    gw = gateway(bridge_config(b.port, idle_timeout="1s"))
    ws = RawWs(gw)
    frame = RawWs.frame(0x1, json.dumps({"id": 1, "cmd": HEARTBEAT}).encode())
    start = time.monotonic()
    ws.sock.sendall(frame[:2])
    closed = None
    for byte in frame[2:]:
        time.sleep(0.25)
        try:
            ws.sock.sendall(bytes([byte]))
        except OSError:
            break
        ws.sock.settimeout(0.01)
        try:
            closed = ws.recv_frame()
        except socket.timeout:
            continue
        finally:
            ws.sock.settimeout(10)
        break
    if closed is None:
        ws.sock.settimeout(3)
        closed = ws.recv_frame()
    took = time.monotonic() - start
    assert closed is not None and closed[0] == 0x8, closed
    assert struct.unpack(">H", closed[1][:2])[0] == 1001 and b"idle timeout" in closed[1]
    assert took < 5, took  # about idle_timeout (the frame alone takes 8 s to dribble in)


def silent_node_and_demo(gateway, backends, upstream):
    """A bridge route over a node that accepts connections and never replies, and the demo
    backend; passive checks eject a node at its first timeout; RPCs time out after 0.3 s."""
    b = backends("demo1")
    silent = upstream(name="silent")
    silent.hang = True
    config = bridge_config(b.port, rpc_timeout="0.3s")
    config["routes"][0]["upstream"] = inline_upstream(
        silent.port, b.port, checks={"passive": {"unhealthy": {"timeouts": 1}}})
    return gateway(config)


def test_rpc_timeouts_count_against_the_node_for_passive_checks(gateway, backends, upstream):
    """A node that accepts connections but never replies is ejected like any failing node:
    after its first timeout the RPCs go to the node that answers."""
    gw = silent_node_and_demo(gateway, backends, upstream)
    statuses = [requests.post(rpc_url(gw), json={"id": i, "cmd": HEARTBEAT}).status_code
                for i in range(8)]
    assert statuses.count(504) == 1 and statuses.count(200) == 7, statuses


def test_rpcs_of_a_cmd_without_a_reply_type_do_not_eject_nodes(gateway, backends, upstream):
    """The client picks the cmd. A receipt (0x4002: the route declares no type for 0x4003, its
    reply) is never answered by the backend: its timeouts must not let any client eject
    healthy nodes through passive checks."""
    gw = silent_node_and_demo(gateway, backends, upstream)
    statuses = [requests.post(rpc_url(gw), json={"id": i, "cmd": RECEIPT, "data": {}}).status_code
                for i in range(6)]
    assert statuses == [504] * 6, statuses
    states = [n["state"] for u in gw.control("/v1/healthcheck").json()["upstreams"]
              for n in u["nodes"]]
    assert states == ["healthy", "healthy"], states


class ClosingBackend:
    """Accepts TCP connections and closes them at once: a crash loop behind a listening port.
    With `after_reading`, reads what the client sent first (a backend refusing a login)."""

    def __init__(self, after_reading=False):
        self.after_reading = after_reading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
                if self.after_reading:
                    conn.settimeout(5)
                    conn.recv(4096)
            except OSError:
                return
            conn.close()

    def close(self):
        self.sock.close()


def test_a_backend_that_drops_sessions_at_once_is_taken_out(gateway, backends):
    """It accepts connections (a success for passive checks) and closes each at once: with
    least_conn it always has the fewest sessions and would get every new one. Closing a session
    soon after accepting it, before any frame, counts as its failure."""
    good, bad = backends("good"), ClosingBackend()
    try:
        config = bridge_config(good.port)
        config["routes"][0]["upstream"] = inline_upstream(
            bad.port, good.port, type="least_conn",
            checks={"passive": {"unhealthy": {"tcp_failures": 2}, "ejection_base_time": 30}})
        gw = gateway(config)

        async def talk():
            servers = []
            for uid in range(1, 9):
                ws = await websockets.connect(ws_url(gw))
                # The bad node closes as soon as it accepts; the login goes out after its FIN
                # has arrived (a close after the client's frame could be a refusal, which does
                # not count, and under load the close can lag the accept by milliseconds).
                await asyncio.sleep(0.3)
                try:
                    servers.append((await login(ws, uid))["data"]["server"])
                except Exception:
                    servers.append("dropped")
                await ws.close()
            return servers
        servers = run(talk())
        assert servers[-4:] == ["good"] * 4, servers  # the bad node was taken out
        assert servers.count("dropped") <= 3, servers
    finally:
        bad.close()


def test_a_backend_refusing_clients_is_not_taken_out_for_it(gateway, backends):
    """The backend closes each session after reading the client's first frame (an expired
    token, say): the client's doing, not a sick node. It stays in, whoever the clients are."""
    refuser = ClosingBackend(after_reading=True)
    try:
        config = bridge_config(refuser.port)
        config["routes"][0]["upstream"] = inline_upstream(
            refuser.port, checks={"passive": {"unhealthy": {"tcp_failures": 2}}})
        gw = gateway(config)

        async def talk():
            for uid in range(1, 5):
                ws = await websockets.connect(ws_url(gw))
                await send_json(ws, {"id": 1, "cmd": LOGIN, "data": {"uid": uid, "token": "x"}})
                code, _ = await closed(ws)
                assert code == 1001
        run(talk())
        states = [n["state"] for u in gw.control("/v1/healthcheck").json()["upstreams"]
                  for n in u["nodes"]]
        assert states == ["healthy"], states
    finally:
        refuser.close()


def test_least_conn_balances_sessions_by_how_many_are_open(gateway, backends):
    """Sessions are long: least_conn counts each on its node until it ends, so new sessions go
    where fewer are open (round robin would alternate regardless)."""
    a, c = backends("node-a"), backends("node-c")
    config = bridge_config(a.port)
    config["routes"][0]["upstream"] = inline_upstream(a.port, c.port, type="least_conn")
    gw = gateway(config)

    async def talk():
        sessions = []
        for uid in range(1, 5):
            ws = await websockets.connect(ws_url(gw))
            sessions.append((ws, (await login(ws, uid))["data"]["server"]))
        assert sorted(server for _, server in sessions) == ["node-a", "node-a", "node-c", "node-c"]
        for ws, server in sessions:
            if server == "node-a":
                await ws.close()
        await asyncio.sleep(0.3)  # the gateway sees both closes
        new = []
        for uid in range(5, 7):
            ws = await websockets.connect(ws_url(gw))
            new.append((await login(ws, uid))["data"]["server"])
            sessions.append((ws, None))
        assert new == ["node-a", "node-a"]
        for ws, _ in sessions:
            await ws.close()
    run(talk())
