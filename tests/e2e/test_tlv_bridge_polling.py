"""tlv-bridge long polling through the real binary: web clients without WebSocket hold a session
to the demo IM backend (portico-im-demo) across HTTP requests. Every request here opens a new
connection (requests' module functions), so with two workers most land on a worker that does not
hold the session and are handed over. Sending, polling with acknowledgement by number, waking a
waiting poll, the ends of a session (close, backend gone, idle, shutdown), limits and refusals."""
import asyncio
import base64
import json
import signal
import threading
import time

import prom_text
import pytest
import requests
import websockets

from conftest import validate, wait_until
from holding_backend import HoldingBackend
from test_tlv_bridge import (CHAT, HEARTBEAT, HEARTBEAT_REPLY, LOGIN, LOGIN_REPLY, PATH, RECEIPT,
                             bridge_config, bridge_route, login, recv_json, run, send_json,
                             ws_url)

HEADER = "X-Tlv-Session"


def polling_config(port, **conf):
    conf.setdefault("long_polling", True)
    return bridge_config(port, **conf)


def url(gw):
    return f"http://127.0.0.1:{gw.port}{PATH}"


def open_session(gw, *envelopes, expect=200, headers=None):
    body = json.dumps(list(envelopes)) if envelopes else None
    r = requests.post(url(gw), data=body, headers={HEADER: "new", **(headers or {})}, timeout=10)
    assert r.status_code == expect, r.text
    assert r.headers["Cache-Control"] == "no-store"
    return r.json()


def send(gw, sid, *envelopes):
    r = requests.post(url(gw), data=json.dumps(list(envelopes)), headers={HEADER: sid}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def poll(gw, sid, next=None, wait=2, expect=200):
    params = {"wait": wait}
    if next is not None:
        params["next"] = next
    r = requests.get(url(gw), params=params, headers={HEADER: sid}, timeout=wait + 10)
    assert r.status_code == expect, r.text
    return r.json()


def poll_until(gw, sid, next, count, timeout=10):
    """Polls (acknowledging as it goes) until `count` messages came; (messages, next)."""
    got, deadline = [], time.time() + timeout
    while len(got) < count and time.time() < deadline:
        answer = poll(gw, sid, next)
        got += answer["messages"]
        next = answer["next"]
    assert len(got) >= count, got
    return got, next


def metric(gw, name):
    return prom_text.parse(gw.control("/metrics").text).value(name)


def login_envelope(uid, id=1):
    return {"id": id, "cmd": LOGIN, "data": {"uid": uid, "token": "t"}}


def test_polling_user_and_websocket_user_chat_across_workers(gateway, backends):
    b = backends("demo1")
    gw = gateway(polling_config(b.port), workers=2)
    opened = open_session(gw, login_envelope(1))  # the login goes with the open request
    sid = opened["session"]
    assert opened["next"] == 0 and opened["wait"] == 25 and opened["idle_timeout"] == 180
    assert metric(gw, "portico_tlv_bridge_poll_sessions_active") == 1
    (reply,), next = poll_until(gw, sid, 0, 1)
    assert reply["cmd"] == LOGIN_REPLY and reply["data"]["uid"] == 1 and reply["status"] == 0

    async def talk():
        nonlocal next
        async with websockets.connect(ws_url(gw)) as bob:
            await login(bob, 2)
            # WebSocket -> polling user: the push waits in the session until a poll takes it.
            await send_json(bob, {"id": 8, "cmd": CHAT, "to": 1, "data": {"to": 1, "text": "yo"}})
            assert (await recv_json(bob))["data"]["result"] == "OK"
            (push,), next = poll_until(gw, sid, next, 1)
            assert push["cmd"] == CHAT and push["data"]["text"] == "yo" and push["from"] == 2
            # polling -> WebSocket user, with the receipt coming back in a poll.
            assert send(gw, sid, {"id": 7, "cmd": CHAT, "from": 1, "to": 2,
                                  "data": {"to": 2, "text": "hi bob"}}) == {"accepted": 1,
                                                                            "refused": 0}
            got = await recv_json(bob)
            assert got["cmd"] == CHAT and got["data"]["text"] == "hi bob"
            (receipt,), next = poll_until(gw, sid, next, 1)
            assert receipt["cmd"] == RECEIPT and receipt["id"] == 7
            assert receipt["data"]["result"] == "OK"
    run(talk())
    # A dozen more round trips, each on a new connection: some land on the other worker.
    for i in range(12):
        send(gw, sid, {"id": 100 + i, "cmd": HEARTBEAT, "data": {"sent_at": i}})
        (beat,), next = poll_until(gw, sid, next, 1)
        assert beat["cmd"] == HEARTBEAT_REPLY and beat["id"] == 100 + i
    assert metric(gw, "portico_tlv_bridge_poll_handovers_total") > 0
    assert requests.delete(url(gw), headers={HEADER: sid}, timeout=5).json() == {"closed": True}
    assert poll(gw, sid, expect=404)["error_msg"].startswith("tlv-bridge: no such session")
    wait_until(lambda: metric(gw, "portico_tlv_bridge_poll_sessions_active") == 0, 5)


def test_an_answer_lost_on_the_way_is_sent_again_until_acknowledged(gateway, backends):
    b = backends("demo1")
    gw = gateway(polling_config(b.port))
    sid = open_session(gw)["session"]
    send(gw, sid, login_envelope(5), {"id": 2, "cmd": HEARTBEAT, "data": {"sent_at": 1}})
    messages, next = poll_until(gw, sid, 0, 2)
    assert [m["id"] for m in messages] == [1, 2] and next == 2
    # The client never saw that answer: it polls from 0 again and gets both again.
    again = poll(gw, sid, next=0, wait=0)
    assert again == {"next": 2, "messages": messages}
    # Acknowledged: gone, and an empty poll keeps the number.
    assert poll(gw, sid, next=2, wait=0) == {"next": 2, "messages": []}
    assert poll(gw, sid, next=1, wait=0) == {"next": 2, "messages": []}
    assert "beyond" in poll(gw, sid, next=3, wait=0, expect=400)["error_msg"]


def test_a_send_repeated_with_its_number_reaches_the_backend_once(gateway, backends):
    # The answer to a send was lost (a dropped mobile link, a 504): the client cannot know
    # whether the message went. Repeating it with the same number is safe.
    b = backends("demo1")
    gw = gateway(polling_config(b.port), workers=2)
    sid = open_session(gw, login_envelope(5))["session"]
    _, next = poll_until(gw, sid, 0, 1)

    def numbered(n, id):
        envelope = {"id": id, "cmd": HEARTBEAT, "data": {"sent_at": id}}
        return requests.post(url(gw), params={"send": n}, data=json.dumps(envelope),
                             headers={HEADER: sid}, timeout=10)
    first = numbered(1, 10)
    assert (first.status_code, first.json()) == (200, {"accepted": 1, "refused": 0})
    again = numbered(1, 10)
    assert (again.status_code, again.json()) == (200, {"accepted": 1, "refused": 0,
                                                       "repeated": True})
    # Number 3 arrives before number 2 (two sends in flight, or 2 retried after a 504): 2 is
    # still a new send, and its repeat is still a repeat.
    assert numbered(3, 12).json() == {"accepted": 1, "refused": 0}
    assert numbered(2, 11).json() == {"accepted": 1, "refused": 0}
    assert numbered(2, 11).json() == {"accepted": 1, "refused": 0, "repeated": True}
    assert numbered(1, 10).json()["repeated"] is True
    replies, next = poll_until(gw, sid, next, 3)
    assert sorted(m["id"] for m in replies) == [10, 11, 12]
    assert poll(gw, sid, next=next, wait=1)["messages"] == []  # no second reply to any
    assert metric(gw, "portico_tlv_bridge_poll_repeated_sends_total") == 3
    # The session remembers the latest 64 numbers; one older than those is taken as a repeat.
    for n in range(4, 70):
        assert numbered(n, 100 + n).json() == {"accepted": 1, "refused": 0}
    assert numbered(1, 10).json() == {"repeated": True}
    _, next = poll_until(gw, sid, next, 66)
    assert poll(gw, sid, next=next, wait=1)["messages"] == []
    r = requests.post(url(gw), params={"send": "x"}, data="{}", headers={HEADER: sid}, timeout=10)
    assert r.status_code == 400 and "send must be a number" in r.json()["error_msg"]


def test_a_repeated_send_is_answered_once_the_original_reached_the_backend(gateway):
    # "accepted" on a repeat must mean what it means on the original: the messages were written
    # to the backend. A backend that reads nothing until told lets the socket buffers fill.
    backend = HoldingBackend(rcvbuf=4096)
    gw = gateway(polling_config(backend.port), workers=1)
    sid = open_session(gw)["session"]
    batch = json.dumps([{"cmd": HEARTBEAT, "body": base64.b64encode(b"x" * 60000).decode()}] * 8)
    answers = {}

    def numbered(n, key):
        answers[key] = requests.post(url(gw), params={"send": n}, data=batch,
                                     headers={HEADER: sid}, timeout=60)

    def start(n, key):
        t = threading.Thread(target=numbered, args=(n, key))
        t.start()
        return t
    # Send until one send waits for its bytes to be written (about 480 kB a send).
    for n in range(1, 60):
        original = start(n, n)
        original.join(2)
        if original.is_alive():
            break
        assert answers[n].json() == {"accepted": 8, "refused": 0}
    assert original.is_alive(), "the backend's buffers never filled"
    repeat = start(n, "repeat")
    repeat.join(1.5)
    assert repeat.is_alive()  # not answered while the original's bytes wait
    backend.read()
    original.join(30)
    repeat.join(30)
    assert answers[n].json() == {"accepted": 8, "refused": 0}
    assert answers["repeat"].json() == {"accepted": 8, "refused": 0, "repeated": True}
    backend.stop()


def test_a_waiting_poll_is_answered_when_a_message_arrives(gateway, backends):
    b = backends("demo1")
    gw = gateway(polling_config(b.port), workers=2)
    sid = open_session(gw, login_envelope(3))["session"]
    _, next = poll_until(gw, sid, 0, 1)
    result = {}

    def waiting_poll():
        started = time.monotonic()
        result["answer"] = poll(gw, sid, next=next, wait=20)
        result["took"] = time.monotonic() - started

    t = threading.Thread(target=waiting_poll)
    t.start()
    time.sleep(0.5)
    send(gw, sid, {"id": 9, "cmd": HEARTBEAT, "data": {"sent_at": 2}})
    t.join(25)
    assert [m["id"] for m in result["answer"]["messages"]] == [9]
    assert result["took"] < 10, result  # woken by the message, not by the end of the wait
    # A poll with nothing to get ends empty after its wait.
    assert poll(gw, sid, next=result["answer"]["next"], wait=0.3)["messages"] == []


def test_refused_envelopes_are_answered_in_the_poll(gateway, backends):
    b = backends("demo1")
    gw = gateway(polling_config(b.port, commands={"deny": [0x7001]}))
    sid = open_session(gw)["session"]
    assert send(gw, sid, {"id": 2, "cmd": CHAT, "data": {"to": "x"}},
                {"id": 3, "cmd": 0x7001, "body": ""}) == {"accepted": 0, "refused": 2}
    (bad, denied), _ = poll_until(gw, sid, 0, 2)
    assert bad["id"] == 2 and bad["cmd"] == RECEIPT and bad["status"] == 400
    assert bad["error"].startswith("data.to: expected an unsigned 64-bit integer")
    assert denied["id"] == 3 and denied["cmd"] == 0x7002 and denied["status"] == 403
    r = requests.post(url(gw), data="[1,", headers={HEADER: sid}, timeout=5)
    assert r.status_code == 400 and "array" in r.json()["error_msg"], r.text


def test_bad_polling_requests_get_clear_answers(gateway, backends):
    b = backends("demo1")
    gw = gateway({"protos": bridge_config(b.port)["protos"],
                  "routes": [bridge_route(b.port, long_polling=True),
                             dict(bridge_route(b.port), id="plain", uri="/plain")]})
    sid = open_session(gw)["session"]
    cases = [
        ("GET", PATH, {HEADER: "new"}, 405, "opened with a POST"),
        ("PUT", PATH, {HEADER: sid}, 405, "takes POST"),
        ("GET", PATH + "?next=x", {HEADER: sid}, 400, "next must be"),
        ("GET", PATH + "?wait=-1", {HEADER: sid}, 400, "wait must be"),
        ("GET", PATH, {HEADER: "0-" + "0" * 32}, 404, "no such session"),
        ("GET", PATH, {HEADER: "garbage"}, 404, "no such session"),
        ("GET", PATH, {HEADER: "7-" + sid.split("-")[1]}, 404, "no such session"),
        ("POST", "/plain", {HEADER: "new"}, 400, "long polling is off"),
    ]
    for method, path, headers, status, text in cases:
        r = requests.request(method, f"http://127.0.0.1:{gw.port}{path}", headers=headers,
                             timeout=5)
        assert r.status_code == status and text in r.json()["error_msg"], (method, path, r.text)
    # A session id works only on the route that opened it.
    other = gateway({"protos": bridge_config(b.port)["protos"],
                     "routes": [bridge_route(b.port, long_polling=True),
                                dict(bridge_route(b.port, long_polling=True), id="other",
                                     uri="/other")]})
    sid = open_session(other)["session"]
    r = requests.get(f"http://127.0.0.1:{other.port}/other", headers={HEADER: sid}, timeout=5)
    assert r.status_code == 404, r.text
    assert poll(other, sid, wait=0)["messages"] == []


def test_a_backend_that_goes_delivers_its_last_messages_then_410(gateway, backends):
    b = backends("demo1")
    gw = gateway(polling_config(b.port))
    sid = open_session(gw, login_envelope(4))["session"]
    wait_until(lambda: poll(gw, sid, wait=0)["messages"], 5)  # the login reply is queued
    b.stop()
    time.sleep(0.5)
    answer = poll(gw, sid, wait=0)
    assert [m["cmd"] for m in answer["messages"]] == [LOGIN_REPLY]
    gone = poll(gw, sid, next=answer["next"], wait=0, expect=410)
    assert "the backend closed the connection" in gone["error_msg"]
    assert poll(gw, sid, wait=0, expect=404)  # the client was told: the session is gone


def test_no_backend_gives_502_and_too_many_sessions_503(gateway, backends):
    gw = gateway(polling_config(1))  # nothing listens on port 1
    assert "no TLV backend" in open_session(gw, expect=502)["error_msg"]
    b = backends("demo1")
    gw = gateway(polling_config(b.port, max_poll_sessions=2))
    first = open_session(gw)["session"]
    open_session(gw)
    assert "too many" in open_session(gw, expect=503)["error_msg"]
    requests.delete(url(gw), headers={HEADER: first}, timeout=5)
    open_session(gw)


def test_one_client_address_cannot_take_every_session(gateway, backends):
    b = backends("demo1")
    config = polling_config(b.port, max_poll_sessions_per_client=2)
    config["routes"][0]["plugins"]["real-ip"] = {"source": "http_x_forwarded_for",
                                                 "trusted_addresses": ["127.0.0.1"]}
    gw = gateway(config)
    one, other = {"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "203.0.113.2"}
    first = open_session(gw, headers=one)["session"]
    open_session(gw, headers=one)
    refused = open_session(gw, headers=one, expect=503)["error_msg"]
    assert "from this client address" in refused
    open_session(gw, headers=other)  # the route has room for others
    requests.delete(url(gw), headers={HEADER: first}, timeout=5)
    assert wait_until(lambda: requests.post(url(gw), headers={HEADER: "new", **one},
                                            timeout=10).status_code == 200, 3)


def test_an_idle_session_ends_and_frees_its_backend_connection(gateway, backends):
    b = backends("demo1")
    gw = gateway(polling_config(b.port, idle_timeout="1s", poll_wait="0.5s"))
    sid = open_session(gw)["session"]
    assert metric(gw, "portico_tlv_bridge_poll_sessions_active") == 1
    time.sleep(2.5)
    gone = poll(gw, sid, wait=0, expect=410)
    assert "idle timeout" in gone["error_msg"]
    # (the gauge drops when the session's backend connection is closed, just after)
    assert wait_until(lambda: metric(gw, "portico_tlv_bridge_poll_sessions_active") == 0, 3)
    # Polling keeps a session alive past idle_timeout.
    sid = open_session(gw)["session"]
    for _ in range(6):
        poll(gw, sid, wait=0.5)
    assert poll(gw, sid, wait=0)["messages"] == []


def test_shutdown_answers_a_waiting_poll_at_once(gateway, backends):
    b = backends("demo1")
    gw = gateway(polling_config(b.port), node={"shutdown_timeout": "10s"})
    sid = open_session(gw)["session"]
    result = {}
    t = threading.Thread(target=lambda: result.update(r=requests.get(
        url(gw), params={"wait": 20}, headers={HEADER: sid}, timeout=30)))
    t.start()
    time.sleep(0.5)
    started = time.monotonic()
    gw.signal(signal.SIGTERM)
    t.join(15)
    assert result["r"].status_code == 410 and "shutting down" in result["r"].json()["error_msg"]
    assert time.monotonic() - started < 5
    assert gw.proc.wait(10) == 0


def test_poll_wait_must_be_shorter_than_idle_timeout(tmp_path):
    rc, out = validate(tmp_path, polling_config(1980, poll_wait="60s", idle_timeout="30s"))
    assert rc != 0
    assert "routes[0].plugins.tlv-bridge.poll_wait: must be shorter than idle_timeout" in out, out


def test_a_client_that_stops_polling_a_full_session_frees_it(gateway, backends):
    # The backend pushes more than the session queues (1 MiB) to a client that does not poll:
    # the gateway stops reading the backend, refuses the client's sends until it polls, and at
    # the idle timeout ends the session, so the backend connection does not stay forever.
    b = backends("demo1")
    gw = gateway(polling_config(b.port, idle_timeout="2s", poll_wait="1s"))
    sid = open_session(gw, login_envelope(1))["session"]
    _, next = poll_until(gw, sid, 0, 1)
    text = "x" * 30000

    def refused_for_not_polling():
        r = requests.post(url(gw), data=json.dumps({"id": 9, "cmd": HEARTBEAT, "data": {}}),
                          headers={HEADER: sid}, timeout=5)
        return r.status_code == 429 and "poll first" in r.json()["error_msg"]

    async def flood():
        async with websockets.connect(ws_url(gw), max_size=None) as bob:
            await login(bob, 2)

            async def chat(i):
                await send_json(bob, {"id": 10 + i, "cmd": CHAT, "to": 1,
                                      "data": {"to": 1, "text": text}})
                return (await recv_json(bob))["data"]["result"]
            for i in range(45):
                assert await chat(i) == "OK"
            assert wait_until(refused_for_not_polling, 5)
            # The client is gone now: no more requests.
            deadline = time.time() + 10
            i = 100
            while await chat(i) == "OK":  # the backend still has the session's user online
                assert time.time() < deadline, "the full session never ended"
                await asyncio.sleep(0.5)
                i += 1
    run(flood(), timeout=60)
    # What was queued before the end is still there, a bounded answer at a time.
    chats = 0
    while True:
        r = requests.get(url(gw), params={"next": next, "wait": 0}, headers={HEADER: sid},
                         timeout=5)
        if r.status_code == 410:
            assert "idle timeout" in r.json()["error_msg"]
            break
        assert r.status_code == 200 and len(r.content) < 256 * 1024 + 40000, len(r.content)
        answer = r.json()
        assert answer["messages"]
        chats += sum(m["cmd"] == CHAT for m in answer["messages"])
        next = answer["next"]
    assert chats >= 30


def test_an_open_that_is_refused_leaves_no_session_behind(gateway, backends):
    b = backends("demo1")
    gw = gateway(polling_config(b.port))
    r = requests.post(url(gw), data="[1,", headers={HEADER: "new"}, timeout=5)
    assert r.status_code == 400
    too_many = json.dumps([{"id": i, "cmd": HEARTBEAT, "data": {}} for i in range(257)])
    r = requests.post(url(gw), data=too_many, headers={HEADER: "new"}, timeout=5)
    assert r.status_code == 413 and "at most 256" in r.json()["error_msg"]
    assert wait_until(lambda: metric(gw, "portico_tlv_bridge_poll_sessions_active") == 0, 5)


def test_the_backend_learns_the_client_address_when_the_session_opens(gateway, backends):
    b = backends("demo-pp", proxy_protocol=True)
    gw = gateway(polling_config(b.port, send_proxy_protocol=True))
    open_session(gw)  # nothing to send yet
    time.sleep(0.5)
    assert "connected, PROXY v2 client 127.0.0.1" in b.stop()


def test_past_max_poll_memory_a_client_that_stopped_acknowledging_is_let_go(gateway, backends):
    # The client still polls (so it is not idle) but never acknowledges: its queue stays full.
    # With the route's sessions over max_poll_memory, it ends after a few seconds and its queue
    # is dropped, instead of holding the memory for as long as it keeps polling.
    b = backends("demo1")
    gw = gateway(polling_config(b.port, idle_timeout="60s", poll_wait="1s",
                                max_poll_memory=1 << 20))
    sid = open_session(gw, login_envelope(1))["session"]
    poll_until(gw, sid, 0, 1)
    text = "x" * 30000

    async def flood():
        async with websockets.connect(ws_url(gw), max_size=None) as bob:
            await login(bob, 2)
            for i in range(45):
                await send_json(bob, {"id": 10 + i, "cmd": CHAT, "to": 1,
                                      "data": {"to": 1, "text": text}})
                assert (await recv_json(bob))["data"]["result"] == "OK"
    run(flood(), timeout=60)
    deadline, ended = time.time() + 15, None
    while time.time() < deadline and ended is None:
        r = requests.get(url(gw), params={"wait": 0}, headers={HEADER: sid}, timeout=5)
        if r.status_code == 410:
            ended = r.json()["error_msg"]
        time.sleep(0.5)
    assert ended and "too far behind" in ended, ended
    assert metric(gw, "portico_tlv_bridge_poll_memory_ends_total") == 1
    # the route still serves other clients
    other = open_session(gw, login_envelope(3))["session"]
    poll_until(gw, other, 0, 1)
