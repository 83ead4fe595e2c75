"""Client certificates (mTLS) through the real binary: an `ssls` object's `client` (APISIX:
`ca`, `depth`, `skip_mtls_uri_regex`) makes the listener ask for a certificate from that CA;
the $ssl_client_* variables carry what the client proved to the upstream (proxy-rewrite
headers, as APISIX's mTLS tutorial does). Real clients: Python's ssl with certificates made by
the openssl CLI."""
import http.client
import json
import socket
import ssl
import subprocess

import prom_text
import pytest

import pki
from conftest import free_port, inline_upstream, validate, wait_until
from im_demo import im_chat
from test_streams import stop_gateways, tlv_route  # noqa: F401 (fixture)
from test_stream_tls import tls_stream_gateway
from test_tls import (SniConnection, ca, client_context, issue, ssl_object,  # noqa: F401
                      tls_gateway, tls_metrics)

CLIENT_HEADERS = {"X-Client-Verify": "$ssl_client_verify", "X-Client-DN": "$ssl_client_s_dn",
                  "X-Client-Issuer": "${ssl_client_i_dn}", "X-Client-Serial": "$ssl_client_serial",
                  "X-Client-Fingerprint": "$ssl_client_fingerprint"}


def client_cert(ca, tmp_path, name):
    return pki.issue(ca, tmp_path / "clients", name, usage="clientAuth")


def fingerprint(cert_path):
    out = subprocess.run(["openssl", "x509", "-in", cert_path, "-noout", "-fingerprint", "-sha1"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def serial(cert_path):
    out = subprocess.run(["openssl", "x509", "-in", cert_path, "-noout", "-serial"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1].upper()


def mtls_routes(up, ca, tmp_path, client_ca=None, **client):
    """m.test (client certificates from `client_ca`, default `ca`, with `client` fields), m2.test
    and *.w.test (likewise, plain) and open.test (none asked); every path echoes, with the client
    certificate's variables."""
    client_pem = open((client_ca or ca).cert).read()
    return {"routes": [{"id": "echo", "uri": "/*", "upstream": inline_upstream(up.port),
                        "plugins": {"proxy-rewrite": {"headers": {"set": CLIENT_HEADERS}}}}],
            "ssls": [ssl_object("m", issue(ca, tmp_path, "m.test"), ["m.test"],
                                client=dict({"ca": client_pem}, **client)),
                     ssl_object("m2", issue(ca, tmp_path, "m2.test"), ["m2.test"],
                                client={"ca": client_pem}),
                     ssl_object("w", issue(ca, tmp_path, "x.w.test"), ["*.w.test"],
                                client={"ca": client_pem}),
                     ssl_object("open", issue(ca, tmp_path, "open.test"), ["open.test"])]}


def mtls_gateway(gateway, upstream, ca, tmp_path, listener=None, **client):
    up = upstream()
    port = free_port()
    gw = tls_gateway(gateway, mtls_routes(up, ca, tmp_path, **client), port, listener=listener)
    gw.tls_port, gw.up = port, up
    return gw


def call(port, name, ca, path="/echo", cert=None, host=None):
    """GET path over TLS with SNI `name` (and Host `host`, by default the same), presenting
    `cert` (a pki.CertKey) if given: (status, echoed request headers or the error body)."""
    ctx = client_context(ca)
    if cert:
        ctx.load_cert_chain(cert.cert, cert.key)
    conn = SniConnection(port, name, ctx)
    try:
        status, _, body = conn.call("GET", path, headers={"Host": host} if host else None)
    finally:
        conn.close()
    data = json.loads(body)
    if status == 200 and "headers" in data:
        return status, {k.lower(): v for k, v in data["headers"]}
    return status, data


def refused(port, name, ca, cert=None):
    """True when the gateway ends the connection over the certificate (in TLS 1.3 the client's
    handshake is done before the server has looked at its certificate: the alert comes with
    the first read)."""
    try:
        call(port, name, ca, cert=cert)
    except (ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        return True
    return False


def test_a_required_client_certificate_is_checked_in_the_handshake(gateway, upstream, ca,
                                                                    tmp_path):
    gw = mtls_gateway(gateway, upstream, ca, tmp_path)
    alice = client_cert(ca, tmp_path, "alice")
    status, headers = call(gw.tls_port, "m.test", ca, cert=alice)
    assert status == 200
    assert headers["x-client-verify"] == "SUCCESS"
    assert headers["x-client-dn"] == "CN=alice"
    assert headers["x-client-issuer"] == "CN=Portico Test CA"
    assert headers["x-client-fingerprint"] == fingerprint(alice.cert)
    assert headers["x-client-serial"] == serial(alice.cert)
    before = tls_metrics(gw)
    # No certificate, or one from another CA: the handshake fails, nothing reaches the route.
    assert refused(gw.tls_port, "m.test", ca)
    stranger_ca = pki.make_ca(tmp_path / "other", "Other CA")
    assert refused(gw.tls_port, "m.test", ca, cert=client_cert(stranger_ca, tmp_path, "mallory"))
    assert wait_until(lambda: tls_metrics(gw)["client_certificate"] ==
                      before["client_certificate"] + 2, 5), tls_metrics(gw)
    # Another name on the same listener asks for nothing; its variables say so.
    status, headers = call(gw.tls_port, "open.test", ca)
    assert status == 200 and headers["x-client-verify"] == "NONE"
    assert headers["x-client-dn"] == ""


def test_a_protected_host_is_not_reached_through_another_name(gateway, upstream, ca, tmp_path):
    # The certificate is asked for by name (SNI) in the handshake; the route is chosen by Host.
    # A request whose Host asks for a certificate must come on a connection that proved one for
    # that very name (as APISIX checks), not through a name that asks for nothing or another's.
    gw = mtls_gateway(gateway, upstream, ca, tmp_path)
    alice = client_cert(ca, tmp_path, "alice")
    status, body = call(gw.tls_port, "open.test", ca, host="m.test")
    assert status == 400 and body["error_msg"] == "client certificate required"
    status, body = call(gw.tls_port, "m2.test", ca, cert=alice, host="m.test")
    assert status == 400 and "another host name" in body["error_msg"]
    status, headers = call(gw.tls_port, "m.test", ca, cert=alice, host=f"M.test:{gw.tls_port}")
    assert status == 200 and headers["x-client-dn"] == "CN=alice"
    status, headers = call(gw.tls_port, "m.test", ca, cert=alice, host="elsewhere.test")
    assert status == 200  # a Host with no certificate of its own asks for nothing more
    # A wildcard object covers a host at any depth here, as a route's wildcard host does.
    status, body = call(gw.tls_port, "open.test", ca, host="a.b.w.test")
    assert status == 400 and body["error_msg"] == "client certificate required"
    # A Host that could be read two ways (by the router and by this check) is refused.
    for odd in ["[a.b.w.test", "x:a.b.w.test:443", "A" * 243 + ".w.test.other.org", "a.w.test:x"]:
        status, body = call(gw.tls_port, "open.test", ca, host=odd)
        assert status == 400 and body["error_msg"] == "invalid Host", odd


def test_without_sni_the_fallback_name_is_the_one_proved(gateway, upstream, ca, tmp_path):
    gw = mtls_gateway(gateway, upstream, ca, tmp_path, listener={"fallback_sni": "m.test"})
    alice = client_cert(ca, tmp_path, "alice")
    ctx = client_context(ca, check_hostname=False)
    ctx.load_cert_chain(alice.cert, alice.key)
    raw = socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5)
    conn = http.client.HTTPSConnection("127.0.0.1", gw.tls_port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(raw)  # no server name
    conn.request("GET", "/echo", headers={"Host": "m.test"})
    r = conn.getresponse()
    echo = json.loads(r.read())
    assert r.status == 200, echo
    assert {k.lower(): v for k, v in echo["headers"]}["x-client-dn"] == "CN=alice"
    conn.close()


def test_a_changed_ca_sends_kept_alive_clients_to_connect_again(gateway, upstream, ca, tmp_path):
    gw = mtls_gateway(gateway, upstream, ca, tmp_path)
    alice = client_cert(ca, tmp_path, "alice")
    ctx = client_context(ca)
    ctx.load_cert_chain(alice.cert, alice.key)
    kept = SniConnection(gw.tls_port, "m.test", ctx)
    assert kept.call("GET", "/echo")[0] == 200
    # The admin replaces the client CA: alice's certificate no longer counts.
    other_ca = pki.make_ca(tmp_path / "other", "Other CA")
    gw.write_routes(mtls_routes(gw.up, ca, tmp_path, client_ca=other_ca))
    assert wait_until(lambda: refused(gw.tls_port, "m.test", ca, cert=alice), 5)
    status, _, body = kept.call("GET", "/echo")
    assert status == 421 and "connect again" in json.loads(body)["error_msg"]
    kept.close()


def test_skip_mtls_uri_regex_lets_chosen_paths_through_without_a_certificate(gateway, upstream,
                                                                              ca, tmp_path):
    gw = mtls_gateway(gateway, upstream, ca, tmp_path, skip_mtls_uri_regex=["^/public/"])
    status, headers = call(gw.tls_port, "m.test", ca, "/public/status")
    assert status == 200 and headers["x-client-verify"] == "NONE"
    status, body = call(gw.tls_port, "m.test", ca, "/private")
    assert status == 400 and body["error_msg"] == "client certificate required"
    # The path is checked after normalisation: no way round it with dot segments.
    status, _ = call(gw.tls_port, "m.test", ca, "/public/../private")
    assert status == 400
    stranger_ca = pki.make_ca(tmp_path / "other", "Other CA")
    mallory = client_cert(stranger_ca, tmp_path, "mallory")
    status, body = call(gw.tls_port, "m.test", ca, "/private", cert=mallory)
    assert status == 400 and body["error_msg"] == "client certificate not accepted"
    status, headers = call(gw.tls_port, "m.test", ca, "/private",
                           cert=client_cert(ca, tmp_path, "bob"))
    assert status == 200 and headers["x-client-dn"] == "CN=bob"


def test_client_configuration_errors_name_the_field(tmp_path, ca):
    cert = issue(ca, tmp_path, "m.test")
    cases = [({}, "ssls[0].client.ca: is required"),
             ({"ca": "not pem"}, "ssls[0].client.ca"),
             ({"ca": open(ca.cert).read(), "depth": -1}, "ssls[0].client.depth"),
             ({"ca": open(ca.cert).read(), "skip_mtls_uri_regex": ["(unclosed"]},
              "ssls[0].client.skip_mtls_uri_regex[0]: is not a valid regular expression"),
             ({"ca": open(ca.cert).read(), "skip_mtls_uri_regex": []},
              "ssls[0].client.skip_mtls_uri_regex: must be a non-empty list")]
    for client, expected in cases:
        rc, out = validate(tmp_path, {"ssls": [ssl_object("m", cert, ["m.test"], client=client)]})
        assert rc != 0 and expected in out, (client, out)


def test_stream_listeners_require_the_certificate_too(tmp_path, ca, backends, stop_gateways):
    b = backends("demo1")
    cert = issue(ca, tmp_path, "im.test")
    client = {"ca": open(ca.cert).read(), "skip_mtls_uri_regex": ["^/"]}  # no paths on streams
    g = tls_stream_gateway(tmp_path, {"ssls": [ssl_object("s1", cert, ["im.test"], client=client)],
                                      "stream_routes": [tlv_route(b)]})
    stop_gateways.append(g)
    good = client_context(ca)
    alice = client_cert(ca, tmp_path, "alice")
    good.load_cert_chain(alice.cert, alice.key)
    chat = im_chat.ImClient("127.0.0.1", g.tls_port, tls=good, server_name="im.test")
    assert chat.login(1)[1]["server"] == "demo1"
    chat.close()
    raw = socket.create_connection(("127.0.0.1", g.tls_port), timeout=5)
    s = client_context(ca).wrap_socket(raw, server_hostname="im.test")
    try:
        assert s.recv(100) == b""
    except (ssl.SSLError, ConnectionResetError):
        pass
    assert wait_until(lambda: prom_text.parse(g.control("/metrics").text).value(
        "portico_stream_closed_total", reason="tls_handshake") >= 1, 5)
