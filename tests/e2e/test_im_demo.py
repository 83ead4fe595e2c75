"""The demo IM backend, driven with the demo client library: what gateway tests rely on."""
import os
import socket
import subprocess
import sys
import time

import pytest

from im_demo import ImDemoBackend, im_chat, proxy_v2_header

C = im_chat


@pytest.fixture
def backend():
    b = ImDemoBackend(name="backend-a")
    yield b
    b.stop()


def test_login_reply_names_the_backend_and_the_client_address(backend):
    c = backend.client()
    frame, reply = c.login(1001)
    assert frame.cmd == C.LOGIN_REPLY and frame.status == 0
    assert frame.to_uid == 1001 and frame.from_uid == 0
    assert reply["result"] == 0 and reply["uid"] == 1001
    assert reply["server"] == "backend-a"
    assert reply["seen_addr"] == "127.0.0.1:%d" % c.sock.getsockname()[1]


def test_empty_token_is_refused(backend):
    c = backend.client()
    frame, reply = c.login(1001, token="")
    assert frame.status == 1 and reply["result"] == 1  # BAD_TOKEN


def test_message_is_pushed_to_the_receiver_and_acknowledged_with_the_same_seq(backend):
    alice, bob = backend.client(), backend.client()
    alice.login(1001)
    bob.login(1002)
    seq = alice.chat(1002, "hello bob", client_msg_id="m-1")
    receipt = alice.wait_for(C.RECEIPT, seq)
    assert receipt.status == 0
    r = C.decode_receipt(receipt.body)
    assert r["client_msg_id"] == "m-1" and r["server_msg_id"] > 0 and r["server"] == "backend-a"

    push = bob.wait_for(C.CHAT)
    assert push.from_uid == 1001 and push.to_uid == 1002
    m = C.decode_chat_message(push.body)
    assert m["from"] == 1001 and m["to"] == 1002 and m["text"] == "hello bob"
    assert m["client_msg_id"] == "m-1" and m["server_msg_id"] == r["server_msg_id"]
    assert abs(m["sent_at"] - time.time() * 1000) < 60000


def test_message_to_an_offline_user_gets_a_non_zero_receipt(backend):
    c = backend.client()
    c.login(1001)
    seq = c.chat(4242, "anyone?")
    receipt = c.wait_for(C.RECEIPT, seq)
    assert receipt.status == 3  # RECEIVER_OFFLINE
    assert C.decode_receipt(receipt.body)["result"] == 3


def test_a_second_login_as_someone_else_takes_the_first_uid_offline(backend):
    c, sender = backend.client(), backend.client()
    c.login(1001)
    c.login(1002)
    sender.login(1003)
    assert sender.wait_for(C.RECEIPT, sender.chat(1001, "still there?")).status == 3  # offline
    assert sender.wait_for(C.RECEIPT, sender.chat(1002, "hi")).status == 0


def test_a_client_that_never_reads_is_dropped_not_buffered(backend):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", backend.port))
    s.settimeout(10)
    beat = C.encode_frame(C.HEARTBEAT, 1, C.encode_heartbeat(1))
    dropped = False
    try:
        for _ in range(400):  # 400 x 1000 heartbeats: far more replies than 4 MiB
            s.sendall(beat * 1000)
    except OSError:
        dropped = True  # reset: the backend closed on us
    s.close()
    assert dropped
    # the backend still serves others
    assert backend.client().login(1001)[1]["server"] == "backend-a"


def test_message_before_login_is_refused(backend):
    c = backend.client()
    seq = c.send(C.CHAT, C.encode_chat_message(1002, "hi"), to_uid=1002)
    assert c.wait_for(C.RECEIPT, seq).status == 2  # NOT_LOGGED_IN


def test_heartbeat_is_answered_with_its_seq_and_timestamp(backend):
    c = backend.client()
    seq = c.send(C.HEARTBEAT, C.encode_heartbeat(sent_at=1234567890123), seq=777)
    reply = c.wait_for(C.HEARTBEAT_REPLY)
    assert reply.seq == 777 == seq and reply.status == 0
    assert C.decode_heartbeat(reply.body) == {"sent_at": 1234567890123, "server": "backend-a"}


def test_unknown_command_gets_cmd_plus_one_with_an_error(backend):
    c = backend.client()
    seq = c.send(0x7001, b"")
    assert c.wait_for(0x7002, seq).status == 5


def test_frames_split_and_batched_arbitrarily(backend):
    c = backend.client()
    data = b"".join(C.encode_frame(C.HEARTBEAT, s, C.encode_heartbeat(s)) for s in range(1, 51))
    for i in range(0, len(data), 7):  # 7-byte pieces, each its own segment
        c.sock.sendall(data[i:i + 7])
    seqs = [c.wait_for(C.HEARTBEAT_REPLY).seq for _ in range(50)]
    assert seqs == list(range(1, 51))


def test_bad_start_marker_closes_the_connection(backend):
    c = backend.client()
    c.sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert c.recv(timeout=5) is None
    assert "bad_start_marker" in backend.stop()


@pytest.mark.parametrize("src", [("203.0.113.7", 4321, "203.0.113.7:4321"),
                                 ("2001:db8::5", 443, "[2001:db8::5]:443")])
def test_proxy_protocol_v2_client_address_is_reported(src):
    with ImDemoBackend(name="pp", proxy_protocol=True) as b:
        ip, port, expected = src
        dst = "127.0.0.1" if ":" not in ip else "::1"
        c = b.client(proxy_header=proxy_v2_header(ip, port, dst))
        frame, reply = c.login(1001)
        assert frame.status == 0 and reply["seen_addr"] == expected


def test_proxy_protocol_required_when_enabled():
    b = ImDemoBackend(name="pp", proxy_protocol=True)
    c = b.client()
    c.sock.sendall(C.encode_frame(C.HEARTBEAT, 1))
    assert c.recv(timeout=5) is None
    assert "no valid PROXY v2 header" in b.stop()


def test_chat_cli_sends_typed_messages_and_prints_incoming(backend):
    bob = backend.client()
    bob.login(1002)
    cli = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(C.__file__), "im_chat.py"),
                            "--connect", "127.0.0.1:%d" % backend.port, "--uid", "1001"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert "logged in as 1001" in cli.stdout.readline()
        cli.stdin.write("1002 hello from the cli\n")
        cli.stdin.flush()
        push = bob.wait_for(C.CHAT)
        assert C.decode_chat_message(push.body)["text"] == "hello from the cli"
        assert "OK msg" in cli.stdout.readline()  # its receipt
        bob.chat(1001, "hi back")
        assert cli.stdout.readline().strip() == "<1002> hi back"
    finally:
        cli.stdin.close()
        cli.wait(10)


def test_frame_codec_matches_tlv_md():
    frame = C.encode_frame(0x4001, 0x1234, b"abc", status=7, from_uid=1001, to_uid=1002)
    assert frame[:1] == b"\x09" and frame[-1:] == b"\x0a" and len(frame) == 1 + 20 + 3 + 1
    assert frame[3:5] == b"\x40\x01" and frame[5:7] == b"\x12\x34" and frame[17:21] == b"\0\0\0\3"
    frames, rest = C.decode_frames(frame + frame[:5])
    assert [(f.cmd, f.seq, f.status, f.from_uid, f.to_uid, f.body) for f in frames] == \
        [(0x4001, 0x1234, 7, 1001, 1002, b"abc")]
    assert rest == frame[:5]
    # Protobuf bodies round-trip, negative int64 included.
    body = C.encode_chat_message(7, "héllo", from_uid=9, client_msg_id="x", sent_at=-5)
    assert C.decode_chat_message(body) == {"from": 9, "to": 7, "text": "héllo",
                                           "client_msg_id": "x", "sent_at": -5, "server_msg_id": 0}
