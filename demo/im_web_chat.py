#!/usr/bin/env python3
"""The demo chat as a web client sees it: JSON over WebSocket through Portico's tlv-bridge
(docs/bridge.md), talking to the same TLV backend as demo/im_chat.py's TCP users.

    python3 demo/im_web_chat.py --url ws://127.0.0.1:9080/im/ws --uid 1002
    > 1001 hello          sends "hello" to user 1001; incoming messages and receipts print

Every message is the JSON envelope of TLV.md: {"id", "cmd", "from", "to", "status", "data"}.
--raw prints the envelopes as they arrive. --poll uses long polling over plain HTTP instead of a
WebSocket (docs/bridge.md "Long polling"). Needs python3-websockets (Debian).
"""
import argparse
import asyncio
import itertools
import json
import sys
import time
import urllib.error
import urllib.request

import websockets

LOGIN, LOGIN_REPLY, CHAT, RECEIPT = 0x1001, 0x1002, 0x4001, 0x4002
HEARTBEAT, HEARTBEAT_REPLY = 0x9001, 0x9002


def describe(env):
    data = env.get("data") or {}
    if "error" in env:
        return "  [refused: %s]" % env["error"]
    if env["cmd"] == CHAT:
        return "<%s> %s" % (data.get("from"), data.get("text"))
    if env["cmd"] == RECEIPT:
        msg = data.get("server_msg_id")
        return "  [id %d %s%s]" % (env["id"], data.get("result"), " msg %s" % msg if msg else "")
    if env["cmd"] == HEARTBEAT_REPLY:
        return None
    return "  %s" % json.dumps(env)


async def stdin_lines():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        yield line.decode().strip()


class PollingLink:
    """The session over long polling, with the WebSocket's send/recv/async-for shape."""

    def __init__(self, url):
        self.url = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        self.session, self.next, self.queue = "new", 0, []

    def _call(self, method, body=None, query=""):
        req = urllib.request.Request(self.url + query, data=body, method=method,
                                     headers={"X-Tlv-Session": self.session})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            sys.exit("the session ended: %s" % e.read().decode(errors="replace"))

    async def __aenter__(self):
        opened = await asyncio.to_thread(self._call, "POST", b"")
        self.session = opened["session"]
        return self

    async def __aexit__(self, *exc):
        await asyncio.to_thread(self._call, "DELETE")

    async def send(self, text):
        await asyncio.to_thread(self._call, "POST", text.encode())

    async def recv(self):
        while not self.queue:
            answer = await asyncio.to_thread(self._call, "GET", None, "?next=%d" % self.next)
            self.next = answer["next"]
            self.queue = [json.dumps(m) for m in answer["messages"]]
        return self.queue.pop(0)

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self.recv()


async def chat(args):
    ids = itertools.count(1)
    link = PollingLink(args.url) if args.poll else websockets.connect(args.url)
    async with link as ws:
        login_id = next(ids)
        await ws.send(json.dumps({"id": login_id, "cmd": LOGIN,
                                  "data": {"uid": args.uid, "token": args.token, "device": "web"}}))
        reply = json.loads(await ws.recv())
        if reply.get("status") or reply.get("data", {}).get("result") != "OK":
            sys.exit("login refused: %s" % json.dumps(reply))
        print("logged in as %d on %s via the bridge (it sees us as %s). Type: <uid> <text>"
              % (args.uid, reply["data"].get("server") or "?",
                 reply["data"].get("seen_addr") or "?"), flush=True)

        async def receive():
            async for message in ws:
                env = json.loads(message)
                text = json.dumps(env) if args.raw else describe(env)
                if text:
                    print(text, flush=True)

        async def heartbeat():
            while True:
                await asyncio.sleep(args.heartbeat)
                await ws.send(json.dumps({"id": next(ids), "cmd": HEARTBEAT,
                                          "data": {"sent_at": int(time.time() * 1000)}}))

        async def send():
            async for line in stdin_lines():
                to, _, text = line.partition(" ")
                if not to.isdigit() or not text:
                    print("  usage: <uid> <text>", flush=True)
                    continue
                await ws.send(json.dumps({"id": next(ids), "cmd": CHAT, "from": args.uid,
                                          "to": int(to), "data": {"to": int(to), "text": text}}))

        tasks = [asyncio.create_task(t) for t in (receive(), heartbeat(), send())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()


def main():
    ap = argparse.ArgumentParser(description="demo IM chat client (JSON over WebSocket or HTTP)")
    ap.add_argument("--url", default="ws://127.0.0.1:9080/im/ws")
    ap.add_argument("--uid", type=int, required=True)
    ap.add_argument("--token", default="demo")
    ap.add_argument("--heartbeat", type=float, default=30.0, help="seconds between heartbeats")
    ap.add_argument("--raw", action="store_true", help="print the JSON envelopes as they arrive")
    ap.add_argument("--poll", action="store_true", help="long polling instead of a WebSocket")
    asyncio.run(chat(ap.parse_args()))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
