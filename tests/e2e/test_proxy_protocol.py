"""PROXY protocol on HTTP listeners ({addr, proxy_protocol: true} in node.listen): the header's
source address becomes the client address the upstream sees (X-Real-IP, X-Forwarded-For), the
access log records and routes match on; a connection without a valid header from a trusted
peer is closed without a response. Headers are built byte by byte here, independently of the
gateway's own builders."""
import ipaddress
import json
import socket
import struct
import subprocess
import time

import pytest
import yaml

from conftest import PORTICO_BIN, route
from processes import free_port
from prom_text import parse as parse_metrics

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst, sport, dport, proto="TCP4"):
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, dst, sport, dport, command=0x21, tlvs=b""):
    """A v2 PROXY (or LOCAL, command=0x20) header for TCP over IPv4 or IPv6."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x11 if a.version == 4 else 0x21
    block = a.packed + b.packed + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(block)) + block


def request(path="/echo", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: pp.test\r\n{extra}\r\n".encode()


def read_responses(s, count):
    """`count` HTTP/1.1 responses with Content-Length bodies, as they come on `s` (pipelined
    ones may share a packet): [(status, {header: value}, body)]."""
    buf, out = b"", []

    def more(what):
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError(f"closed {what} after {buf!r}")
        return chunk
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            buf += more("before a head")
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(buf) < length:
            buf += more("mid-body")
        out.append((int(lines[0].split()[1]), headers, buf[:length]))
        buf = buf[length:]
    assert buf == b"", "unexpected bytes after the responses"
    return out


def read_response(s):
    """One HTTP/1.1 response with a Content-Length body: (status, {header: value}, body)."""
    return read_responses(s, 1)[0]


def echoed_headers(body):
    return {k.lower(): v for k, v in json.loads(body)["headers"]}


def closed_without_response(s, timeout=5):
    """True when the gateway closes the connection (FIN or reset) without sending a byte."""
    s.settimeout(timeout)
    try:
        data = s.recv(65536)
    except ConnectionResetError:
        return True
    assert data == b"", f"got a response: {data[:200]!r}"
    return True


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def metric(gw, reason):
    return parse_metrics(gw.control("/metrics").text).value(
        "portico_proxy_protocol_rejected_total", reason=reason)


@pytest.fixture
def pp(gateway, upstream):
    """A gateway with a plain listener (gw.port), a proxy_protocol listener trusting the default
    ranges (gw.pp_port) and one trusting only 10.0.0.0/8 (gw.strict_port, so loopback peers are
    untrusted). /echo goes to an echoing upstream; /office only for clients in 203.0.113.0/24."""
    up = upstream()
    gw = gateway({"routes": [route("/echo", [(up.port,)]),
                             route("/office", [(up.port,)], remote_addrs=["203.0.113.0/24"])]},
                 start=False, node={"client_header_timeout": 2})
    gw.pp_port, gw.strict_port = free_port(), free_port()
    cfg = gw.config()
    cfg["node"]["listen"] = [
        f"127.0.0.1:{gw.port}",
        {"addr": f"127.0.0.1:{gw.pp_port}", "proxy_protocol": True},
        {"addr": f"127.0.0.1:{gw.strict_port}", "proxy_protocol": True,
         "trusted_addresses": ["10.0.0.0/8"]},
    ]
    gw.config_path.write_text(yaml.safe_dump(cfg))
    gw.start()
    gw.wait_port(gw.pp_port)
    return gw


def test_v1_header_gives_the_upstream_the_real_client(pp):
    with connect(pp.pp_port) as s:
        s.sendall(v1("203.0.113.7", "192.0.2.1", 40000, 80) + request())
        status, _, body = read_response(s)
    assert status == 200
    h = echoed_headers(body)
    assert h["x-real-ip"] == "203.0.113.7"
    assert h["x-forwarded-for"] == "203.0.113.7"
    assert h["x-forwarded-port"] == str(pp.pp_port)  # the listener's port, not the header's
    assert pp.wait_until(lambda: '"client":"203.0.113.7:40000"' in pp.access_path.read_text())


def test_v2_ipv6_header_gives_the_upstream_the_real_client(pp):
    with connect(pp.pp_port) as s:
        s.sendall(v2("2001:db8::7", "2001:db8::1", 5555, 443) + request(
            extra="X-Forwarded-For: 198.51.100.1\r\n"))
        status, _, body = read_response(s)
    assert status == 200
    h = echoed_headers(body)
    assert h["x-real-ip"] == "2001:db8::7"
    assert h["x-forwarded-for"] == "198.51.100.1, 2001:db8::7"


def test_v2_with_tlvs_is_accepted(pp):
    tlvs = b"\x02\x00\x0bexample.com" + b"\xea\x00\x04vpce"
    with connect(pp.pp_port) as s:
        s.sendall(v2("198.51.100.9", "10.0.0.1", 1, 80, tlvs=tlvs) + request())
        status, _, body = read_response(s)
    assert status == 200 and echoed_headers(body)["x-real-ip"] == "198.51.100.9"


def test_routes_match_on_the_header_address(pp):
    with connect(pp.pp_port) as s:
        s.sendall(v1("203.0.113.50", "192.0.2.1", 1, 80) + request("/office"))
        assert read_response(s)[0] == 200
    with connect(pp.pp_port) as s:
        s.sendall(v1("198.51.100.50", "192.0.2.1", 1, 80) + request("/office"))
        assert read_response(s)[0] == 404
    assert pp.get("/office").status_code == 404  # 127.0.0.1 on the plain listener


@pytest.mark.parametrize("header", [
    v1("203.0.113.8", "192.0.2.1", 1234, 80),
    v2("203.0.113.8", "192.0.2.1", 1234, 80),
], ids=["v1", "v2"])
def test_header_split_across_many_writes(pp, header):
    data = header + request()
    cut = len(header) + 5  # the last small write carries the start of the request
    with connect(pp.pp_port) as s:
        for i in range(0, cut, 3):
            s.sendall(data[i:min(i + 3, cut)])
            time.sleep(0.01)
        s.sendall(data[cut:])
        status, _, body = read_response(s)
    assert status == 200 and echoed_headers(body)["x-real-ip"] == "203.0.113.8"


def test_pipelined_requests_in_the_header_packet_are_all_served(pp):
    with connect(pp.pp_port) as s:
        s.sendall(v1("203.0.113.9", "192.0.2.1", 1, 80) + request("/echo?n=1") +
                  request("/echo?n=2"))
        first, second = read_responses(s, 2)
    assert [json.loads(r[2])["target"] for r in (first, second)] == ["/echo?n=1", "/echo?n=2"]
    assert all(echoed_headers(r[2])["x-real-ip"] == "203.0.113.9" for r in (first, second))


def test_keepalive_requests_keep_the_header_address(pp):
    with connect(pp.pp_port) as s:
        s.sendall(v2("203.0.113.10", "192.0.2.1", 1, 80) + request())
        assert echoed_headers(read_response(s)[2])["x-real-ip"] == "203.0.113.10"
        s.sendall(request())
        assert echoed_headers(read_response(s)[2])["x-real-ip"] == "203.0.113.10"
        time.sleep(2.5)  # long enough for the idle connection to be parked and resumed
        s.sendall(request())
        assert echoed_headers(read_response(s)[2])["x-real-ip"] == "203.0.113.10"


@pytest.mark.parametrize("header", [
    V2_SIGNATURE + b"\x20\x00\x00\x00",  # v2 LOCAL (a load balancer's health check)
    b"PROXY UNKNOWN\r\n",
    V2_SIGNATURE + b"\x21\x00\x00\x00",  # v2 PROXY with AF_UNSPEC
], ids=["v2-local", "v1-unknown", "v2-unspec"])
def test_local_and_unknown_keep_the_socket_peer(pp, header):
    with connect(pp.pp_port) as s:
        s.sendall(header + request())
        status, _, body = read_response(s)
    assert status == 200 and echoed_headers(body)["x-real-ip"] == "127.0.0.1"


@pytest.mark.parametrize("data", [
    request(),                                                  # no header at all
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",            # a TLS ClientHello
    b"PROXY TCP4 203.0.113.1 192.0.2.1 70000 80\r\n" + request(),  # port out of range
    b"PROXY TCP4 203.0.113.1  192.0.2.1 1 80\r\n" + request(),     # double space
    b"PROXY TCP4 203.0.113.1 192.0.2.1 1 80\n" + request(),        # no CR
    b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n" + request(),           # over 107 bytes
    V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12 + request(),  # version 3
    V2_SIGNATURE + b"\x21\x11\xff\xff" + request(),                # 64 KiB announced
], ids=["none", "tls", "port", "spaces", "lf", "long", "version", "length"])
def test_invalid_header_closes_without_response(pp, data):
    before = metric(pp, "invalid") or 0
    with connect(pp.pp_port) as s:
        s.sendall(data)
        assert closed_without_response(s)
    assert pp.wait_until(lambda: (metric(pp, "invalid") or 0) == before + 1)


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 203.0.113.1 192.0.2.1 1",
    v2("203.0.113.1", "192.0.2.1", 1, 80)[:20],
    b"",
], ids=["v1", "v2", "nothing"])
def test_truncated_header_then_close_gets_no_response(pp, data):
    with connect(pp.pp_port) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        assert closed_without_response(s)
    assert pp.wait_until(lambda: (metric(pp, "truncated") or 0) >= 1)


def test_incomplete_header_times_out(pp):
    with connect(pp.pp_port) as s:
        s.sendall(v2("203.0.113.1", "192.0.2.1", 1, 80)[:20])
        start = time.time()
        assert closed_without_response(s, timeout=6)
        assert 1.5 < time.time() - start < 4  # client_header_timeout: 2 s
    assert pp.wait_until(lambda: metric(pp, "timeout") == 1)


def test_untrusted_peer_is_closed_even_with_a_valid_header(pp):
    with connect(pp.strict_port) as s:
        s.sendall(v1("203.0.113.7", "192.0.2.1", 1, 80) + request())
        assert closed_without_response(s)
    assert pp.wait_until(lambda: metric(pp, "untrusted") == 1)


def test_plain_listener_next_to_it_is_unaffected(pp):
    r = pp.get("/echo")
    assert r.status_code == 200
    assert echoed_headers(r.content)["x-real-ip"] == "127.0.0.1"
    # A PROXY line there is just a malformed request, never a source address.
    with connect(pp.port) as s:
        s.sendall(v1("203.0.113.7", "192.0.2.1", 1, 80) + request())
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 400")
    assert metric(pp, "invalid") == 0


@pytest.mark.parametrize("entry, error", [
    ({"addr": "nowhere", "proxy_protocol": True}, 'node.listen[1].addr: must be "ip:port"'),
    ({"addr": "127.0.0.1:1", "proxy_protocl": True}, "node.listen[1].proxy_protocl: unknown field"),
    ({"addr": "127.0.0.1:1", "proxy_protocol": True, "trusted_addresses": ["10.0.0.0/33"]},
     "node.listen[1].trusted_addresses[0]: must be an IP address or CIDR"),
    ({"proxy_protocol": True}, "node.listen[1].addr: is required"),
], ids=["addr", "unknown-field", "cidr", "no-addr"])
def test_config_errors_name_the_field(tmp_path, entry, error):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"node": {"listen": ["127.0.0.1:1", entry]}}))
    (tmp_path / "routes.yaml").write_text("routes: []\n")
    rc = subprocess.run([PORTICO_BIN, "validate", "-c", str(tmp_path / "config.yaml")],
                        capture_output=True, text=True)
    assert rc.returncode == 1 and error in rc.stderr, rc.stderr
