"""Authentication plugins through the binary: key-auth and jwt-auth (HS256, RS256, ES256 tokens
made here) with consumers, APISIX's 401 bodies, hide_credentials, and the consumer's own plugins
joining the route's."""
import time

import pytest

from conftest import route
from jwt_tokens import PemKey, hs256, unsigned


def headers_seen(r):
    out = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


# ------------------------------------------------------------------------------- key-auth

def test_key_auth_header_query_and_apisix_401_bodies(gateway, upstream):
    up = upstream()
    gw = gateway({
        "routes": [
            route("/plain", [(up.port,)], id="plain", plugins={"key-auth": {}}),
            route("/custom", [(up.port,)], id="custom",
                  plugins={"key-auth": {"header": "X-Key", "query": "k"}}),
        ],
        "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}]})
    r = gw.get("/plain", headers={"apikey": "jack-key"})
    assert r.status_code == 200
    assert headers_seen(r)["apikey"] == ["jack-key"]  # not hidden by default
    assert gw.get("/plain?apikey=jack-key").status_code == 200
    r = gw.get("/plain")
    assert r.status_code == 401 and r.json() == {"message": "Missing API key in request"}
    r = gw.get("/plain", headers={"apikey": "nope"})
    assert r.status_code == 401 and r.json() == {"message": "Invalid API key in request"}
    assert gw.get("/plain?apikey=nope").status_code == 401
    assert gw.get("/custom", headers={"X-Key": "jack-key"}).status_code == 200
    assert gw.get("/custom?k=jack-key").status_code == 200
    assert gw.get("/custom", headers={"apikey": "jack-key"}).status_code == 401


def test_key_auth_hide_credentials(gateway, upstream):
    up = upstream()
    gw = gateway({
        "routes": [route("/hidden", [(up.port,)], id="hidden",
                         plugins={"key-auth": {"hide_credentials": True}})],
        "consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}]})
    r = gw.get("/hidden", headers={"apikey": "jack-key", "X-Other": "1"})
    assert r.status_code == 200
    h = headers_seen(r)
    assert "apikey" not in h and h["x-other"] == ["1"]
    r = gw.get("/hidden?a=1&apikey=jack-key&b=2")
    assert r.status_code == 200 and r.json()["target"] == "/hidden?a=1&b=2"
    assert gw.get("/hidden?apikey=jack-key").json()["target"] == "/hidden"


def test_consumer_plugins_join_the_route(gateway, upstream):
    up = upstream()
    gw = gateway({
        "routes": [route("/api", [(up.port,)], id="api", plugins={
            "key-auth": {},
            "proxy-rewrite": {"headers": {"set": {"X-Tier": "route"}}}})],
        "consumers": [
            {"username": "limited", "plugins": {
                "key-auth": {"key": "limited-key"},
                "limit-req": {"rate": 1, "burst": 0, "nodelay": True, "rejected_code": 429},
                "proxy-rewrite": {"headers": {"set": {"X-Tier": "limited"}}}}},
            {"username": "free", "plugins": {"key-auth": {"key": "free-key"}}}]})
    r = gw.get("/api", headers={"apikey": "limited-key"})
    assert r.status_code == 200 and headers_seen(r)["x-tier"] == ["limited"]
    assert gw.get("/api", headers={"apikey": "limited-key"}).status_code == 429
    for _ in range(3):
        r = gw.get("/api", headers={"apikey": "free-key"})
        assert r.status_code == 200 and headers_seen(r)["x-tier"] == ["route"]


# -------------------------------------------------------------------------------- jwt-auth

@pytest.fixture(scope="module")
def pem_keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwt-keys")
    return {"rsa": PemKey(d, "RSA"), "ec": PemKey(d, "EC"), "other_rsa": PemKey(d, "RSA")}


def jwt_gateway(gateway, up, pem_keys, **route_conf):
    return gateway({
        "routes": [route("/jwt", [(up.port,)], id="jwt", plugins={"jwt-auth": route_conf})],
        "consumers": [
            {"username": "hs", "plugins": {"jwt-auth": {
                "key": "hs-key", "secret": "a-long-enough-test-secret", "lifetime_grace_period": 0}}},
            {"username": "rs", "plugins": {"jwt-auth": {
                "key": "rs-key", "algorithm": "RS256", "public_key": pem_keys["rsa"].public_pem}}},
            {"username": "es", "plugins": {"jwt-auth": {
                "key": "es-key", "algorithm": "ES256", "public_key": pem_keys["ec"].public_pem}}},
            {"username": "graced", "plugins": {"jwt-auth": {
                "key": "graced-key", "secret": "graced-secret", "lifetime_grace_period": 30}}},
        ]})


def test_jwt_auth_accepts_hs256_rs256_es256_from_header_query_cookie(gateway, upstream, pem_keys):
    up = upstream()
    gw = jwt_gateway(gateway, up, pem_keys)
    exp = int(time.time()) + 60
    hs = hs256({"key": "hs-key", "exp": exp}, "a-long-enough-test-secret")
    rs = pem_keys["rsa"].sign({"key": "rs-key", "exp": exp})
    es = pem_keys["ec"].sign({"key": "es-key", "exp": exp})
    for token in (hs, rs, es):
        r = gw.get("/jwt", headers={"Authorization": "Bearer " + token})
        assert r.status_code == 200, (token, r.text)
    assert gw.get("/jwt", headers={"Authorization": hs}).status_code == 200  # no "Bearer "
    assert gw.get("/jwt?jwt=" + rs).status_code == 200
    assert gw.get("/jwt", cookies={"jwt": es}).status_code == 200
    # Not hidden by default.
    r = gw.get("/jwt", headers={"Authorization": "Bearer " + hs})
    assert headers_seen(r)["authorization"] == ["Bearer " + hs]


def test_jwt_auth_refusals_with_apisix_messages(gateway, upstream, pem_keys):
    up = upstream()
    gw = jwt_gateway(gateway, up, pem_keys)
    now = int(time.time())
    secret = "a-long-enough-test-secret"

    def status_and_message(token):
        r = gw.get("/jwt", headers={"Authorization": "Bearer " + token} if token else {})
        return r.status_code, r.json().get("message")
    verify_failed = (401, "failed to verify jwt")
    assert status_and_message(None) == (401, "Missing JWT token in request")
    assert status_and_message("not.a.jwt") == (401, "JWT token invalid")
    assert status_and_message(hs256({"exp": now + 60}, secret)) == \
        (401, "missing user key in JWT token")
    assert status_and_message(hs256({"key": "who", "exp": now + 60}, secret)) == \
        (401, "Invalid user key in JWT token")
    # Signed with another secret or another private key.
    assert status_and_message(hs256({"key": "hs-key"}, "another-secret")) == verify_failed
    assert status_and_message(pem_keys["other_rsa"].sign({"key": "rs-key"})) == verify_failed
    # exp in the past, nbf in the future.
    assert status_and_message(hs256({"key": "hs-key", "exp": now - 5}, secret)) == verify_failed
    assert status_and_message(hs256({"key": "hs-key", "nbf": now + 60}, secret)) == verify_failed
    # alg none, and algorithm confusion: HS256 keyed with the RSA public key, ES256 for RS256.
    assert status_and_message(unsigned({"key": "hs-key"})) == verify_failed
    assert status_and_message(hs256({"key": "rs-key"}, pem_keys["rsa"].public_pem)) == verify_failed
    assert status_and_message(pem_keys["ec"].sign({"key": "rs-key"})) == verify_failed
    # A tampered payload under a good signature.
    good = hs256({"key": "hs-key", "exp": now + 60}, secret).split(".")
    evil = hs256({"key": "hs-key", "exp": now + 6000}, secret).split(".")
    assert status_and_message(".".join([good[0], evil[1], good[2]])) == verify_failed
    # No exp or nbf at all: valid (claims are optional, as in APISIX).
    assert status_and_message(hs256({"key": "hs-key"}, secret))[0] == 200
    # lifetime_grace_period: 30 s of clock skew.
    assert status_and_message(hs256({"key": "graced-key", "exp": now - 5}, "graced-secret"))[0] == 200
    assert status_and_message(hs256({"key": "graced-key", "exp": now - 120}, "graced-secret")) == \
        verify_failed


def test_jwt_auth_hide_credentials(gateway, upstream, pem_keys):
    up = upstream()
    gw = jwt_gateway(gateway, up, pem_keys, hide_credentials=True)
    token = hs256({"key": "hs-key"}, "a-long-enough-test-secret")
    r = gw.get("/jwt", headers={"Authorization": "Bearer " + token})
    assert r.status_code == 200 and "authorization" not in headers_seen(r)
    # from the query: the argument goes, the others stay
    r = gw.get("/jwt?a=1&jwt=" + token + "&b=2")
    assert r.status_code == 200 and r.json()["target"] == "/jwt?a=1&b=2"
    # from a cookie: that cookie goes, the others stay
    r = gw.get("/jwt", headers={"Cookie": "theme=dark; jwt=" + token + "; lang=en"})
    assert r.status_code == 200 and headers_seen(r)["cookie"] == ["theme=dark; lang=en"]
    r = gw.get("/jwt", headers={"Cookie": "jwt=" + token})
    assert r.status_code == 200 and "cookie" not in headers_seen(r)


def test_limit_req_keyed_by_the_consumer_key_auth_named(gateway, upstream):
    up = upstream()
    gw = gateway({
        "routes": [route("/per-consumer", [(up.port,)], id="per-consumer", plugins={
            "key-auth": {},
            "limit-req": {"rate": 1, "burst": 0, "nodelay": True, "key": "consumer_name"}})],
        "consumers": [{"username": "ann", "plugins": {"key-auth": {"key": "ann-key"}}},
                      {"username": "bob", "plugins": {"key-auth": {"key": "bob-key"}}}]})
    as_ = lambda key: gw.get("/per-consumer", headers={"apikey": key}).status_code
    assert [as_("ann-key"), as_("ann-key"), as_("bob-key")] == [200, 503, 200]
