"""Host names in upstream nodes are resolved again every node.dns_refresh: a name that moves
takes its traffic with it, a name with several addresses is a node per address, and a name that
stops resolving keeps its last addresses. The gateway runs in a mount namespace of its own where
/etc/hosts is a file of the test's (the system's resolver, getaddrinfo, reads it on every
lookup); tests are skipped where namespaces are not allowed."""
import subprocess
import time

import pytest
import requests

from conftest import route, wait_until

NAME = "svc.portico.test"


@pytest.fixture
def hosts_file(tmp_path):
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("mount namespaces (unshare --mount) are not allowed here")
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 localhost\n")
    return path


def resolve_to(hosts_file, *addresses):
    # rewritten in place (the bind mount follows the inode, not the name)
    hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"{a} {NAME}\n" for a in addresses))


def start_with_hosts(gateway, hosts_file, routes, etcd=None, **node):
    gw = gateway(routes, node=dict({"dns_refresh": 0.3}, **node), start=False, etcd=etcd)
    # hosts come from the file alone: a name it lacks fails at once, whatever DNS is around
    nsswitch = hosts_file.with_name("nsswitch.conf")
    nsswitch.write_text("hosts: files\n")
    gw.wrapper = ["unshare", "--mount", "sh", "-c",
                  'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/nsswitch.conf && '
                  'shift && exec "$@"', str(hosts_file), str(nsswitch)]
    return gw.start()


def served_by(gw):
    r = requests.get(gw.url("/x"), timeout=5)
    return r.json()["upstream"] if r.status_code == 200 else r.status_code


def test_a_name_that_moves_takes_its_traffic_along(gateway, upstream, hosts_file):
    a = upstream(name="a", host="127.0.0.2")
    b = upstream(name="b", host="127.0.0.3", port=a.port)
    resolve_to(hosts_file, "127.0.0.2")
    gw = start_with_hosts(gateway, hosts_file,
                          {"routes": [{"id": "r", "uri": "/*", "upstream": {
                              "nodes": {f"{NAME}:{a.port}": 1}, "pass_host": "node"}}]})
    assert {served_by(gw) for _ in range(4)} == {"a"}
    assert a.requests[-1].header("Host") == f"{NAME}:{a.port}"  # the name, not the address

    resolve_to(hosts_file, "127.0.0.3")
    assert wait_until(lambda: served_by(gw) == "b", timeout=5)
    assert {served_by(gw) for _ in range(4)} == {"b"}
    assert gw.wait_log(f'"{NAME}" resolves to 127.0.0.3 (was 127.0.0.2)')

    # two addresses: two nodes, round robin over both
    resolve_to(hosts_file, "127.0.0.2", "127.0.0.3")
    assert wait_until(lambda: len({served_by(gw) for _ in range(4)}) == 2, timeout=5)

    # the name stops resolving: its nodes stay, with a warning
    resolve_to(hosts_file)
    assert gw.wait_log(f'cannot resolve "{NAME}"')
    assert {served_by(gw) for _ in range(4)} == {"a", "b"}


def test_other_upstreams_keep_their_balancer_state(gateway, upstream, hosts_file):
    # a roundrobin upstream by address, weights 1:1: a recompile would restart its rotation
    x, y = upstream(name="x"), upstream(name="y")
    a = upstream(name="a", host="127.0.0.2")
    b = upstream(name="b", host="127.0.0.3", port=a.port)
    resolve_to(hosts_file, "127.0.0.2")
    gw = start_with_hosts(gateway, hosts_file, {"routes": [
        route("/rr/*", [(x.port,), (y.port,)]),
        {"id": "named", "uri": "/x", "upstream": {"nodes": {f"{NAME}:{a.port}": 1}}}]})
    first = requests.get(gw.url("/rr/1")).json()["upstream"]
    resolve_to(hosts_file, "127.0.0.3")
    assert wait_until(lambda: served_by(gw) == "b", timeout=5)
    # the rotation goes on where it was: the next answer is the other node
    assert requests.get(gw.url("/rr/2")).json()["upstream"] != first


def test_dns_refresh_zero_resolves_only_once(gateway, upstream, hosts_file):
    a = upstream(name="a", host="127.0.0.2")
    upstream(name="b", host="127.0.0.3", port=a.port)
    resolve_to(hosts_file, "127.0.0.2")
    gw = start_with_hosts(gateway, hosts_file,
                          {"routes": [{"id": "r", "uri": "/*",
                                       "upstream": {"nodes": {f"{NAME}:{a.port}": 1}}}]},
                          dns_refresh=0)
    resolve_to(hosts_file, "127.0.0.3")
    time.sleep(1.5)
    assert {served_by(gw) for _ in range(4)} == {"a"}


def test_etcd_mode_follows_a_moving_name(gateway, upstream, hosts_file, etcd):
    a = upstream(name="a", host="127.0.0.2")
    b = upstream(name="b", host="127.0.0.3", port=a.port)
    resolve_to(hosts_file, "127.0.0.2")
    gw = start_with_hosts(gateway, hosts_file, None, etcd=etcd)
    assert gw.admin("PUT", "/upstreams/u", {
        "nodes": {f"{NAME}:{a.port}": 1}}).status_code in (200, 201)
    assert gw.admin("PUT", "/routes/r", {
        "uri": "/*", "upstream_id": "u"}).status_code in (200, 201)
    assert wait_until(lambda: served_by(gw) == "a", timeout=5)
    resolve_to(hosts_file, "127.0.0.3")
    assert wait_until(lambda: served_by(gw) == "b", timeout=5)
    assert {served_by(gw) for _ in range(4)} == {"b"}


def test_the_gateways_own_calls_resolve_names_without_blocking_a_worker(gateway, upstream,
                                                                         hosts_file):
    # forward-auth's service by name: looked up off the worker (whose event loop has no
    # resolver thread), then kept; a name that does not resolve fails that call only.
    from test_forward_auth import AuthService
    auth = AuthService()
    up = upstream()
    resolve_to(hosts_file, "127.0.0.1")
    gw = start_with_hosts(gateway, hosts_file, {"routes": [
        route("/named/*", [(up.port,)], id="named", plugins={"forward-auth": {
            "uri": f"http://{NAME}:{auth.port}/auth", "request_headers": ["Authorization"]}}),
        route("/nowhere/*", [(up.port,)], id="nowhere", plugins={"forward-auth": {
            "uri": f"http://nowhere.portico.test:{auth.port}/auth"}})]})
    s = requests.Session()
    for _ in range(3):
        assert s.get(gw.url("/named/x"), headers={"Authorization": "Bearer good"}).status_code == 200
    assert s.get(gw.url("/named/x"), headers={"Authorization": "Bearer bad"}).status_code == 401
    assert auth.calls[-1]["host"] == f"{NAME}:{auth.port}"
    assert s.get(gw.url("/nowhere/x")).status_code == 403
    gw.wait_log("forward-auth: http://nowhere.portico.test")
    auth.stop()


def test_limit_count_reaches_redis_by_name(gateway, upstream, hosts_file, tmp_path):
    from redis_server import RedisServer
    d = tmp_path / "redis"
    d.mkdir()
    redis = RedisServer(d).start()
    try:
        up = upstream()
        resolve_to(hosts_file, "127.0.0.1")
        plugins = {"limit-count": {"count": 2, "time_window": 60, "rejected_code": 429,
                                   "policy": "redis", "redis_host": NAME,
                                   "redis_port": redis.port}}
        gw = start_with_hosts(gateway, hosts_file,
                              {"routes": [route("/c", [(up.port,)], id="c", plugins=plugins)]})
        codes = [requests.get(gw.url("/c"), timeout=5).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert redis.keys("portico:limit-count:*")
    finally:
        redis.stop()
