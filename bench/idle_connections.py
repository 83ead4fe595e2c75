#!/usr/bin/env python3
"""RSS cost of idle keep-alive client connections: opens N connections to Portico, sends one
request on each (so each has been a real keep-alive connection), waits until they are idle past
the buffered-idle phase, then reads Portico's RSS. Prints KiB per connection.

usage: idle_connections.py PORTICO_BIN [N] [burst|tls]   (starts its own Portico and upstream)
  default: each connection sends its request and reads the answer before the next opens;
  burst:   all N requests are sent before any answer is read (N requests in flight at once);
  tls:     one by one, over TLS (an `ssl: true` listener, ECDSA P-256 certificate)."""
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/e2e"))
from upstream import TestUpstream  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    binary, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 9000
    burst = len(sys.argv) > 3 and sys.argv[3] == "burst"
    tls = len(sys.argv) > 3 and sys.argv[3] == "tls"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    up = TestUpstream().start()
    port = free_port()
    d = tempfile.mkdtemp()
    listen = f"{{addr: '127.0.0.1:{port}', ssl: true}}" if tls else f"'127.0.0.1:{port}'"
    with open(f"{d}/config.yaml", "w") as f:
        f.write(f"node: {{listen: [{listen}], workers: 1, keepalive_timeout: 300s}}\n"
                f"log: {{access: 'off'}}\ncontrol: {{listen: '127.0.0.1:{free_port()}'}}\n"
                f"admin: {{listen: '127.0.0.1:{free_port()}'}}\n")
    with open(f"{d}/routes.yaml", "w") as f:
        f.write(f"routes: [{{id: 1, uri: '/*', upstream: {{nodes: {{'127.0.0.1:{up.port}': 1}}}}}}]\n")
    context = None
    if tls:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-keyout",
                        f"{d}/k.pem", "-out", f"{d}/c.pem", "-subj", "/CN=idle.test"],
                       check=True, capture_output=True)
        with open(f"{d}/routes.yaml", "a") as f:
            f.write("ssls: [" + json.dumps({"id": 1, "snis": ["idle.test"],
                                            "cert": open(f"{d}/c.pem").read(),
                                            "key": open(f"{d}/k.pem").read()}) + "]\n")
        context = ssl.create_default_context(cafile=f"{d}/c.pem")

    def connect():
        s = socket.create_connection(("127.0.0.1", port))
        return context.wrap_socket(s, server_hostname="idle.test") if context else s
    proc = subprocess.Popen([binary, "start", "-c", f"{d}/config.yaml"], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    conns = []
    try:
        # warm up: a few requests so pools and buffers exist
        for _ in range(10):
            s = connect()
            s.sendall(b"GET /w HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            while s.recv(65536):
                pass
            s.close()
        time.sleep(0.5)
        base = rss_kib(proc.pid)
        def read_answer(s):
            got = b""
            while b"}" not in got:
                got += s.recv(65536)
        for i in range(n):
            s = connect()
            s.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            conns.append(s)
            if not burst:
                read_answer(s)
        if burst:
            for s in conns:
                read_answer(s)
        time.sleep(12)  # past the 2 s buffered-idle phase and a memory trim (10 s)
        after = rss_kib(proc.pid)
        per = (after - base) / n
        print(f"{n} idle keep-alive {'TLS ' if tls else ''}connections ({'burst' if burst else 'one by one'}): RSS {base} -> {after} KiB, {per:.2f} KiB each")
    finally:
        for s in conns:
            s.close()
        proc.terminate()
        proc.wait()
        up.stop()


if __name__ == "__main__":
    main()
