"""TLS on HTTP listeners (`node.listen: [{addr, ssl: true}]`): the certificate is chosen per
connection by the client's server name (SNI) from the `ssls` objects of the running config, and
changes with it, without a restart. Real clients: Python's ssl module, curl, websockets."""
import asyncio
import http.client
import json
import socket
import ssl
import struct
import subprocess
import threading
import time

import prom_text
import pytest
import websockets
import yaml

import pki
from conftest import free_port, inline_upstream, validate, wait_until
from test_tlv_bridge import (HEARTBEAT, HEARTBEAT_REPLY, PATH, bridge_config, login, recv_json,
                             send_json)


@pytest.fixture
def ca(tmp_path):
    return pki.make_ca(tmp_path / "pki")


def issue(ca, tmp_path, name, *sans, key="rsa"):
    """A certificate for `name` (and `sans`, "DNS:..." entries) signed by ca: (cert, key) PEM
    text. key="ec" makes an ECDSA P-256 key instead of RSA."""
    d = tmp_path / "pki"
    if key == "rsa":
        leaf = pki.issue(ca, d, name, sans=[f"DNS:{name}", *sans])
    else:
        stem = d / f"{name}-ec"
        with open(f"{stem}.ext", "w") as f:
            f.write(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n")
        for args in (["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{stem}.key"],
                     ["req", "-new", "-key", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={name}"],
                     ["x509", "-req", "-in", f"{stem}.csr", "-CA", ca.cert, "-CAkey", ca.key,
                      "-set_serial", "7", "-days", "2", "-extfile", f"{stem}.ext", "-out", f"{stem}.crt"]):
            subprocess.run(["openssl", *args], check=True, capture_output=True)
        leaf = pki.CertKey(f"{stem}.crt", f"{stem}.key")
    return open(leaf.cert).read(), open(leaf.key).read()


def ssl_object(id, cert_key, snis, **extra):
    obj = {"id": id, "cert": cert_key[0], "key": cert_key[1], "snis": snis}
    obj.update(extra)
    return obj


def tls_gateway(gateway, routes, port, listener=None, node=None, **kw):
    """A started gateway with its plain listener and a TLS one on `port` (`listener`: more
    fields of that node.listen entry)."""
    gw = gateway(routes, node=node, start=False, **kw)
    cfg = gw.config()
    cfg["node"]["listen"] = [f"127.0.0.1:{gw.port}",
                             dict({"addr": f"127.0.0.1:{port}", "ssl": True}, **(listener or {}))]
    gw.config_path.write_text(yaml.safe_dump(cfg))
    return gw.start()


def client_context(ca, **kw):
    ctx = ssl.create_default_context(cafile=ca.cert)
    # Python's default takes a TCP end without close_notify for a clean end: these tests tell
    # the two apart.
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def handshake(port, server_name, ca, **ctx_options):
    """Connects with SNI `server_name`; the peer certificate's subject CN, the TLS version and
    the open ssl socket (the caller closes it)."""
    ctx = client_context(ca, **ctx_options)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_name)
    except Exception:
        raw.close()
        raise
    subject = dict(x[0] for x in s.getpeercert()["subject"])
    return subject["commonName"], s.version(), s


def served_name(port, server_name, ca, **ctx_options):
    cn, _, s = handshake(port, server_name, ca, **ctx_options)
    s.close()
    return cn


class SniConnection(http.client.HTTPSConnection):
    """http.client over TLS to 127.0.0.1 with a chosen server name (SNI and Host)."""

    def __init__(self, port, server_name, context):
        super().__init__("127.0.0.1", port, context=context, timeout=10)
        self.server_name = server_name

    def connect(self):
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.server_name)

    def call(self, method, path, body=None, headers=None):
        h = {"Host": self.server_name}
        h.update(headers or {})
        self.request(method, path, body=body, headers=h)
        r = self.getresponse()
        return r.status, dict(r.getheaders()), r.read()


def tls_metrics(gw):
    m = prom_text.parse(gw.control("/metrics").text)
    return {r: m.value("portico_tls_handshakes_total", result=r) or 0
            for r in ("ok", "unknown_server_name", "no_server_name", "plain_http", "failed",
                      "timeout", "closed", "client_certificate")}


# ---------------------------------------------------------------------------------------------
# Choosing the certificate


def test_certificate_chosen_by_server_name_exact_then_one_level_wildcard(gateway, upstream, ca,
                                                                         tmp_path):
    up = upstream()
    port = free_port()
    routes = {"routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(up.port)}],
              "ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"]),
                       ssl_object("w", issue(ca, tmp_path, "wild.test", "DNS:*.w.test"),
                                  ["*.w.test"]),
                       ssl_object("x", issue(ca, tmp_path, "exact.w.test"), ["exact.w.test"])]}
    gw = tls_gateway(gateway, routes, port)
    assert served_name(port, "a.test", ca) == "a.test"
    assert served_name(port, "A.Test", ca) == "a.test"  # server names ignore case
    assert served_name(port, "one.w.test", ca) == "wild.test"
    assert served_name(port, "exact.w.test", ca) == "exact.w.test"  # exact beats wildcard
    before = tls_metrics(gw)
    # A wildcard covers one label, as the certificate itself does; unknown names and clients
    # without SNI get an unrecognized_name alert, not some other site's certificate.
    for name in ("two.levels.w.test", "w.test", "b.test"):
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            served_name(port, name, ca)
    ctx = client_context(ca, check_hostname=False)
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))
    after = tls_metrics(gw)
    assert after["unknown_server_name"] - before["unknown_server_name"] == 3
    assert after["no_server_name"] - before["no_server_name"] == 1
    assert after["ok"] >= 4


def test_requests_over_tls_keep_alive_bodies_and_scheme(gateway, upstream, ca, tmp_path):
    up = upstream()
    port = free_port()
    routes = {"routes": [
        {"id": "https-only", "uri": "/only-https", "vars": [["scheme", "==", "https"]],
         "upstream": inline_upstream(up.port)},
        {"id": "all", "uri": "/*", "upstream": inline_upstream(up.port)}],
        "ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"])]}
    gw = tls_gateway(gateway, routes, port)
    conn = SniConnection(port, "a.test", client_context(ca))
    status, _, body = conn.call("GET", "/echo?x=1")
    echo = json.loads(body)
    assert status == 200 and echo["target"] == "/echo?x=1"
    headers = {k.lower(): v for k, v in echo["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    assert headers["host"] == "a.test"
    first_socket = conn.sock
    payload = bytes(range(256)) * 4096  # 1 MiB up
    status, _, body = conn.call("POST", "/sink", body=payload)
    assert status == 200 and json.loads(body) == {"received": len(payload)}
    status, _, body = conn.call("GET", "/big/3000000")  # 3 MB down, in many records
    assert status == 200 and len(body) == 3000000 and body.count(b"\0") == 3000000
    status, _, body = conn.call("GET", "/only-https")  # route vars see scheme https
    assert status == 200 and json.loads(body)["target"] == "/only-https"
    assert conn.sock is first_socket  # one connection carried all of it
    conn.close()
    # The same route set on the plain listener: the https-only route does not match there.
    plain = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    plain.request("GET", "/only-https")
    r = plain.getresponse()
    echo = json.loads(r.read())
    assert {k.lower(): v for k, v in echo["headers"]}["x-forwarded-proto"] == "http"


def test_curl_over_tls_with_alpn_http11(gateway, upstream, ca, tmp_path):
    up = upstream()
    port = free_port()
    routes = {"routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(up.port)}],
              "ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"])]}
    tls_gateway(gateway, routes, port)
    p = subprocess.run(["curl", "-sS", "-v", "--cacert", ca.cert, "--resolve",
                        f"a.test:{port}:127.0.0.1", f"https://a.test:{port}/hello"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["target"] == "/hello"
    assert "ALPN: server accepted http/1.1" in p.stderr or "ALPN, server accepted to use http/1.1" in p.stderr


def test_plain_http_on_the_tls_port_is_told_so(gateway, ca, tmp_path):
    port = free_port()
    gw = tls_gateway(gateway, {"ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"])]},
                     port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/")
    r = conn.getresponse()
    assert r.status == 400
    assert b"plain HTTP request was sent to HTTPS port" in r.read()
    # (counted as the connection ends, which may be just after the answer is read)
    assert wait_until(lambda: tls_metrics(gw)["plain_http"] == 1, 3), tls_metrics(gw)


def test_ssl_protocols_limit_versions_per_certificate(gateway, ca, tmp_path):
    port = free_port()
    routes = {"ssls": [
        ssl_object("new", issue(ca, tmp_path, "new.test"), ["new.test"], ssl_protocols=["TLSv1.3"]),
        ssl_object("old", issue(ca, tmp_path, "old.test"), ["old.test"], ssl_protocols=["TLSv1.2"]),
        ssl_object("both", issue(ca, tmp_path, "both.test"), ["both.test"])]}
    tls_gateway(gateway, routes, port)
    tls12 = {"maximum_version": ssl.TLSVersion.TLSv1_2}
    tls13 = {"minimum_version": ssl.TLSVersion.TLSv1_3}
    with pytest.raises(ssl.SSLError):
        handshake(port, "new.test", ca, **tls12)
    _, version, s = handshake(port, "new.test", ca)
    s.close()
    assert version == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(port, "old.test", ca, **tls13)
    _, version, s = handshake(port, "old.test", ca)
    s.close()
    assert version == "TLSv1.2"
    for options, expected in ((tls12, "TLSv1.2"), (tls13, "TLSv1.3")):  # default: both
        _, version, s = handshake(port, "both.test", ca, **options)
        s.close()
        assert version == expected


def test_rsa_and_ecdsa_certificates_for_one_name(gateway, ca, tmp_path):
    port = free_port()
    rsa = issue(ca, tmp_path, "dual.test")
    ec = issue(ca, tmp_path, "dual.test", key="ec")
    tls_gateway(gateway, {"ssls": [ssl_object("d", rsa, ["dual.test"], certs=[ec[0]], keys=[ec[1]])]},
                port)

    def key_type(ciphers):
        ctx = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers(ciphers)
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="dual.test") as s:
            return s.cipher()[0]
    assert key_type("ECDHE-ECDSA-AES128-GCM-SHA256") == "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert key_type("ECDHE-RSA-AES128-GCM-SHA256") == "ECDHE-RSA-AES128-GCM-SHA256"


def test_disabled_and_client_certificates_serve_no_handshake(gateway, ca, tmp_path):
    port = free_port()
    routes = {"ssls": [
        ssl_object("off", issue(ca, tmp_path, "off.test"), ["off.test"], status=0),
        ssl_object("client", issue(ca, tmp_path, "client.test"), ["client.test"], type="client")]}
    tls_gateway(gateway, routes, port)
    for name in ("off.test", "client.test"):
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            served_name(port, name, ca)


# ---------------------------------------------------------------------------------------------
# Certificates change with the config, without a restart


def test_certificate_rotation_in_the_routes_file(gateway, ca, tmp_path):
    port = free_port()
    first = issue(ca, tmp_path, "rot.test")
    gw = tls_gateway(gateway, {"ssls": [ssl_object("r", first, ["rot.test"])]}, port)
    cn, _, held = handshake(port, "rot.test", ca)
    serial = held.getpeercert()["serialNumber"]
    second = issue(ca, tmp_path, "rot.test")  # same name, new key and serial
    gw.write_routes({"ssls": [ssl_object("r", second, ["rot.test"]),
                              ssl_object("n", issue(ca, tmp_path, "new.test"), ["new.test"])]})

    def rotated():
        _, _, s = handshake(port, "rot.test", ca)
        try:
            return s.getpeercert()["serialNumber"] != serial
        finally:
            s.close()
    assert wait_until(rotated, timeout=5)
    assert served_name(port, "new.test", ca) == "new.test"
    # The connection made before the change goes on with its session.
    held.sendall(b"GET / HTTP/1.1\r\nHost: rot.test\r\n\r\n")
    assert held.recv(100).startswith(b"HTTP/1.1 404")
    held.close()
    # A broken certificate in the file is refused whole: the old config keeps serving.
    broken = {"ssls": [ssl_object("r", (second[0], first[1]), ["rot.test"])]}
    gw.write_routes(broken)
    assert gw.wait_log("does not match the public key of cert")
    assert served_name(port, "new.test", ca) == "new.test"


def test_certificates_through_the_admin_api_on_etcd(gateway, etcd, ca, tmp_path):
    port = free_port()
    gw = tls_gateway(gateway, None, port, etcd=etcd)
    gw2 = tls_gateway(gateway, None, port2 := free_port(), etcd=etcd)
    cert = issue(ca, tmp_path, "api.test")
    r = gw.admin("PUT", "/ssls/1",
                 json={"cert": cert[0], "key": cert[1], "snis": ["api.test"]})
    assert r.status_code in (200, 201), r.text
    for p in (port, port2):  # both nodes of the cluster serve it
        assert wait_until(lambda: _serves(p, "api.test", ca), timeout=5)
    r = gw.admin("PUT", "/ssls/2",
                 json={"cert": cert[0], "key": issue(ca, tmp_path, "other.test")[1],
                       "snis": ["other.test"]})
    assert r.status_code == 400 and "key" in r.text and "PRIVATE KEY" not in r.text
    assert "PRIVATE KEY" not in gw.error_log()
    assert gw.admin("DELETE", "/ssls/1").status_code == 200
    assert wait_until(lambda: not _serves(port, "api.test", ca), timeout=5)


def _serves(port, name, ca):
    try:
        return served_name(port, name, ca) == name
    except (ssl.SSLError, OSError):
        return False


# ---------------------------------------------------------------------------------------------
# Timeouts, closes, PROXY protocol in front


def test_silent_client_times_out_and_clean_close_sends_close_notify(gateway, upstream, ca,
                                                                    tmp_path):
    up = upstream()
    port = free_port()
    routes = {"routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(up.port)}],
              "ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"])]}
    gw = tls_gateway(gateway, routes, port, node={"client_header_timeout": 1})
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)
    silent.sendall(b"\x16")  # a TLS record starts, and nothing more comes
    assert silent.recv(10) == b""  # closed by the handshake timeout
    silent.close()
    assert wait_until(lambda: tls_metrics(gw)["timeout"] == 1, timeout=3)
    # A response that ends the connection ends the TLS stream with close_notify: the client
    # reads a clean end (no "EOF in violation of protocol").
    ctx = client_context(ca)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                        server_hostname="a.test", suppress_ragged_eofs=False)
    s.sendall(b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)  # raises SSLEOFError on a cut without close_notify
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b'"target": "/x"' in data
    s.close()


def test_proxy_protocol_then_tls(gateway, upstream, ca, tmp_path):
    up = upstream()
    port = free_port()
    routes = {"routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(up.port)}],
              "ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"])]}
    tls_gateway(gateway, routes, port, listener={"proxy_protocol": True})
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    raw.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n")
    s = client_context(ca).wrap_socket(raw, server_hostname="a.test")
    s.sendall(b"GET /pp HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    echo = json.loads(data.split(b"\r\n\r\n", 1)[1])
    headers = {k.lower(): v for k, v in echo["headers"]}
    assert headers["x-real-ip"] == "203.0.113.7" and headers["x-forwarded-proto"] == "https"
    s.close()


# ---------------------------------------------------------------------------------------------
# WebSockets over TLS (wss): the relay and the IM bridge


def test_wss_relay_and_wss_im_bridge(gateway, upstream, backends, ca, tmp_path):
    up = upstream()
    b = backends("demo1")
    port = free_port()
    routes = bridge_config(b.port)
    routes["routes"].append({"id": "ws", "uri": "/ws", "enable_websocket": True,
                             "upstream": inline_upstream(up.port)})
    routes["ssls"] = [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"])]
    tls_gateway(gateway, routes, port)
    ctx = client_context(ca)

    async def talk():
        sock = socket.create_connection(("127.0.0.1", port))
        async with websockets.connect("wss://a.test/ws", sock=sock, ssl=ctx,
                                      server_hostname="a.test") as ws:
            big = "x" * 200000
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), 5) == big
        sock = socket.create_connection(("127.0.0.1", port))
        async with websockets.connect(f"wss://a.test{PATH}", sock=sock, ssl=ctx,
                                      server_hostname="a.test") as im:
            assert (await login(im, 5))["data"]["uid"] == 5
            for i in range(50):
                await send_json(im, {"id": 100 + i, "cmd": HEARTBEAT, "data": {"sent_at": i}})
            for i in range(50):
                reply = await recv_json(im)
                assert reply["cmd"] == HEARTBEAT_REPLY and reply["id"] == 100 + i
    asyncio.run(asyncio.wait_for(talk(), 30))


# ---------------------------------------------------------------------------------------------
# Sessions, cut responses, time budgets, memory held


def test_sessions_resume_only_under_the_certificate_that_made_them(gateway, ca, tmp_path):
    port = free_port()
    routes = {"ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"]),
                       ssl_object("b", issue(ca, tmp_path, "b.test"), ["b.test"])]}
    tls_gateway(gateway, routes, port)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_context(ca, maximum_version=version)

        def connect(name, session=None):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname=name, session=session)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(1000)  # (a TLS 1.3 ticket arrives with the first answer)
            return s
        first = connect("a.test")
        session = first.session
        first.close()
        again = connect("a.test", session)
        assert again.session_reused, version
        again.close()
        # RFC 6066: a session is not resumed for another server name (and with it, another
        # certificate: resuming would skip proving b.test's).
        other = connect("b.test", session)
        assert not other.session_reused, version
        assert dict(x[0] for x in other.getpeercert()["subject"])["commonName"] == "b.test"
        other.close()


def test_a_cut_response_ends_without_close_notify(gateway, ca, tmp_path):
    """An upstream that dies mid-body under a close-delimited response: the client must not
    receive a clean TLS end (it would take the cut body for the whole one)."""
    listener = socket.create_server(("127.0.0.1", 0))
    up_port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 20000)
        time.sleep(0.2)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # reset
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    port = free_port()
    routes = {"routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(up_port)}],
              "ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"])]}
    tls_gateway(gateway, routes, port)
    s = client_context(ca).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                       server_hostname="a.test", suppress_ragged_eofs=False)
    s.sendall(b"GET /cut HTTP/1.0\r\nHost: a.test\r\n\r\n")  # HTTP/1.0: no chunked framing
    data = b""
    with pytest.raises((ssl.SSLError, ConnectionResetError), match="EOF|eof|reset"):
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break  # a clean close_notify: the failure this test is about
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and len(data) < 20000 + 200
    s.close()
    t.join(5)
    listener.close()


def test_one_time_budget_from_accept_to_the_first_request(gateway, upstream, ca, tmp_path):
    """client_header_timeout covers handshake and first request together: a client that stalls
    before its ClientHello and again before its request gets one budget, not one per stage."""
    up = upstream()
    port = free_port()
    routes = {"routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(up.port)}],
              "ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"])]}
    tls_gateway(gateway, routes, port, node={"client_header_timeout": 2})
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    time.sleep(1.2)
    s = client_context(ca).wrap_socket(raw, server_hostname="a.test")
    time.sleep(1.3)  # 2.5 s since accept
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        answer = s.recv(100)
    except (ssl.SSLError, OSError):
        answer = b""
    assert answer == b""  # closed when the budget ran out, before the request
    s.close()
    # Within the budget all is well.
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    time.sleep(0.5)
    s = client_context(ca).wrap_socket(raw, server_hostname="a.test")
    time.sleep(0.5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    s.close()


def test_silent_tls_connections_hold_no_config(gateway, ca, tmp_path):
    port = free_port()
    routes = {"routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(free_port())}],
              "ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"])]}
    gw = tls_gateway(gateway, routes, port)

    def gauge(name):
        return prom_text.parse(gw.control("/metrics").text).value(name)
    silent = []
    for version in range(4):
        silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        half = socket.create_connection(("127.0.0.1", port), timeout=5)
        half.sendall(b"\x16\x03\x01")  # a ClientHello that never completes
        silent.append(half)
        revision = gauge("portico_config_revision")
        routes["routes"][0]["name"] = f"v{version}"
        gw.write_routes(routes)
        assert wait_until(lambda: gauge("portico_config_revision") > revision, 10)
    gw.get("/elsewhere")  # the worker takes the newest
    assert wait_until(lambda: gauge("portico_config_snapshots_alive") == 1, 10), \
        gauge("portico_config_snapshots_alive")
    for s in silent:
        s.close()


def test_fallback_sni_serves_clients_that_send_no_name(gateway, ca, tmp_path, upstream):
    up = upstream()
    port = free_port()
    routes = {"routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(up.port)}],
              "ssls": [ssl_object("a", issue(ca, tmp_path, "a.test"), ["a.test"]),
                       ssl_object("b", issue(ca, tmp_path, "b.test"), ["b.test"])]}
    tls_gateway(gateway, routes, port, listener={"fallback_sni": "a.test"})
    ctx = client_context(ca, check_hostname=False)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as s:
        assert dict(x[0] for x in s.getpeercert()["subject"])["commonName"] == "a.test"
    # A name that is sent is still matched on its own: no fallback for unknown names.
    assert served_name(port, "b.test", ca) == "b.test"
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        served_name(port, "c.test", ca)


def test_fallback_sni_needs_an_ssl_listener(tmp_path):
    from conftest import PORTICO_BIN
    for listen, message in (({"addr": "127.0.0.1:2", "fallback_sni": "a.test"}, "needs ssl"),
                            ({"addr": "127.0.0.1:2", "ssl": True, "fallback_sni": "*.a.test"},
                             "must be a host name")):
        (tmp_path / "config.yaml").write_text(yaml.safe_dump({
            "node": {"listen": [listen]}, "config": {"provider": "yaml", "file": "routes.yaml"}}))
        (tmp_path / "routes.yaml").write_text("{}\n")
        p = subprocess.run([PORTICO_BIN, "validate", "-c", str(tmp_path / "config.yaml")],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode != 0 and "fallback_sni" in p.stdout + p.stderr, p.stdout + p.stderr
        assert message in p.stdout + p.stderr
