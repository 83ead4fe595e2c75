"""request-validation through the binary: JSON and form bodies and headers checked against JSON
Schemas, the reason (or rejected_msg) with rejected_code, nothing reaching the upstream on a
refusal, bodies too deep, too long or missing, and schema errors naming the keyword."""
import json
import socket

import requests

from conftest import assert_plugin_errors, route

MESSAGE = {"type": "object", "required": ["to", "text"], "additionalProperties": False,
           "properties": {"to": {"type": "string", "pattern": "^[a-z0-9_]{3,32}$"},
                          "text": {"type": "string", "minLength": 1, "maxLength": 20},
                          "kind": {"enum": ["text", "sticker"]},
                          "attachments": {"type": "array", "maxItems": 2,
                                          "items": {"$ref": "#/definitions/attachment"}}},
           "definitions": {"attachment": {"type": "object", "required": ["url"],
                                          "properties": {"url": {"type": "string",
                                                                 "format": "hostname"}}}}}


def test_json_bodies_and_headers_are_checked(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/send", [(up.port,)], id="send", methods=["POST"], plugins={"request-validation": {
            "body_schema": MESSAGE,
            "header_schema": {"type": "object", "required": ["x-app-version"],
                              "properties": {"x-app-version": {"pattern": "^[0-9]+\\.[0-9]+$"}}}}}),
        route("/form", [(up.port,)], id="form", plugins={"request-validation": {
            "body_schema": {"type": "object", "required": ["user"],
                            "properties": {"user": {"type": "string", "minLength": 3},
                                           "tag": {"type": "array"}}},
            "rejected_code": 422, "rejected_msg": "bad form"}})]})
    hdr = {"X-App-Version": "3.14", "Content-Type": "application/json"}

    def send(body, headers=hdr):
        data = body if isinstance(body, bytes) else json.dumps(body)
        return requests.post(gw.url("/send"), data=data, headers=headers)

    ok = {"to": "rose_1", "text": "hi", "kind": "text",
          "attachments": [{"url": "cdn.example.com"}]}
    r = send(ok)
    assert r.status_code == 200 and json.loads(r.json()["body"]) == ok
    cases = [
        ({"to": "rose_1"}, 'property "text" is required'),
        ({"to": "Rose", "text": "hi"},
         'property "to" validation failed: failed to match pattern "^[a-z0-9_]{3,32}$" with "Rose"'),
        ({"to": "rose", "text": "x" * 21},
         'property "text" validation failed: string too long, expected at most 20, got 21'),
        ({"to": "rose", "text": "hi", "kind": "video"},
         'property "kind" validation failed: matches none of the enum values'),
        ({"to": "rose", "text": "hi", "attachments": [{"url": "-x-"}]},
         'property "attachments" validation failed: failed to validate item 1: property "url" '
         'validation failed: expected a valid hostname, got "-x-"'),
        ({"to": "rose", "text": "hi", "admin": True}, "additional properties forbidden, found admin"),
        ([1, 2], "wrong type: expected object, got array"),
    ]
    for body, why in cases:
        r = send(body)
        assert (r.status_code, r.text) == (400, why), body
        assert r.headers["Content-Type"].startswith("text/plain")
    r = send(b'{"to": "rose", "text": ')
    assert (r.status_code, r.text) == (400, "the body is not valid JSON")
    r = send(b"[" * 200 + b"]" * 200)
    assert (r.status_code, r.text) == (400, "the JSON body is nested too deeply")
    r = send(ok, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.text) == (400, 'property "x-app-version" is required')
    r = send(ok, headers=dict(hdr, **{"X-App-Version": "three"}))
    assert r.status_code == 400 and r.text.startswith('property "x-app-version" validation failed')
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        body = b'{"to": "rose", "text": "hi"}'
        s.sendall(b"POST /send HTTP/1.1\r\nHost: a\r\nX-App-Version: 1.0\r\n"
                  b"Content-Type: application/json\r\nContent-Type: application/x-www-form-"
                  b"urlencoded\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
    assert out.startswith(b"HTTP/1.1 400") and out.endswith(b"more than one Content-Type")
    r = requests.post(gw.url("/send"), headers=hdr)
    assert (r.status_code, r.text) == (400, "the request has no body to validate")
    assert len(up.requests) == 1  # only the valid one went upstream

    r = requests.post(gw.url("/form"), data={"user": "rose", "tag": ["a", "b"]})
    assert r.status_code == 200
    r = requests.post(gw.url("/form"), data={"user": "ro"})
    assert (r.status_code, r.text) == (422, "bad form")
    r = requests.post(gw.url("/form"), data={"user": "rose", "tag": "a"})
    assert r.status_code == 422  # one value is a string, not a list


def test_long_and_chunked_bodies(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/send", [(up.port,)], id="send", plugins={
        "request-validation": {"body_schema": {"type": "object"}, "max_body": 1024}})]})
    r = requests.post(gw.url("/send"), data=json.dumps({"t": "x" * 1100}))
    assert r.status_code == 413 and "max_body 1024" in r.json()["error_msg"]
    r = requests.post(gw.url("/send"), data=iter([b'{"t":', b' 1}']))
    assert r.status_code == 411  # a validator must see the whole body
    assert requests.post(gw.url("/send"), data=b'{"t": 1}').status_code == 200


def test_request_validation_schema_errors(tmp_path):
    assert_plugin_errors(tmp_path, "request-validation", [
        ({}, "request-validation"),
        ({"body_schema": {"type": "text"}}, "request-validation.body_schema.type"),
        ({"body_schema": {"properties": {"a": {"pattern": "(x"}}}},
         "request-validation.body_schema.properties.a.pattern"),
        ({"header_schema": {"if": {}}}, "request-validation.header_schema.if"),
        ({"body_schema": {"$ref": "#/definitions/x"}}, "request-validation.body_schema.$ref"),
        ({"body_schema": {}, "rejected_code": 600}, "request-validation.rejected_code"),
        ({"body_schema": {}, "rejected_msg": ""}, "request-validation.rejected_msg"),
        ({"body_schema": {}, "max_body": 0}, "request-validation.max_body")])
