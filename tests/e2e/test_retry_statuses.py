"""retry_on_statuses (Portico extension): chosen answers are retried on the next node, only for
requests that may be sent again, and only when there is a next node."""
import collections
import json

import requests

from conftest import route


def test_chosen_statuses_are_retried_on_the_next_node(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    a.fail_status = 503
    gw = gateway({"routes": [route("/*", [(a.port,), (b.port,)], id="all",
                                   upstream={"retry_on_statuses": [502, 503]})]})
    s = requests.Session()
    got = collections.Counter((r.status_code, r.headers.get("X-Upstream"))
                              for r in (s.get(gw.url("/x")) for _ in range(10)))
    assert got == {(200, "b"): 10}, got
    # POST is not idempotent: never retried after it was sent, so a's 503 reaches the client.
    posts = collections.Counter(s.post(gw.url("/x"), data=b"hi").status_code for _ in range(10))
    assert posts[503] >= 3 and posts[200] >= 3, posts
    # Every attempt is in the access log line: the retried node with its status, then the next.
    gw.stop()
    lines = [json.loads(line) for line in gw.access_path.read_text().splitlines()]
    retried = [line for line in lines if line["method"] == "GET" and line["attempts"] == 2]
    assert retried and all(line["upstream"] == f"127.0.0.1:{a.port} (503), 127.0.0.1:{b.port}"
                           for line in retried), retried[:2]


def test_without_a_next_node_the_answer_is_passed_on(gateway, upstream):
    a = upstream(name="a")
    a.fail_status = 502
    gw = gateway({"routes": [route("/*", [(a.port,)], id="one",
                                   upstream={"retry_on_statuses": [502], "retries": 3})]})
    r = requests.get(gw.url("/x"))
    assert r.status_code == 502 and r.text == "failing\n"  # the node's own answer


def test_other_statuses_are_not_retried(gateway, upstream):
    a, b = upstream(name="a"), upstream(name="b")
    a.fail_status = 500
    gw = gateway({"routes": [route("/*", [(a.port,), (b.port,)], id="all",
                                   upstream={"retry_on_statuses": [503]})]})
    codes = collections.Counter(requests.get(gw.url("/x")).status_code for _ in range(10))
    assert codes[500] >= 3, codes
