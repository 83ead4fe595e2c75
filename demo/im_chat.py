#!/usr/bin/env python3
"""A tiny chat client for the demo IM protocol (docs: /TLV.md, conf/im_demo.proto).

    python3 demo/im_chat.py --connect 127.0.0.1:9100 --uid 1001
    > 1002 hello          sends "hello" to user 1002; incoming messages and receipts print

Also a module for tests: encode_frame/FrameReader for TLV frames (TLV.md's default layout) and
encode_*/decode_* for the demo's protobuf bodies, hand-encoded (python3 stdlib only).
"""
import argparse
import itertools
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass

START, END = 0x09, 0x0A
HEADER = struct.Struct(">BBHHHIII")  # version flags cmd seq status from to body_len

LOGIN, LOGIN_REPLY = 0x1001, 0x1002
CHAT, RECEIPT = 0x4001, 0x4002
HEARTBEAT, HEARTBEAT_REPLY = 0x9001, 0x9002

RESULTS = {0: "OK", 1: "BAD_TOKEN", 2: "NOT_LOGGED_IN", 3: "RECEIVER_OFFLINE",
           4: "BAD_REQUEST", 5: "UNKNOWN_COMMAND"}


# --- TLV frames -------------------------------------------------------------------------------

@dataclass
class Frame:
    cmd: int
    seq: int
    status: int = 0
    from_uid: int = 0
    to_uid: int = 0
    body: bytes = b""
    version: int = 1
    flags: int = 0


def encode_frame(cmd, seq, body=b"", status=0, from_uid=0, to_uid=0, version=1, flags=0):
    header = HEADER.pack(version, flags, cmd, seq & 0xFFFF, status, from_uid, to_uid, len(body))
    return bytes([START]) + header + body + bytes([END])


class FrameError(Exception):
    pass


class FrameReader:
    """Feed bytes in, take whole frames out."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def frames(self):
        out = []
        while len(self.buf) >= 1 + HEADER.size:
            if self.buf[0] != START:
                raise FrameError("bad start marker")
            version, flags, cmd, seq, status, frm, to, n = HEADER.unpack_from(self.buf, 1)
            total = 1 + HEADER.size + n + 1
            if len(self.buf) < total:
                break
            if self.buf[total - 1] != END:
                raise FrameError("bad end marker")
            body = bytes(self.buf[1 + HEADER.size:total - 1])
            out.append(Frame(cmd, seq, status, frm, to, body, version, flags))
            del self.buf[:total]
        return out


def decode_frames(data):
    """All whole frames in `data` (bytes), and the bytes left over."""
    reader = FrameReader()
    reader.feed(data)
    frames = reader.frames()
    return frames, bytes(reader.buf)


# --- protobuf wire format (varint and length-delimited fields only) ---------------------------

def _varint(n):
    n &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_fields(fields):
    """fields: [(number, int | str | bytes)]; proto3 defaults (0, "") are left out."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            if value:
                out += _varint(number << 3) + _varint(value)
        else:
            data = value.encode() if isinstance(value, str) else value
            if data:
                out += _varint(number << 3 | 2) + _varint(len(data)) + data
    return bytes(out)


def decode_fields(data):
    """{number: int | bytes}; the last occurrence wins, fixed-width fields are skipped."""
    fields, pos = {}, 0

    def read_varint():
        nonlocal pos
        n = shift = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise ValueError("truncated varint")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while pos < len(data):
        key = read_varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields[number] = read_varint()
        elif wire == 2:
            n = read_varint()
            if pos + n > len(data):
                raise ValueError("truncated field")
            fields[number] = bytes(data[pos:pos + n])
            pos += n
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
    return fields


def _signed64(n):
    return n - (1 << 64) if n >= 1 << 63 else n


def _decode(data, schema):
    """schema: {number: (name, "int" | "sint64" | "str")} -> dict with every name."""
    raw = decode_fields(data)
    out = {}
    for number, (name, kind) in schema.items():
        v = raw.get(number)
        if kind == "str":
            out[name] = v.decode("utf-8", "replace") if isinstance(v, bytes) else ""
        else:
            v = v if isinstance(v, int) else 0
            out[name] = _signed64(v) if kind == "sint64" else v
    return out


LOGIN_REQUEST = {1: ("uid", "int"), 2: ("token", "str"), 3: ("device", "str")}
LOGIN_REPLY_FIELDS = {1: ("result", "int"), 2: ("uid", "int"), 3: ("server", "str"),
                      4: ("seen_addr", "str")}
CHAT_MESSAGE = {1: ("from", "int"), 2: ("to", "int"), 3: ("text", "str"),
                4: ("client_msg_id", "str"), 5: ("sent_at", "sint64"), 6: ("server_msg_id", "int")}
RECEIPT_FIELDS = {1: ("result", "int"), 2: ("client_msg_id", "str"), 3: ("server_msg_id", "int"),
                  4: ("server", "str")}
HEARTBEAT_FIELDS = {1: ("sent_at", "sint64"), 2: ("server", "str")}


def _encode(values, schema):
    return encode_fields([(n, values.get(name, 0 if kind != "str" else ""))
                          for n, (name, kind) in schema.items()])


def encode_login_request(uid, token="demo", device="cli"):
    return _encode({"uid": uid, "token": token, "device": device}, LOGIN_REQUEST)


def encode_chat_message(to, text, from_uid=0, client_msg_id="", sent_at=None, server_msg_id=0):
    sent_at = int(time.time() * 1000) if sent_at is None else sent_at
    return _encode({"from": from_uid, "to": to, "text": text, "client_msg_id": client_msg_id,
                    "sent_at": sent_at, "server_msg_id": server_msg_id}, CHAT_MESSAGE)


def encode_heartbeat(sent_at=None, server=""):
    sent_at = int(time.time() * 1000) if sent_at is None else sent_at
    return _encode({"sent_at": sent_at, "server": server}, HEARTBEAT_FIELDS)


def encode_login_reply(**values):
    return _encode(values, LOGIN_REPLY_FIELDS)


def encode_receipt(**values):
    return _encode(values, RECEIPT_FIELDS)


def decode_login_request(body): return _decode(body, LOGIN_REQUEST)
def decode_login_reply(body): return _decode(body, LOGIN_REPLY_FIELDS)
def decode_chat_message(body): return _decode(body, CHAT_MESSAGE)
def decode_receipt(body): return _decode(body, RECEIPT_FIELDS)
def decode_heartbeat(body): return _decode(body, HEARTBEAT_FIELDS)


# --- a blocking client, for tests and the CLI -------------------------------------------------

class ImClient:
    def __init__(self, host, port, timeout=5.0, proxy_header=b"", tls=None, server_name=None):
        """tls: an ssl.SSLContext to speak TLS (after the PROXY header, if any), asking for
        server_name."""
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if proxy_header:
            self.sock.sendall(proxy_header)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_name)
        self.reader = FrameReader()
        self.pending = []
        self.seq = itertools.count(1)
        self.uid = 0

    def close(self):
        self.sock.close()

    def send(self, cmd, body=b"", seq=None, to_uid=0, status=0):
        seq = next(self.seq) & 0xFFFF if seq is None else seq
        self.sock.sendall(encode_frame(cmd, seq, body, status, self.uid, to_uid))
        return seq

    def recv(self, timeout=None):
        """The next frame, or None at EOF. Raises socket.timeout."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.reader.feed(data)
            self.pending.extend(self.reader.frames())
        return self.pending.pop(0)

    def wait_for(self, cmd, seq=None, timeout=5.0):
        """Receives until a frame with `cmd` (and `seq`) arrives; others are kept for later."""
        skipped, deadline = [], time.monotonic() + timeout
        try:
            while True:
                frame = self.recv(max(0.01, deadline - time.monotonic()))
                if frame is None:
                    raise EOFError("connection closed")
                if frame.cmd == cmd and (seq is None or frame.seq == seq):
                    return frame
                skipped.append(frame)
        finally:
            self.pending[:0] = skipped

    def login(self, uid, token="demo"):
        self.uid = uid
        seq = self.send(LOGIN, encode_login_request(uid, token))
        frame = self.wait_for(LOGIN_REPLY, seq)
        return frame, decode_login_reply(frame.body)

    def chat(self, to, text, client_msg_id=""):
        return self.send(CHAT, encode_chat_message(to, text, self.uid, client_msg_id), to_uid=to)


def describe(frame):
    if frame.cmd == CHAT:
        m = decode_chat_message(frame.body)
        return "<%d> %s" % (m["from"], m["text"])
    if frame.cmd == RECEIPT:
        r = decode_receipt(frame.body)
        return "  [seq %d %s%s]" % (frame.seq, RESULTS.get(frame.status, frame.status),
                                    " msg %d" % r["server_msg_id"] if r["server_msg_id"] else "")
    if frame.cmd == HEARTBEAT_REPLY:
        return None
    return "  [cmd 0x%04x seq %d status %d, %d body bytes]" % (frame.cmd, frame.seq,
                                                               frame.status, len(frame.body))


def main():
    ap = argparse.ArgumentParser(description="demo IM chat client (TLV + protobuf)")
    ap.add_argument("--connect", default="127.0.0.1:9100", help="host:port")
    ap.add_argument("--uid", type=int, required=True)
    ap.add_argument("--token", default="demo")
    ap.add_argument("--heartbeat", type=float, default=30.0, help="seconds between heartbeats")
    ap.add_argument("--tls", metavar="SERVER_NAME",
                    help="speak TLS to a stream listener with ssl, asking for this name")
    ap.add_argument("--cafile", help="with --tls: the CA to verify the gateway's certificate")
    args = ap.parse_args()
    host, port = args.connect.rsplit(":", 1)
    tls = None
    if args.tls:
        import ssl
        tls = ssl.create_default_context(cafile=args.cafile)
    client = ImClient(host, int(port), tls=tls, server_name=args.tls)
    frame, reply = client.login(args.uid, args.token)
    if frame.status:
        sys.exit("login refused: %s" % RESULTS.get(frame.status, frame.status))
    print("logged in as %d on %s (it sees us as %s). Type: <uid> <text>"
          % (args.uid, reply["server"] or "?", reply["seen_addr"] or "?"), flush=True)
    client.sock.settimeout(None)
    next_beat = time.monotonic() + args.heartbeat
    while True:
        for frame in client.pending:
            text = describe(frame)
            if text:
                print(text, flush=True)
        client.pending.clear()
        # TLS may hold decrypted bytes the socket no longer signals
        buffered = tls is not None and client.sock.pending() > 0
        ready, _, _ = select.select([client.sock, sys.stdin], [], [],
                                    0 if buffered else max(0.0, next_beat - time.monotonic()))
        if buffered:
            ready.append(client.sock)
        if time.monotonic() >= next_beat:
            client.send(HEARTBEAT, encode_heartbeat())
            next_beat = time.monotonic() + args.heartbeat
        if client.sock in ready:
            data = client.sock.recv(65536)
            if not data:
                sys.exit("server closed the connection")
            client.reader.feed(data)
            client.pending.extend(client.reader.frames())
        if sys.stdin in ready:
            line = sys.stdin.readline()
            if not line:
                return
            to, _, text = line.strip().partition(" ")
            if not to.isdigit() or not text:
                print("  usage: <uid> <text>", flush=True)
                continue
            client.chat(int(to), text)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
