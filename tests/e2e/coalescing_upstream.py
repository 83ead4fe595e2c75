"""A test upstream (plain or TLS on ssl.MemoryBIO) that answers each request and then sends `extra` bytes as a separate TLS record, both in ONE TCP send: bytes behind a response that read-ahead takes in with it."""
import socket, ssl, threading


class CoalescingUpstream:
    """Answers each request with `reply(target)` (bytes, a whole HTTP response) and then
    `extra` (bytes) as a separate TLS record, both flushed in ONE TCP send. tls=None: plain."""

    def __init__(self, tls=None, extra=b""):
        self.tls, self.extra = tls, extra
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests, self.connections = [], 0

    def start(self):
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self.listener.close()

    def _accept(self):
        while True:
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        buf = b""
        if self.tls:
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = self.tls.wrap_bio(inc, out, server_side=True)

            def flush():
                d = out.read()
                if d:
                    s.sendall(d)

            def fill():
                d = s.recv(65536)
                if not d:
                    raise EOFError
                inc.write(d)
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    flush()
                    fill()
            flush()

            def read():
                while True:
                    try:
                        return obj.read(65536)
                    except ssl.SSLWantReadError:
                        flush()
                        fill()

            def send(*records):
                for r in records:
                    if r:
                        obj.write(r)
                flush()  # every record in one send()
        else:
            def read():
                d = s.recv(65536)
                if not d:
                    raise EOFError
                return d

            def send(*records):
                s.sendall(b"".join(records))
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    buf += read()
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode().split("\r\n")
                target = lines[0].split(" ")[1]
                n = 0
                for l in lines[1:]:
                    k, v = l.split(":", 1)
                    if k.lower() == "content-length":
                        n = int(v)
                while len(buf) < n:
                    buf += read()
                buf = buf[n:]
                self.requests.append(target)
                body = f"answer for {target}".encode()
                resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                send(resp, self.extra)
        except (EOFError, OSError, ssl.SSLError):
            pass
        finally:
            s.close()
