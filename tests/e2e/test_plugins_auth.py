"""Authentication plugins through the binary: key-auth and jwt-auth (HS256, RS256, ES256 tokens
made here) with consumers, APISIX's 401 bodies, hide_credentials, and the consumer's own plugins
joining the route's."""
import time

import pytest

from conftest import assert_plugin_errors, route
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


# ------------------------------------------------------------------------------- hmac-auth

def hmac_headers(key_id, secret, method, target, algorithm="hmac-sha256", signed=("@request-target", "date"),
                 date=None, extra=None, body=None):
    """Headers of a request signed as APISIX 3.11's hmac-auth expects."""
    import base64
    import email.utils
    import hashlib
    import hmac
    headers = dict(extra or {})
    headers["Date"] = date or email.utils.formatdate(usegmt=True)
    if body is not None:
        headers["Digest"] = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    lines = [key_id]
    for h in signed:
        if h == "@request-target":
            lines.append(f"{method} {target}")
        elif h in {k.lower() for k in headers}:
            value = next(v for k, v in headers.items() if k.lower() == h)
            lines.append(f"{h}: {value}")
    text = "\n".join(lines) + "\n"
    digest = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256,
              "hmac-sha512": hashlib.sha512}[algorithm]
    sig = base64.b64encode(hmac.new(secret.encode(), text.encode(), digest).digest()).decode()
    headers["Authorization"] = (f'Signature keyId="{key_id}",algorithm="{algorithm}",'
                                f'headers="{" ".join(signed)}",signature="{sig}"')
    return headers


def test_hmac_auth_signed_requests_name_the_consumer(gateway, upstream):
    import email.utils
    import requests
    up = upstream()
    gw = gateway({
        "routes": [
            route("/h/*", [(up.port,)], id="h", plugins={"hmac-auth": {
                "allowed_algorithms": ["hmac-sha256", "hmac-sha512"], "clock_skew": 60,
                "signed_headers": ["date", "x-app"]},
                "proxy-rewrite": {"headers": {"set": {"X-Who": "$consumer_name"}}}}),
            route("/x", [(up.port,)], id="x", plugins={"hmac-auth": {"signed_headers": ["x-date"]}}),
            route("/body", [(up.port,)], id="body", plugins={"hmac-auth": {
                "validate_request_body": True, "hide_credentials": True}}),
        ],
        "consumers": [{"username": "billing", "plugins": {
            "hmac-auth": {"key_id": "billing-key", "secret_key": "s3cret"}}}]})
    extra = {"X-App": "chat"}
    signed = ("@request-target", "date", "x-app")
    h = hmac_headers("billing-key", "s3cret", "GET", "/h/pay?amount=5", extra=extra, signed=signed)
    r = gw.get("/h/pay?amount=5", headers=h)
    assert r.status_code == 200 and headers_seen(r)["x-who"] == ["billing"]
    h = hmac_headers("billing-key", "s3cret", "GET", "/h/pay", extra=extra, signed=signed,
                     algorithm="hmac-sha512")
    assert gw.get("/h/pay", headers=h).status_code == 200

    refused = {"message": "client request can't be validated"}

    def status(path, headers):
        r = gw.get(path, headers=headers)
        if r.status_code == 401 and "validated:" not in r.text:
            assert r.json() == refused
        return r.status_code

    good = hmac_headers("billing-key", "s3cret", "GET", "/h/pay", extra=extra, signed=signed)
    assert status("/h/pay?amount=500", good) == 401  # the target was signed without the query
    assert status("/h/pay", dict(good, **{"X-App": "other"})) == 401  # a signed header changed
    assert status("/h/pay", hmac_headers("billing-key", "wrong", "GET", "/h/pay", extra=extra,
                                         signed=signed)) == 401
    assert status("/h/pay", hmac_headers("nobody", "s3cret", "GET", "/h/pay", extra=extra,
                                         signed=signed)) == 401
    assert status("/h/pay", hmac_headers("billing-key", "s3cret", "GET", "/h/pay", extra=extra,
                                         signed=signed, algorithm="hmac-sha1")) == 401
    old = email.utils.formatdate(timeval=time.time() - 120, usegmt=True)
    assert status("/h/pay", hmac_headers("billing-key", "s3cret", "GET", "/h/pay", extra=extra,
                                         signed=signed, date=old)) == 401  # past clock_skew
    assert status("/h/pay", hmac_headers("billing-key", "s3cret", "GET", "/h/pay",
                                         extra=extra)) == 401  # x-app must be signed
    assert status("/h/pay", hmac_headers("billing-key", "s3cret", "GET", "/h/pay",
                                         signed=signed)) == 401  # ... and sent
    # A second line of a signed header would go upstream unsigned.
    import socket
    twice = hmac_headers("billing-key", "s3cret", "GET", "/h/pay", extra=extra, signed=signed)
    head = "GET /h/pay HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in twice.items()) + "X-App: evil\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(head.encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 401")
    # An old signed X-Date does not become new beside a fresh unsigned Date.
    import email.utils as eu
    old_x_date = {"X-Date": eu.formatdate(timeval=time.time() - 600, usegmt=True)}
    stale = hmac_headers("billing-key", "s3cret", "GET", "/x", extra=old_x_date,
                         signed=("@request-target", "x-date"))
    assert status("/x", dict(stale, Date=eu.formatdate(usegmt=True))) == 401
    fresh = hmac_headers("billing-key", "s3cret", "GET", "/x", signed=("@request-target", "x-date"),
                         extra={"X-Date": eu.formatdate(usegmt=True)})
    assert status("/x", fresh) == 200
    r = gw.get("/h/pay")
    assert r.status_code == 401 and r.json() == {
        "message": "client request can't be validated: missing Authorization header"}
    r = gw.get("/h/pay", headers={"Authorization": "Bearer x"})
    assert r.json() == {"message": "client request can't be validated: Authorization header "
                                   "does not start with 'Signature'"}
    gw.wait_log("client request can't be validated: Clock skew exceeded")

    body = b'{"amount": 5}'
    with_digest = ("@request-target", "date", "digest")
    h = hmac_headers("billing-key", "s3cret", "POST", "/body", body=body, signed=with_digest)
    r = requests.post(gw.url("/body"), headers=h, data=body, timeout=5)
    assert r.status_code == 200 and "authorization" not in headers_seen(r)
    r = requests.post(gw.url("/body"), headers=h, data=b'{"amount": 500}', timeout=5)
    assert r.status_code == 401  # the body is not the one whose digest was sent
    assert not [q for q in up.requests if q.body == b'{"amount": 500}']
    unsigned_digest = hmac_headers("billing-key", "s3cret", "POST", "/body", body=body)
    assert requests.post(gw.url("/body"), headers=unsigned_digest, data=body,
                         timeout=5).status_code == 401  # the Digest must be signed
    # No body: the digest is the empty body's, and it must be sent.
    assert gw.get("/body", headers=hmac_headers("billing-key", "s3cret", "GET", "/body",
                                                signed=with_digest)).status_code == 401
    assert gw.get("/body", headers=hmac_headers("billing-key", "s3cret", "GET", "/body", body=b"",
                                                signed=with_digest)).status_code == 200


def test_hmac_auth_schema_errors(tmp_path):
    out = assert_plugin_errors(tmp_path, "hmac-auth", [
        ({"allowed_algorithms": ["hmac-md5"]}, "hmac-auth.allowed_algorithms"),
        ({"allowed_algorithms": []}, "hmac-auth.allowed_algorithms"),
        ({"clock_skew": 0}, "hmac-auth.clock_skew")],
        consumers=[{"username": "a", "plugins": {"hmac-auth": {"key_id": "k"}}}])
    assert "consumers[0].plugins.hmac-auth.secret_key: is required" in out
