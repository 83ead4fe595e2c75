"""A loopback TCP relay to one port, for putting a flaky link between the gateway and etcd.
Subclasses may hold data back (on_data). After freeze(), the connections open at that moment
stop forwarding in both directions and never close (what a NAT that forgot them, or a dead
middlebox on a cross-border link, looks like from either end), while later connections work."""
import socket
import threading


class TcpRelay:
    def __init__(self, target_port):
        self.target_port = target_port
        self._lock = threading.Lock()
        self._conns = []  # (client socket, target socket, frozen flag)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def on_data(self, data, to_target, state):
        """Called before `data` is forwarded; may sleep, or return False to drop it. `state`: a
        dict per connection."""

    def freeze(self):
        """Silences every connection open now; new ones are not affected."""
        with self._lock:
            for _, _, frozen in self._conns:
                frozen.set()

    def close(self):
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in [self._listener] + [s for c, t, _ in conns for s in (c, t)]:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                target = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                target.settimeout(None)
            except OSError:
                client.close()
                continue
            frozen, state = threading.Event(), {}
            with self._lock:
                self._conns.append((client, target, frozen))
            for src, dst, to_target in ((client, target, True), (target, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, to_target, frozen, state),
                                 daemon=True).start()

    def _pump(self, src, dst, to_target, frozen, state):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if frozen.is_set():
                if not data:
                    return  # the close is swallowed too: the other end never learns
                continue  # read and dropped, so the sender sees no backpressure either
            if not data:
                break
            if self.on_data(data, to_target, state) is False:
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
