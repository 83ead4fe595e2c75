#!/usr/bin/env python3
"""tlv-bridge cost per message: web clients (JSON envelopes over WebSocket, converted to TLV +
protobuf and back) beside TCP clients on the tlv stream route (raw frames, decoded and relayed),
both through one Portico worker to the same demo IM backend, in one run.

    /usr/bin/python3 bench/bridge_bench.py [build dir] [seconds] [clients]

Each client keeps one heartbeat (0x9001, answered by the backend with 0x9002) in flight. The
load generator is Python, so it, not Portico, sets the rate: the figure is Portico's CPU per
message (a request and its reply), from /proc, with Portico on cpu0 and everything else on cpu1.
Figures: bench/README.md.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../demo"))
import im_chat as C  # noqa: E402
import websockets  # noqa: E402

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../build"))
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 5
CLIENTS = int(sys.argv[3]) if len(sys.argv) > 3 else 20
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """(user, system) CPU seconds of the process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


async def ws_client(url, until, counts):
    async with websockets.connect(url) as ws:
        seq = 0
        while time.monotonic() < until:
            seq = (seq + 1) & 0xFFFF
            await ws.send(json.dumps({"id": seq, "cmd": C.HEARTBEAT, "data": {"sent_at": seq}}))
            reply = json.loads(await ws.recv())
            assert reply["cmd"] == C.HEARTBEAT_REPLY and reply["id"] == seq, reply
            counts[0] += 1


async def tcp_client(port, until, counts):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frames = C.FrameReader()
    seq = 0
    while time.monotonic() < until:
        seq = (seq + 1) & 0xFFFF
        writer.write(C.encode_frame(C.HEARTBEAT, seq, C.encode_heartbeat(seq)))
        got = []
        while not got:
            frames.feed(await reader.read(65536))
            got = frames.frames()
        assert got[0].cmd == C.HEARTBEAT_REPLY and got[0].seq == seq
        counts[0] += 1
    writer.close()


async def measure(name, make_client, pid):
    counts = [0]
    warm = time.monotonic() + 1
    await asyncio.gather(*(make_client(warm, [0]) for _ in range(CLIENTS)))
    until = time.monotonic() + SECONDS
    (u0, s0), t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.gather(*(make_client(until, counts) for _ in range(CLIENTS)))
    (u1, s1), elapsed = cpu_seconds(pid), time.monotonic() - t0
    msgs = counts[0]
    user, system = 1e6 * (u1 - u0) / msgs, 1e6 * (s1 - s0) / msgs
    print(f"{name:28} {msgs / elapsed:8.0f} msg/s  CPU/msg: {user + system:6.1f} us "
          f"(user {user:5.1f}, kernel {system:5.1f}), {100 * (u1 - u0 + s1 - s0) / elapsed:.0f}% "
          f"of a core", flush=True)
    return user


def main():
    work = tempfile.mkdtemp(prefix="portico-bridge-bench.")
    backend_port, http_port, stream_port = free_port(), free_port(), free_port()
    with open(os.path.join(HERE, "../conf/im_demo.proto")) as f:
        proto = f.read()
    types = {"0x9001": "portico.im_demo.Heartbeat", "0x9002": "portico.im_demo.Heartbeat"}
    upstream = {"nodes": {f"127.0.0.1:{backend_port}": 1}}
    with open(os.path.join(work, "routes.yaml"), "w") as f:
        yaml.safe_dump({
            "protos": [{"id": "im", "content": proto}],
            "routes": [{"id": "webim", "uri": "/im/ws", "upstream": upstream,
                        "plugins": {"tlv-bridge": {"proto_id": "im", "types": types}}}],
            "stream_routes": [{"id": "im", "upstream": upstream, "protocol": {"name": "tlv"}}]},
            f)
    with open(os.path.join(work, "config.yaml"), "w") as f:
        yaml.safe_dump({"node": {"listen": [f"127.0.0.1:{http_port}"],
                                 "stream_listen": [f"127.0.0.1:{stream_port}"], "workers": 1},
                        "config": {"provider": "yaml", "file": "routes.yaml"},
                        "log": {"access": "off", "error": os.path.join(work, "error.log")},
                        "admin": {"listen": f"127.0.0.1:{free_port()}",
                                  "keys": [{"key": "bridge-bench-key-0123456789"}]},
                        "control": {"listen": f"127.0.0.1:{free_port()}"}}, f)
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["taskset", "-c", "1", os.path.join(BUILD, "portico-im-demo"), "--listen",
             f"127.0.0.1:{backend_port}", "--name", "bench"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        procs[-1].stdout.readline()
        procs.append(subprocess.Popen(
            ["taskset", "-c", "0", os.path.join(BUILD, "portico"), "start", "-c",
             os.path.join(work, "config.yaml")], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        pid = procs[-1].pid
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        os.sched_setaffinity(0, {1})
        print(f"{CLIENTS} clients, one heartbeat in flight each, {SECONDS:.0f} s per row "
              f"(Portico on cpu0, load and backend on cpu1)")
        url = f"ws://127.0.0.1:{http_port}/im/ws"
        web = asyncio.run(measure("web: JSON over WebSocket", lambda u, c: ws_client(url, u, c),
                                  pid))
        tcp = asyncio.run(measure("tcp: TLV stream route", lambda u, c: tcp_client(stream_port,
                                                                                    u, c), pid))
        print(f"user-space CPU per message, web / tcp: {web / tcp:.2f} (kernel time depends on "
              f"the rate each Python client reaches, so compare user time)")
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    main()
