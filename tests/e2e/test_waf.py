"""The waf and uri-blocker plugins through the real binary: the attack corpus (shared with the
unit tests) blocked in the query, a header, a cookie, a form body and a JSON body with a 403
that carries the request id, the benign corpus never blocked, log-only rules, metrics, and the
chunked-body rule on routes that scan bodies."""
import json
import os
import socket
import urllib.parse

import pytest
import requests

from conftest import route

CORPUS = os.path.join(os.path.dirname(__file__), "../unit/plugins/waf/corpus")


def read_corpus(name):
    rows = []
    with open(os.path.join(CORPUS, name), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            kind, value = line.split("\t", 1)
            rows.append((kind, value.replace("{LF}", "\n").replace("{CR}", "\r")))
    return rows


ATTACKS = [v for _, v in read_corpus("attacks.txt")]
BENIGN = read_corpus("benign.txt")


@pytest.fixture
def waf_gw(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/api/*", [(up.port,)], id="api",
              plugins={"waf": {"rulesets": ["php-injection"], "max_body": 16384,
                               "rules": [{"id": "no-debug", "pattern": "debug_mode=1",
                                          "targets": ["args"], "action": "log"}]}}),
        route("/partial/*", [(up.port,)], id="partial",
              plugins={"waf": {"max_body": 16384, "oversize_body": "pass"}}),
        route("/watch/*", [(up.port,)], id="watch",
              plugins={"waf": {"max_body": 16384, "mode": "log"}}),
        route("/plain/*", [(up.port,)], id="plain"),
        route("/blk/*", [(up.port,)], id="blk",
              plugins={"uri-blocker": {"block_rules": ["\\.\\./", "wp-admin"],
                                       "rejected_msg": "access denied"}}),
    ]}, workers=2)
    return gw


def blocked(r):
    return r.status_code == 403 and r.json().get("error_msg") == "blocked by the WAF"


def test_every_attack_is_blocked_everywhere(waf_gw):
    s = requests.Session()
    url = waf_gw.url("/api/items")
    for payload in ATTACKS:
        assert blocked(s.get(url, params={"q": payload})), ("query", payload)
        assert blocked(s.post(url, json={"message": payload})), ("json", payload)
        assert blocked(s.post(url, data={"comment": payload})), ("form", payload)
        # double-encoded in the query
        twice = urllib.parse.quote(urllib.parse.quote(payload, safe=""), safe="")
        assert blocked(s.get(url + "?q=" + twice)), ("double", payload)
    header_safe = [p for p in ATTACKS if all(32 <= ord(c) < 127 for c in p)]
    for payload in header_safe[:20]:
        assert blocked(s.get(url, headers={"User-Agent": payload})), ("ua", payload)
        assert blocked(s.get(url, headers={"Cookie": "c=" + urllib.parse.quote(payload)})), payload


def test_benign_traffic_is_never_blocked(waf_gw):
    s = requests.Session()
    url = waf_gw.url("/api/chat")
    for kind, value in BENIGN:
        if kind in ("text", "json"):
            body = json.loads(value) if kind == "json" else {"text": value, "to": 1002}
            assert s.post(url, json=body).status_code == 200, (kind, value)
        if kind in ("text", "form"):
            data = value if kind == "form" else {"text": value}
            assert s.post(url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"}
                          if kind == "form" else None).status_code == 200, (kind, value)
        if kind == "text":
            assert s.get(url, params={"q": value}).status_code == 200, (kind, value)
        if kind == "uri":
            assert s.get(waf_gw.url("/api" + value)).status_code == 200, (kind, value)
        if kind == "ua":
            assert s.get(url, headers={"User-Agent": value}).status_code == 200, (kind, value)
        if kind == "cookie":
            assert s.get(url, headers={"Cookie": value}).status_code == 200, (kind, value)


def test_block_answer_log_line_and_metrics(waf_gw):
    r = requests.get(waf_gw.url("/api/x"), params={"cmd": "system('id')"},
                     headers={"X-Request-Id": "req-abc-123"})
    assert r.status_code == 403
    assert r.json()["request_id"]
    waf_gw.wait_log("rule php-system")
    # a route without the plugin passes the same request
    assert requests.get(waf_gw.url("/plain/x"), params={"cmd": "system('id')"}).status_code == 200
    # log-only rule: passes, counted
    assert requests.get(waf_gw.url("/api/x"), params={"debug_mode": "1"}).status_code == 200
    waf_gw.wait_log("log-only rule no-debug")
    text = waf_gw.control("/metrics").text
    assert 'portico_waf_matches_total{rule="php-system",action="block"} 1' in text
    assert 'portico_waf_matches_total{rule="no-debug",action="log"} 1' in text


def test_chunked_bodies_need_a_length_on_scanning_routes(waf_gw):
    with socket.create_connection(("127.0.0.1", waf_gw.port)) as s:
        s.sendall(b"POST /api/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n0\r\n\r\n")
        head = s.recv(4096).decode()
    assert head.startswith("HTTP/1.1 411 Length Required")
    # A route whose WAF only logs refuses nothing: the chunked body passes, unscanned.
    with socket.create_connection(("127.0.0.1", waf_gw.port)) as s:
        s.sendall(b"POST /watch/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        head = s.recv(4096).decode()
    assert head.startswith("HTTP/1.1 200"), head


def test_bodies_longer_than_the_scan_are_refused_unless_the_route_says_pass(waf_gw):
    # JSON padded with blanks past max_body: a backend parsing it whole would run the call.
    padded = json.dumps({"pad": " " * 20000, "cmd": "system('id')"})
    r = requests.post(waf_gw.url("/api/x"), data=padded,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert "max_body 16384" in r.json()["error_msg"]
    waf_gw.wait_log_line("waf: refused request", "over max_body 16384")
    assert requests.post(waf_gw.url("/api/x"), data="a" * 16384).status_code == 200  # at the limit
    # pass: the first max_body bytes are scanned, the rest streams
    url = waf_gw.url("/partial/x")
    assert requests.post(url, data="a" * 100000 + "system('id')").status_code == 200
    assert blocked(requests.post(url, data="system('id')" + "a" * 100000))
    # log mode refuses nothing: the oversize body is logged and passes
    assert requests.post(waf_gw.url("/watch/x"), data=padded).status_code == 200
    waf_gw.wait_log_line("waf: passed request", "over max_body 16384")
    metrics = waf_gw.control("/metrics").text
    assert 'portico_waf_matches_total{rule="oversize_body",action="block"} 1' in metrics
    assert 'portico_waf_matches_total{rule="oversize_body",action="log"} 1' in metrics


def test_uri_blocker(waf_gw):
    r = requests.get(waf_gw.url("/blk/wp-admin/x"))
    assert r.status_code == 403 and r.json() == {"error_msg": "access denied"}
    assert requests.get(waf_gw.url("/blk/fine")).status_code == 200


def test_schema_errors_name_the_field(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/a", [(up.port,)], id="a")]})
    gw.write_routes({"routes": [route("/a", [(up.port,)], id="a", plugins={
        "waf": {"rulesets": ["no-such-set"], "rules": [{"id": "x", "pattern": "(", "targets": ["args"]}]}})]})
    gw.wait_log("routes[0].plugins.waf.rulesets")
    assert "routes[0].plugins.waf.rules[0].pattern" in gw.error_log()


def test_json_sent_as_a_form_or_behind_a_bom_is_read_as_json(waf_gw):
    # Backends that parse JSON whatever the type would read the \u escape as "s".
    body = '{"id":5,"data":{"token":"\\u0073ystem(\'id\')"}}'
    url = waf_gw.url("/api/items")
    for ctype, data in (("application/x-www-form-urlencoded", body),
                        ("text/plain", "\ufeff" + body),
                        ("application/x-www-form-urlencoded", "{=1&a=system+('id')")):
        r = requests.post(url, data=data.encode(), headers={"Content-Type": ctype})
        assert blocked(r), (ctype, data, r.status_code)


def test_a_rule_for_some_targets_is_not_hidden_by_the_same_text_elsewhere(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/*", [(up.port,)], id="r", plugins={"waf": {"rules": [
        {"id": "sqli", "pattern": "union\\s+select", "targets": ["args"]},
        {"id": "ua", "pattern": "evilua", "targets": ["headers"]}]}})]})
    assert blocked(gw.get("/x?q=union+select"))
    assert blocked(gw.get("/union%20select?q=union+select"))  # the path first: not its target
    assert blocked(gw.get("/x?z=evilua", headers={"User-Agent": "evilua"}))
    assert gw.get("/union%20select").status_code == 200
