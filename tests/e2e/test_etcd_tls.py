"""TLS to etcd (config.etcd.tls {verify, ca, cert, key}): a real etcd on https://127.0.0.1 with
throwaway certificates made by the openssl CLI (pki.py), server-only and mutual TLS. The gateway
checks the chain against `ca` and the URL's host against the certificate's subjectAltName."""
import time

import pytest

import pki
from conftest import inline_upstream, served_by, wait_until
from etcd_server import EtcdServer


@pytest.fixture
def tls_etcd(tmp_path):
    """make(**EtcdServer options) -> a started EtcdServer serving https."""
    servers = []

    def make(**kw):
        d = tmp_path / f"etcd{len(servers)}"
        d.mkdir()
        server = EtcdServer(d, tls=True, **kw)
        servers.append(server)
        return server.start()

    yield make
    for s in servers:
        s.stop()


def tls_options(tls, **kw):
    """etcd_options for the gateway fixture: tls plus short timeouts, so a failing start-up
    fails fast."""
    return dict({"tls": tls, "timeout": "2s"}, **kw)


def assert_route_served_after_admin_put(gw, etcd, up, uri="/tls"):
    """A route written through the Admin API lands in etcd (over TLS) and comes back through the
    watch (over TLS) to be served."""
    r = gw.admin("PUT", "/routes/over-tls", {"uri": uri, "upstream": inline_upstream(up.port)})
    assert r.status_code == 201, r.text
    assert etcd.get_json(gw.key("routes", "over-tls"))["uri"] == uri
    assert wait_until(lambda: served_by(gw, uri) == up.name, 3), served_by(gw, uri)
    h = gw.health()
    assert h["config"]["reachable"] is True and h["config"]["last_error"] == "", h


def assert_startup_fails_naming_etcd(gw):
    t0 = time.time()
    gw.launch()
    rc = gw.wait_exit(20)
    assert rc == 1, (rc, gw.stderr(), gw.error_log())
    assert time.time() - t0 < 15
    out = gw.stderr() + gw.stdout() + gw.error_log()
    assert "etcd unreachable at start-up" in out, out
    assert "https://127.0.0.1:" in out, out  # the endpoint that failed is named
    return out


def test_server_tls_with_ca_serves_a_route_written_through_the_admin_api(tls_etcd, gateway, upstream):
    etcd = tls_etcd()
    assert etcd.url.startswith("https://127.0.0.1:")
    up = upstream(name="a")
    gw = gateway(etcd=etcd, etcd_options=tls_options({"ca": etcd.ca.cert}))
    assert_route_served_after_admin_put(gw, etcd, up)
    # a value written straight into etcd reaches the node through the TLS watch
    etcd.put_json(gw.key("routes", "direct"), {"id": "direct", "uri": "/direct",
                                               "upstream": inline_upstream(up.port)})
    assert wait_until(lambda: served_by(gw, "/direct") == "a", 3)


def test_mutual_tls_with_client_certificate(tls_etcd, gateway, upstream):
    etcd = tls_etcd(client_cert_auth=True)
    up = upstream(name="a")
    gw = gateway(etcd=etcd, etcd_options=tls_options(
        {"ca": etcd.ca.cert, "cert": etcd.client_cert.cert, "key": etcd.client_cert.key}))
    assert_route_served_after_admin_put(gw, etcd, up)

    # without a client certificate etcd refuses the handshake: start-up fails naming etcd
    anonymous = gateway(etcd=etcd, start=False,
                        etcd_options=tls_options({"ca": etcd.ca.cert}, startup_timeout="1s"))
    assert_startup_fails_naming_etcd(anonymous)

    # a client certificate from another CA is refused the same way
    other = pki.make_ca(gw.dir / "other-pki", "Other CA")
    stranger = pki.issue(other, gw.dir / "other-pki", "stranger", usage="clientAuth")
    foreign = gateway(etcd=etcd, start=False, etcd_options=tls_options(
        {"ca": etcd.ca.cert, "cert": stranger.cert, "key": stranger.key}, startup_timeout="1s"))
    assert_startup_fails_naming_etcd(foreign)


def test_wrong_ca_fails_startup_with_exit_1_naming_etcd(tls_etcd, gateway, tmp_path):
    etcd = tls_etcd()
    wrong = pki.make_ca(tmp_path / "wrong-pki", "Wrong CA")
    gw = gateway(etcd=etcd, start=False,
                 etcd_options=tls_options({"ca": wrong.cert}, startup_timeout="1s"))
    out = assert_startup_fails_naming_etcd(gw)
    assert "certificate verify failed" in out, out


def test_no_ca_means_the_system_store_which_does_not_trust_a_private_ca(tls_etcd, gateway):
    etcd = tls_etcd()
    gw = gateway(etcd=etcd, start=False, etcd_options=tls_options({}, startup_timeout="1s"))
    assert_startup_fails_naming_etcd(gw)


def test_verify_false_works_without_a_ca(tls_etcd, gateway, upstream):
    etcd = tls_etcd()
    up = upstream(name="a")
    gw = gateway(etcd=etcd, etcd_options=tls_options({"verify": False}))
    assert_route_served_after_admin_put(gw, etcd, up)


def test_host_name_of_the_url_is_checked_against_the_certificate(tls_etcd, gateway, upstream):
    # a certificate for "localhost" only: the same server is fine as https://localhost and
    # refused as https://127.0.0.1 (no IP:127.0.0.1 in its subjectAltName)
    etcd = tls_etcd(server_sans=("DNS:localhost",), host="localhost")
    assert etcd.url.startswith("https://localhost:")
    up = upstream(name="a")
    by_name = gateway(etcd=etcd, etcd_options=tls_options({"ca": etcd.ca.cert}))
    r = by_name.admin("PUT", "/routes/named", {"uri": "/named", "upstream": inline_upstream(up.port)})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: served_by(by_name, "/named") == "a", 3)

    by_ip = gateway(etcd=etcd, start=False, endpoints=[f"https://127.0.0.1:{etcd.client_port}"],
                    etcd_options=tls_options({"ca": etcd.ca.cert}, startup_timeout="1s"))
    out = assert_startup_fails_naming_etcd(by_ip)
    assert "certificate verify failed" in out, out
