#!/usr/bin/env python3
"""RSS cost of idle stream connections through a proxy: opens N connections to PORT, sends one
TLV frame on each and reads its echo (so each has a live upstream connection), waits past
Portico's buffered-idle phase, then reads the proxy's RSS. Prints KiB per client connection.
usage: stream_idle.py PORT PROXY_PID NAME [N]"""
import os
import resource
import socket
import struct
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def frame(seq):
    body = b"x" * 16
    return b"\x09" + struct.pack(">BBHHHIII", 1, 0, 0x9001, seq & 0xFFFF, 0, 1, 0, len(body)) + \
        body + b"\x0a"


def main():
    port, pid, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 9000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    time.sleep(3)  # connections of earlier runs have gone idle and been parked
    before = rss_kib(pid)
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(frame(i))
        want = len(frame(i))
        got = b""
        while len(got) < want:
            got += s.recv(want - len(got))
        socks.append(s)
    time.sleep(4)  # past the 2 s buffered-idle phase: parked
    after = rss_kib(pid)
    print(f"{name}: {n} idle connections, RSS {before} -> {after} KiB, "
          f"{(after - before) / n:.2f} KiB per connection")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
