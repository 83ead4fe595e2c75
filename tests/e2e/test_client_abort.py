"""A client that gives up while the gateway waits on an upstream for it: the wait ends, the
upstream connection is closed, no other node is tried, and the access log says 499 (nginx's
`proxy_ignore_client_abort off`). A client that only sends more (pipelining) is not one."""
import json
import socket
import threading
import time

import pytest

from conftest import free_port, route, wait_until
from test_tls import ca, client_context, issue, ssl_object, tls_gateway  # noqa: F401 (fixture)


class SilentBackend:
    """Accepts connections, reads whatever comes and never answers; remembers when each
    connection was opened and when the gateway closed it."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.opened, self.closed = [], []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            self.opened.append(time.time())
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        try:
            while c.recv(1 << 16):
                pass
        except OSError:
            pass
        self.closed.append(time.time())
        c.close()

    def stop(self):
        self.listener.close()


@pytest.fixture
def silent():
    made = []

    def make():
        made.append(SilentBackend())
        return made[-1]
    yield make
    for b in made:
        b.stop()


def access_lines(gw):
    return [json.loads(l) for l in gw.access_path.read_text().splitlines()]


def abandoned_request(gw, backends, send, connect=None):
    """Sends a request with `send(sock)` to nodes that never answer, gives up once a node has
    it, and returns how long the gateway took to close that node's connection."""
    s = connect() if connect else socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    send(s)
    assert wait_until(lambda: sum(len(b.opened) for b in backends) == 1)
    given_up = time.time()
    s.close()
    assert wait_until(lambda: sum(len(b.closed) for b in backends) == 1, timeout=3), \
        "the node's connection outlived the client"
    closed_after = max(max(b.closed, default=0) for b in backends) - given_up
    time.sleep(0.5)  # no other node gets the request
    assert sum(len(b.opened) for b in backends) == 1
    assert wait_until(lambda: access_lines(gw))
    line = access_lines(gw)[-1]
    assert line["status"] == 499 and line["attempts"] == 1
    return closed_after


def hanging_route(backends, **kw):
    # read timeout 20 s and two retries: without the watch the nodes are held for a minute
    return route("/*", [(b.port,) for b in backends],
                 upstream={"timeout": {"connect": 2, "send": 5, "read": 20}, "retries": 2}, **kw)


def test_a_client_giving_up_ends_the_upstream_wait_without_retries(gateway, silent):
    backends = [silent() for _ in range(3)]
    gw = gateway({"routes": [hanging_route(backends)]})
    took = abandoned_request(
        gw, backends, lambda s: s.sendall(b"GET /wait HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert took < 1.5


def test_a_streamed_body_then_giving_up(gateway, silent):
    # a body too large for the read buffer is streamed to the node; the watch starts after it
    backends = [silent() for _ in range(2)]
    gw = gateway({"routes": [hanging_route(backends)]})
    body = b"x" * (4 << 20)

    def send(s):
        s.sendall(b"PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.sendall(body)
    assert abandoned_request(gw, backends, send) < 1.5


def test_a_tls_client_giving_up(gateway, silent, ca, tmp_path):
    backends = [silent() for _ in range(2)]
    port = free_port()
    gw = tls_gateway(gateway, {"routes": [hanging_route(backends)],
                               "ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"])]},
                     port)

    def connect():
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        return client_context(ca).wrap_socket(raw, server_hostname="a.test")
    assert abandoned_request(
        gw, backends, lambda s: s.sendall(b"GET /wait HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        connect) < 1.5


def test_pipelined_requests_during_a_slow_answer_are_not_giving_up(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)])]})
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(b"GET /slow/700 HTTP/1.1\r\nHost: a\r\n\r\n")
    time.sleep(0.3)  # the first request waits on the node; the next one arrives meanwhile
    s.sendall(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
    got = b""
    deadline = time.time() + 5
    while got.count(b"HTTP/1.1 200") < 2 and time.time() < deadline:
        got += s.recv(65536)
    s.close()
    assert got.count(b"HTTP/1.1 200") == 2 and b"/second" in got
