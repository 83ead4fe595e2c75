"""The demo IM backend (portico-im-demo) as a test fixture, and the demo client library
(demo/im_chat.py) for tests that speak TLV."""
import os
import subprocess
import sys

from processes import free_port, stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../demo"))
import im_chat  # noqa: E402,F401 (re-exported for tests)

_BUILD = os.path.dirname(os.environ.get("PORTICO_BIN", os.path.join(HERE, "../../build/portico")))
IM_DEMO_BIN = os.environ.get("PORTICO_IM_DEMO_BIN", os.path.join(_BUILD, "portico-im-demo"))


class ImDemoBackend:
    """Starts portico-im-demo on a free loopback port; stop() ends it (by PID)."""

    def __init__(self, name="im-demo", proxy_protocol=False, port=None):
        self.name = name
        self.port = port or free_port()
        args = [IM_DEMO_BIN, "--listen", f"127.0.0.1:{self.port}", "--name", name]
        if proxy_protocol:
            args.append("--proxy-protocol")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()  # "portico-im-demo NAME listening on HOST:PORT"
        if "listening on" not in line:
            self.stop()
            raise RuntimeError("portico-im-demo did not start: " + self.proc.stderr.read())

    def client(self, **kwargs):
        return im_chat.ImClient("127.0.0.1", self.port, **kwargs)

    def stop(self):
        stop_process(self.proc)
        self.proc.stdout.close()
        return self.proc.stderr.read()  # the log: connections, logins, why streams closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def proxy_v2_header(src_ip, src_port, dst_ip="127.0.0.1", dst_port=9100):
    """A PROXY protocol v2 header (PROXY command, TCP over IPv4 or IPv6)."""
    import ipaddress
    import struct
    src, dst = ipaddress.ip_address(src_ip), ipaddress.ip_address(dst_ip)
    family = 0x11 if src.version == 4 else 0x21
    addrs = src.packed + dst.packed + struct.pack(">HH", src_port, dst_port)
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, family]) + struct.pack(">H", len(addrs))
            + addrs)
