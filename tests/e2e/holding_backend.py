"""A backend that holds connections: it accepts them and never closes them, reads nothing until
told to (so socket buffers fill, and writers toward it wait), and can send a tick now and then,
whole or one byte at a time. For the timeouts and backpressure of whatever sits in front."""
import socket
import threading
import time


class HoldingBackend:
    """Accepts connections and never closes them; sends `tick` every `every` seconds while
    ticking (None: never), or one byte of it at a time with `trickle`. Reads nothing until
    read() is called; `rcvbuf` shrinks its sockets' receive buffers (and so the TCP window)."""

    def __init__(self, tick=None, every=0.3, trickle=False, rcvbuf=None):
        self.listener = socket.socket()
        if rcvbuf:  # (inherited by accepted sockets)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.reading = threading.Event()
        self.tick, self.every = tick, every
        self.pieces = [tick[i:i + 1] for i in range(len(tick))] if trickle else [tick]
        self.ticking = threading.Event()
        if tick:
            self.ticking.set()
        self.conns = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._drain, args=(c,), daemon=True).start()
            if self.tick:
                threading.Thread(target=self._ticks, args=(c,), daemon=True).start()

    def _ticks(self, c):
        sent = 0
        while self.running:
            if self.ticking.is_set():
                try:
                    c.sendall(self.pieces[sent % len(self.pieces)])
                except OSError:
                    return
                sent += 1
            time.sleep(self.every)

    def read(self):
        """From now on, reads (and drops) whatever arrives."""
        self.reading.set()

    def _drain(self, c):
        self.reading.wait()
        try:
            while c.recv(1 << 20):
                pass
        except OSError:  # (closed by stop())
            pass

    def stop(self):
        self.running = False
        self.reading.set()
        self.listener.close()
        for c in self.conns:
            c.close()
