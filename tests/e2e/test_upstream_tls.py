"""HTTPS upstreams (`scheme: https`): TLS to the nodes with the server name the request goes
with, kept-alive TLS connections pooled per server name, optional verification (`tls.verify`)
against trusted CAs (SSL_CERT_FILE in these tests). Real TLS upstreams (Python's ssl)."""
import asyncio
import json
import ssl
import time

import pytest
import requests
import websockets

import pki
from coalescing_upstream import CoalescingUpstream
from conftest import inline_upstream, validate, wait_until


@pytest.fixture
def ca(tmp_path):
    return pki.make_ca(tmp_path / "pki")


def tls_upstream(upstream, ca, tmp_path, name="backend.test"):
    """A TestUpstream speaking HTTPS with a certificate for `name` signed by ca; .names lists
    the server names clients asked for (None: no SNI)."""
    leaf = pki.issue(ca, tmp_path / "pki", name, sans=[f"DNS:{name}"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    names = []
    ctx.sni_callback = lambda sock, server_name, c: names.append(server_name)
    up = upstream(name="tls", tls=ctx)
    up.names = names
    return up


def https_route(up, **upstream_fields):
    return {"id": "r", "uri": "/*", "upstream": inline_upstream(up.port, scheme="https", **upstream_fields)}


def test_https_upstream_keep_alive_bodies_and_server_name(gateway, upstream, ca, tmp_path):
    up = tls_upstream(upstream, ca, tmp_path)
    gw = gateway({"routes": [https_route(up)]})
    for i in range(10):
        r = gw.get(f"/echo/{i}", headers={"Host": "api.test"})
        assert r.status_code == 200, r.text
        assert r.json()["target"] == f"/echo/{i}"
    big = bytes(range(256)) * 8192  # 2 MiB up
    r = requests.post(gw.url("/sink"), data=big, headers={"Host": "api.test"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"received": len(big)}
    r = gw.get("/big/3000000", headers={"Host": "api.test"})  # 3 MB down
    assert r.status_code == 200 and len(r.content) == 3000000
    # pass_host pass: the client's Host is the server name; one kept-alive TLS connection.
    assert set(up.names) == {"api.test"}
    assert up.connections == 1


def test_server_name_follows_pass_host_and_pools_are_per_name(gateway, upstream, ca, tmp_path):
    up = tls_upstream(upstream, ca, tmp_path)
    routes = {"routes": [
        {"id": "rewrite", "uri": "/rw/*", "upstream": inline_upstream(
            up.port, scheme="https", pass_host="rewrite", upstream_host="backend.test")},
        {"id": "node", "uri": "/node/*", "upstream": inline_upstream(
            up.port, scheme="https", pass_host="node")},
        {"id": "pass", "uri": "/*", "upstream": inline_upstream(up.port, scheme="https")}]}
    gw = gateway(routes)
    for _ in range(3):
        assert gw.get("/rw/x", headers={"Host": "a.test"}).status_code == 200
        assert gw.get("/node/x", headers={"Host": "a.test"}).status_code == 200
        assert gw.get("/p", headers={"Host": "b.test"}).status_code == 200
    # The node is an IP address: no SNI for pass_host node.
    assert sorted(set(up.names), key=str) == sorted({"backend.test", None, "b.test"}, key=str)
    # A kept-alive TLS session serves only its own name: three connections, each reused.
    assert up.connections == 3


def test_verification_against_trusted_cas(gateway, upstream, ca, tmp_path, monkeypatch):
    up = tls_upstream(upstream, ca, tmp_path, name="backend.test")
    monkeypatch.setenv("SSL_CERT_FILE", ca.cert)  # the gateway trusts the test CA
    routes = {"routes": [
        {"id": "good", "uri": "/good", "upstream": inline_upstream(
            up.port, scheme="https", pass_host="rewrite", upstream_host="backend.test",
            tls={"verify": True})},
        {"id": "wrong-name", "uri": "/wrong", "upstream": inline_upstream(
            up.port, scheme="https", pass_host="rewrite", upstream_host="other.test",
            tls={"verify": True})},
        {"id": "unverified", "uri": "/any", "upstream": inline_upstream(
            up.port, scheme="https", pass_host="rewrite", upstream_host="other.test")}]}
    gw = gateway(routes)
    assert gw.get("/good").status_code == 200
    r = gw.get("/wrong")
    assert r.status_code == 502
    gw.wait_log_line("TLS handshake with upstream", "other.test", "certificate")
    assert gw.get("/any").status_code == 200  # tls.verify off (APISIX's default)


def test_untrusted_upstream_certificate_is_refused(gateway, upstream, tmp_path):
    other_ca = pki.make_ca(tmp_path / "other", name="Other CA")
    up = tls_upstream(upstream, other_ca, tmp_path / "x", name="backend.test")
    gw = gateway({"routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(
        up.port, scheme="https", pass_host="rewrite", upstream_host="backend.test",
        tls={"verify": True})}]})
    assert gw.get("/x").status_code == 502
    gw.wait_log_line("TLS handshake with upstream", "certificate")


def test_plain_node_behind_https_scheme_fails_cleanly(gateway, upstream):
    """A node that does not speak TLS (it waits for an HTTP head that never comes): the
    handshake counts against the connect timeout."""
    plain = upstream()
    gw = gateway({"routes": [https_route(plain, timeout={"connect": 1})]})
    assert gw.get("/x").status_code == 504
    gw.wait_log_line("TLS handshake with upstream")


def test_wss_upstream_relay(gateway, upstream, ca, tmp_path):
    up = tls_upstream(upstream, ca, tmp_path)
    gw = gateway({"routes": [{"id": "ws", "uri": "/ws", "enable_websocket": True,
                              "upstream": inline_upstream(up.port, scheme="https")}]})

    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/ws") as ws:
            for size in (5, 70000):
                await ws.send("y" * size)
                assert await asyncio.wait_for(ws.recv(), 5) == "y" * size
    asyncio.run(asyncio.wait_for(talk(), 20))


def mtls_upstream(upstream, ca, tmp_path):
    """An HTTPS upstream that takes only clients with a certificate from ca (mTLS between the
    tiers); its echo names the client certificate's CN (client_cn)."""
    leaf = pki.issue(ca, tmp_path / "pki", "backend.test", sans=["DNS:backend.test"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    ctx.load_verify_locations(ca.cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return upstream(name="mtls", tls=ctx)


def identity(cert):
    return {"client_cert": open(cert.cert).read(), "client_key": open(cert.key).read()}


def client_ssl(cert, id="gw-cert"):
    """An ssls object of type client: what tls.client_cert_id names."""
    return {"id": id, "type": "client", "cert": open(cert.cert).read(),
            "key": open(cert.key).read()}


def test_a_client_certificate_for_upstreams_that_ask_for_one(gateway, upstream, ca, tmp_path):
    up = mtls_upstream(upstream, ca, tmp_path)
    gateway_cert = pki.issue(ca, tmp_path / "pki", "gateway", usage="clientAuth")
    other_ca = pki.make_ca(tmp_path / "other", "Other CA")
    stranger = pki.issue(other_ca, tmp_path / "other", "stranger", usage="clientAuth")
    gw = gateway({"routes": [
        dict(https_route(up, tls=identity(gateway_cert)), id="with", uri="/with/*"),
        dict(https_route(up), id="without", uri="/without/*"),
        dict(https_route(up, tls=identity(stranger)), id="stranger", uri="/stranger/*")]})
    for _ in range(3):
        r = gw.get("/with/echo", headers={"Host": "backend.test"})
        assert r.status_code == 200 and r.json()["target"] == "/with/echo"
        assert r.json()["client_cn"] == "gateway"
    # The kept-alive connection that showed the certificate serves only its own kind: a route
    # without one, or with another, does not borrow it.
    assert gw.get("/without/echo", headers={"Host": "backend.test"}).status_code == 502
    assert gw.get("/stranger/echo", headers={"Host": "backend.test"}).status_code == 502
    assert gw.get("/with/again", headers={"Host": "backend.test"}).status_code == 200
    # Active https checks show the same certificate: the node stays healthy.
    checks = {"active": {"type": "https", "http_path": "/echo", "timeout": 1,
                         "https_verify_certificate": False,
                         "healthy": {"interval": 0.2, "successes": 1},
                         "unhealthy": {"interval": 0.2, "http_failures": 1, "tcp_failures": 1,
                                       "timeouts": 1}}}
    checked = gateway({"routes": [https_route(up, tls=identity(gateway_cert), checks=checks)]})
    time.sleep(1.5)  # several probe intervals
    states = [n.get("state") for u in checked.control("/v1/healthcheck").json()["upstreams"]
              for n in u["nodes"]]
    assert states == ["healthy"], states


def test_client_cert_id_names_a_client_certificate_from_ssls(gateway, upstream, ca, tmp_path):
    # APISIX's other way: the certificate lives in an ssls object of type client, and upstreams
    # (named, or inline in routes and services) name it.
    up = mtls_upstream(upstream, ca, tmp_path)
    gateway_cert = pki.issue(ca, tmp_path / "pki", "gateway", usage="clientAuth")
    named = dict(inline_upstream(up.port, scheme="https", tls={"client_cert_id": "gw-cert"}),
                 id="u1")
    gw = gateway({
        "ssls": [client_ssl(gateway_cert)],
        "upstreams": [named],
        "services": [{"id": "s1", "upstream": inline_upstream(
            up.port, scheme="https", tls={"client_cert_id": "gw-cert"})}],
        "routes": [{"id": "named", "uri": "/named/*", "upstream_id": "u1"},
                   {"id": "service", "uri": "/service/*", "service_id": "s1"},
                   dict(https_route(up, tls={"client_cert_id": "gw-cert"}), id="inline",
                        uri="/inline/*")]})
    for path in ("/named/a", "/service/b", "/inline/c"):
        r = gw.get(path, headers={"Host": "backend.test"})
        assert r.status_code == 200, (path, r.text)
        assert r.json()["client_cn"] == "gateway"


def test_a_rotated_client_certificate_reaches_new_connections(gateway, upstream, ca, tmp_path,
                                                              etcd):
    # etcd mode, through the Admin API: the upstream object does not change when the ssls
    # object it names does; the gateway must still show the new certificate.
    up = mtls_upstream(upstream, ca, tmp_path)
    first = pki.issue(ca, tmp_path / "pki", "gateway-2025", usage="clientAuth")
    second = pki.issue(ca, tmp_path / "pki", "gateway-2026", usage="clientAuth")
    gw = gateway(etcd=etcd)
    assert gw.admin("PUT", "/ssls/gw-cert", client_ssl(first)).status_code == 201
    ups = inline_upstream(up.port, scheme="https", tls={"client_cert_id": "gw-cert"})
    assert gw.admin("PUT", "/upstreams/u1", ups).status_code == 201
    assert gw.admin("PUT", "/routes/r1", {"uri": "/*", "upstream_id": "u1"}).status_code == 201

    def cn():
        r = gw.get("/echo", headers={"Host": "backend.test"})
        return r.json().get("client_cn") if r.status_code == 200 else r.status_code
    assert wait_until(lambda: cn() == "gateway-2025", 5)
    assert gw.admin("PUT", "/ssls/gw-cert", client_ssl(second)).status_code == 200
    assert wait_until(lambda: cn() == "gateway-2026", 5), cn()

    # A server certificate is not something to show upstreams; a used one cannot be deleted.
    server = pki.issue(ca, tmp_path / "pki", "api.test", sans=["DNS:api.test"])
    r = gw.admin("PUT", "/ssls/server", {"cert": open(server.cert).read(),
                                         "key": open(server.key).read(), "snis": ["api.test"]})
    assert r.status_code == 201, r.text
    r = gw.admin("PUT", "/upstreams/u2",
                 inline_upstream(up.port, scheme="https", tls={"client_cert_id": "server"}))
    assert r.status_code == 400
    assert r.json()["error_msg"] == ('invalid configuration: tls.client_cert_id: ssl "server" '
                                     'is not a client certificate (type: client)')
    r = gw.admin("DELETE", "/ssls/gw-cert")
    assert r.status_code == 400 and "upstream [u1]" in r.json()["error_msg"], r.text
    # Nor can it turn into a server certificate while an upstream shows it.
    r = gw.admin("PUT", "/ssls/gw-cert", {"cert": open(server.cert).read(),
                                          "key": open(server.key).read(), "snis": ["api.test"]})
    assert r.status_code == 400
    assert r.json()["error_msg"] == (
        'invalid configuration: upstreams/u1.tls.client_cert_id: ssl "gw-cert" is not a client '
        'certificate (type: client) (this change would leave upstream "u1" out); 1 more object '
        'depends on them and would be left out too')
    assert cn() == "gateway-2026"


def test_a_rotated_client_certificate_reaches_a_split_upstream(gateway, upstream, ca, tmp_path,
                                                               etcd):
    # traffic-split's inline upstreams are compiled with the route: the route does not change
    # when the ssls object its split names does.
    up = mtls_upstream(upstream, ca, tmp_path)
    stable = upstream(name="stable")
    first = pki.issue(ca, tmp_path / "pki", "split-2025", usage="clientAuth")
    second = pki.issue(ca, tmp_path / "pki", "split-2026", usage="clientAuth")
    gw = gateway(etcd=etcd)
    assert gw.admin("PUT", "/ssls/gw-cert", client_ssl(first)).status_code == 201
    choice = inline_upstream(up.port, scheme="https", tls={"client_cert_id": "gw-cert"})
    split = {"traffic-split": {"rules": [{"match": [{"vars": [["arg_v", "==", "2"]]}],
                                          "weighted_upstreams": [{"upstream": choice}]}]}}
    r = gw.admin("PUT", "/routes/r1", {"uri": "/*", "upstream": inline_upstream(stable.port),
                                       "plugins": split})
    assert r.status_code == 201, r.text

    def cn():
        r = gw.get("/echo?v=2", headers={"Host": "backend.test"})
        return r.json().get("client_cn") if r.status_code == 200 else r.status_code
    assert wait_until(lambda: cn() == "split-2025", 5)
    assert gw.admin("PUT", "/ssls/gw-cert", client_ssl(second)).status_code == 200
    assert wait_until(lambda: cn() == "split-2026", 5), cn()
    r = gw.admin("DELETE", "/ssls/gw-cert")
    assert r.status_code == 400 and "r1" in r.json()["error_msg"]


def test_a_client_key_that_is_not_the_certificates_is_refused(tmp_path, ca):
    a = pki.issue(ca, tmp_path / "pki", "a", usage="clientAuth")
    b = pki.issue(ca, tmp_path / "pki", "b", usage="clientAuth")
    tls = {"client_cert": open(a.cert).read(), "client_key": open(b.key).read()}
    doc = {"routes": [{"id": "r", "uri": "/*",
                       "upstream": inline_upstream(1, scheme="https", tls=tls)}]}
    code, out = validate(tmp_path, doc)
    assert code != 0 and "routes[0].upstream.tls.client_key: does not match" in out, out
    assert "PRIVATE KEY" not in out


@pytest.mark.parametrize("upstream_fields, field, message", [
    ({"scheme": "grpc"}, "scheme", "must be http or https"),
    ({"scheme": "https", "tls": {"client_cert": "x", "client_key": "y"}}, "tls.client_cert",
     "must be a PEM certificate"),
    ({"scheme": "https", "tls": {"client_cert": "x"}}, "tls.client_key", "is required"),
    ({"scheme": "https", "tls": {"client_cert_id": "none"}}, "tls.client_cert_id",
     'unknown ssl "none"'),
    ({"scheme": "https", "tls": {"client_cert_id": "server"}}, "tls.client_cert_id",
     'ssl "server" is not a client certificate (type: client)'),
    ({"scheme": "https", "tls": {"client_cert_id": "client", "client_cert": "x",
                                 "client_key": "y"}},
     "tls.client_cert_id", "cannot be used with client_cert and client_key"),
    ({"scheme": "http", "tls": {"verify": True}}, "tls", "needs scheme: https"),
    ({"scheme": "https", "tls": {"verify": "yes"}}, "tls.verify", ""),
])
def test_upstream_tls_config_errors(tmp_path, ca, upstream_fields, field, message):
    server = pki.issue(ca, tmp_path / "pki", "api.test", sans=["DNS:api.test"])
    client = pki.issue(ca, tmp_path / "pki", "gateway", usage="clientAuth")
    ssls = [{"id": "server", "cert": open(server.cert).read(), "key": open(server.key).read(),
             "snis": ["api.test"]}, client_ssl(client, id="client")]
    doc = {"ssls": ssls,
           "routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(1, **upstream_fields)}]}
    code, out = validate(tmp_path, doc)
    assert code != 0
    assert f"routes[0].upstream.{field}" in out and message in out, out


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bytes_behind_a_response_never_reach_the_next_client(gateway, ca, tmp_path, scheme,
                                                             method):
    """An upstream that sends a stray response right behind the real one, in the same TCP
    segment: over TLS, OpenSSL's read-ahead takes both in; the connection must not go back to
    the pool (the next client would get the stray answer)."""
    stray = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"
    server = None
    if scheme == "https":
        leaf = pki.issue(ca, tmp_path / "pki", "backend.test", sans=["DNS:backend.test"])
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(leaf.cert, leaf.key)
    up = CoalescingUpstream(tls=server, extra=stray).start()
    gw = gateway({"routes": [{"id": "r", "uri": "/*",
                              "upstream": inline_upstream(up.port, scheme=scheme)}]})
    answers = []
    for i in range(3):  # a new client connection each time
        r = requests.request(method, gw.url(f"/req{i}"), data=b"x" if method == "POST" else None,
                             timeout=5)
        answers.append(r.content)
    up.stop()
    assert answers == [f"answer for /req{i}".encode() for i in range(3)]


def test_a_made_up_host_neither_ejects_nodes_nor_fans_out(gateway, upstream, ca, tmp_path,
                                                          monkeypatch):
    """pass_host pass + tls.verify: the client's Host is the name checked. A Host no node's
    certificate has fails that request (502) but says nothing about the nodes."""
    monkeypatch.setenv("SSL_CERT_FILE", ca.cert)
    a = tls_upstream(upstream, ca, tmp_path, name="backend.test")
    b = tls_upstream(upstream, ca, tmp_path / "b", name="backend.test")
    gw = gateway({"routes": [{"id": "r", "uri": "/*", "upstream": inline_upstream(
        a.port, b.port, scheme="https", tls={"verify": True},
        checks={"passive": {"unhealthy": {"tcp_failures": 1}}})}]})
    assert gw.get("/x", headers={"Host": "backend.test"}).status_code == 200
    before = a.connections + b.connections
    r = gw.get("/x", headers={"Host": "attacker.invalid"})
    assert r.status_code == 502
    assert a.connections + b.connections == before + 1  # one handshake, not one per node
    states = [n.get("state") for u in gw.control("/v1/healthcheck").json()["upstreams"]
              for n in u["nodes"]]
    assert states == ["healthy", "healthy"], states
    for _ in range(4):
        assert gw.get("/x", headers={"Host": "backend.test"}).status_code == 200


def test_a_full_pool_keeps_the_newest_connections(gateway, upstream, ca, tmp_path):
    up = tls_upstream(upstream, ca, tmp_path)
    gw = gateway({"routes": [https_route(up, keepalive_pool={"size": 2})]})
    for i in range(4):  # four server names, each a TLS session of its own
        assert gw.get("/x", headers={"Host": f"junk{i}.test"}).status_code == 200
    made = up.connections
    for _ in range(5):
        assert gw.get("/x", headers={"Host": "Real.TEST"}).status_code == 200
        assert gw.get("/x", headers={"Host": "real.test"}).status_code == 200  # same name
    assert up.connections == made + 1
