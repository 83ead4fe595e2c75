"""A small, controllable HTTP/1.1 upstream for end-to-end tests (raw sockets, one thread per
connection, keep-alive). The path chooses the behaviour:

  /status/N     answer status N            /slow/MS    wait MS ms, then echo
  /chunked      chunked response + trailer /close      body delimited by closing the connection
  /big/N        N bytes, Content-Length    /bigchunked/N  N bytes, chunked
  /sink         read the body, answer its size (streams; keeps nothing)
  /hang         read the request, never answer
  /reset        read the request, reset the connection
  /ws           WebSocket handshake, then echo every frame
  anything else echo the request as JSON
"""
import base64
import hashlib
import json
import socket
import struct
import threading
import time


class Request:
    def __init__(self, method, target, version, headers, body_len, body):
        self.method, self.target, self.version = method, target, version
        self.headers = headers  # list of (name, value)
        self.body_len, self.body = body_len, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError
        self.buf += data

    def read_until(self, marker):
        while marker not in self.buf:
            self.fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n, keep=True):
        """Reads n bytes; returns them when keep, else only counts them."""
        chunks, got = [], 0
        while got < n:
            if not self.buf:
                self.fill()
            take = self.buf[: n - got]
            self.buf = self.buf[len(take):]
            got += len(take)
            if keep:
                chunks.append(take)
        return b"".join(chunks)


KEEP_LIMIT = 1 << 20


class TestUpstream:
    def __init__(self, name="up", port=None, delay_ms=0, tls=None, host="127.0.0.1"):
        self.name = name
        self.tls = tls  # an ssl.SSLContext (server side): speak HTTPS
        self.delay_ms = delay_ms  # every request waits this long first (a slower line)
        self.health_status = 200  # what GET /health answers (active health checks)
        self.fail_status = 0  # when set, every other request is answered with this status
        self.hang = False  # when set, requests are read and never answered
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port or 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests = []
        self.lock = threading.Lock()
        self.running = False
        self.socks = set()

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        self.listener.listen(1024)
        self.running = True
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def stop(self):
        self.running = False
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            for s in list(self.socks):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def drop_connections(self):
        """Closes every open connection with a FIN, as a node does with idle keep-alive ones."""
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept_loop(self):
        while self.running:
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.socks.add(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    # ------------------------------------------------------------------ serving
    def _serve(self, s):
        if self.tls is not None:
            try:
                s = self.tls.wrap_socket(s, server_side=True)
            except OSError:
                s.close()
                return
        c = Conn(s)
        try:
            while self.running:
                req = self._read_request(c)
                with self.lock:
                    self.requests.append(req)
                if not self._dispatch(c, req):
                    break
                if (req.header("connection") or "").lower() == "close":
                    break
        except (EOFError, OSError):
            pass
        finally:
            with self.lock:
                self.socks.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def _read_request(self, c):
        head = c.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        method, target, version = lines[0].split(" ")
        headers = []
        for line in lines[1:]:
            if line:
                k, v = line.split(":", 1)
                headers.append((k.strip(), v.strip()))
        req = Request(method, target, version, headers, 0, b"")
        sink = target.startswith("/sink")
        if (req.header("transfer-encoding") or "").lower() == "chunked":
            body, total = [], 0
            while True:
                size = int(c.read_until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    c.read_until(b"\r\n")  # (no trailers are expected from the gateway)
                    break
                data = c.read_exact(size, keep=not sink)
                total += size
                if not sink and total <= KEEP_LIMIT:
                    body.append(data)
                c.read_exact(2)
            req.body_len, req.body = total, b"".join(body)
        elif req.header("content-length"):
            n = int(req.header("content-length"))
            data = c.read_exact(n, keep=not sink and n <= KEEP_LIMIT)
            req.body_len, req.body = n, data
        return req

    def _send(self, c, status, body=b"", headers=None, reason="OK"):
        h = [f"HTTP/1.1 {status} {reason}"]
        for k, v in (headers or {}).items():
            h.append(f"{k}: {v}")
        if status not in (204, 304) and not any(k.lower() == "content-length" for k in (headers or {})):
            h.append(f"Content-Length: {len(body)}")
        c.sock.sendall(("\r\n".join(h) + "\r\n\r\n").encode() + body)

    def _dispatch(self, c, req):
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000.0)
        path = req.target.split("?")[0]
        parts = path.strip("/").split("/")
        kind = parts[0]
        if self.hang:
            while self.running and self.hang:
                time.sleep(0.05)
            return False
        if kind == "health":
            self._send(c, self.health_status, b"health\n", {"X-Upstream": self.name})
        elif self.fail_status:
            self._send(c, self.fail_status, b"failing\n", {"X-Upstream": self.name})
        elif kind == "status":
            code = int(parts[1])
            body = b"" if code in (204, 304) else f"status {code}\n".encode()
            self._send(c, code, body, {"X-Upstream": self.name})
        elif kind == "slow":
            time.sleep(int(parts[1]) / 1000.0)
            self._echo(c, req)
        elif kind == "chunked":
            c.sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Upstream: " +
                           self.name.encode() + b"\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n"
                           b"0\r\nX-Trailer: secret\r\n\r\n")
        elif kind == "close":
            c.sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
            return False
        elif kind == "big":
            n = int(parts[1])
            c.sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n".encode())
            self._stream_zeros(c, n, chunked=False)
        elif kind == "bigchunked":
            n = int(parts[1])
            c.sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            self._stream_zeros(c, n, chunked=True)
        elif kind == "sink":
            self._send(c, 200, json.dumps({"received": req.body_len}).encode(),
                       {"Content-Type": "application/json"})
        elif kind == "hang":
            while self.running:
                time.sleep(0.05)
            return False
        elif kind == "reset":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        elif kind == "ws":
            self._websocket(c, req)
            return False
        else:
            self._echo(c, req)
        return True

    def _echo(self, c, req):
        out = {"upstream": self.name, "method": req.method, "target": req.target,
               "version": req.version, "headers": req.headers, "body_len": req.body_len,
               "body": req.body.decode("latin-1")}
        # Over TLS with a verified client certificate: whose it was (mTLS to upstreams).
        peer = c.sock.getpeercert() if hasattr(c.sock, "getpeercert") else None
        if peer:
            out["client_cn"] = dict(rdn[0] for rdn in peer["subject"]).get("commonName")
        self._send(c, 200, json.dumps(out).encode(),
                   {"Content-Type": "application/json", "X-Upstream": self.name})

    def _stream_zeros(self, c, n, chunked):
        block = b"\0" * (1 << 20)
        left = n
        while left > 0:
            part = block[: min(left, len(block))]
            if chunked:
                c.sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            else:
                c.sock.sendall(part)
            left -= len(part)
        if chunked:
            c.sock.sendall(b"0\r\n\r\n")

    def _websocket(self, c, req):
        key = req.header("sec-websocket-key")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                               .encode()).digest()).decode()
        c.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        while True:
            b0, b1 = c.read_exact(2)
            opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", c.read_exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", c.read_exact(8))[0]
            mask = c.read_exact(4) if masked else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(c.read_exact(n)))
            if opcode == 8:  # close: answer and stop
                c.sock.sendall(bytes([0x88, len(data)]) + data)
                return
            if opcode == 9:  # ping -> pong
                opcode = 10
            hdr = bytes([0x80 | opcode])
            hdr += bytes([n]) if n < 126 else (bytes([126]) + struct.pack("!H", n) if n < 65536
                                               else bytes([127]) + struct.pack("!Q", n))
            c.sock.sendall(hdr + data)
