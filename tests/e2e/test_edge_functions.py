"""Edge functions through the binary: serverless-pre-function and serverless-post-function
(APISIX's Lua snippets) against a real upstream; the sandbox's limits as a client sees them;
config errors refused by `portico validate`, by a hot reload and by the Admin API on etcd."""
import socket
import threading
import time

import requests
import yaml

import prom_text
from conftest import inline_upstream, route, validate, wait_until


def pre(*functions, phase=None, **extra):
    conf = {"functions": list(functions), **extra}
    if phase:
        conf["phase"] = phase
    return {"serverless-pre-function": conf}


def post(*functions, phase="header_filter", **extra):
    return {"serverless-post-function": {"phase": phase, "functions": list(functions), **extra}}


def headers_seen(r):
    return {k.lower(): v for k, v in r.json()["headers"]}


def edge_errors(gw, **labels):
    m = prom_text.parse(gw.control("/metrics").text)
    return m.value("portico_edge_function_errors_total", **labels) or 0


TOKEN_CHECK = """
return function(conf, ctx)
  if ngx.var.http_x_api_token ~= "letmein" then
    return 403, {message = "missing or wrong token"}
  end
end"""


def test_pre_function_rejects_by_header(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/api/*", [(up.port,)], id="api", plugins=pre(TOKEN_CHECK))]})
    r = gw.get("/api/x")
    assert r.status_code == 403
    assert r.json() == {"message": "missing or wrong token"}
    assert r.headers["Content-Type"] == "application/json"
    assert gw.get("/api/x", headers={"X-Api-Token": "nope"}).status_code == 403
    r = gw.get("/api/x", headers={"X-Api-Token": "letmein"})
    assert r.status_code == 200 and r.json()["target"] == "/api/x"  # the upstream answered


def test_pre_function_edits_the_request_the_upstream_gets(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/edit", [(up.port,)], id="edit", plugins=pre("""
return function(conf, ctx)
  ngx.req.set_header("X-Edge-Client", ngx.var.remote_addr)
  ngx.req.set_header("X-Edge-Method", ngx.req.get_method())
  ngx.req.clear_header("X-Secret")
  ngx.req.set_header("Host", "backend.internal")
end""", phase="rewrite"))]})
    h = headers_seen(gw.get("/edit", headers={"X-Secret": "s3cr3t"}))
    assert h["x-edge-client"] == "127.0.0.1"
    assert h["x-edge-method"] == "GET"
    assert h["host"] == "backend.internal"
    assert "x-secret" not in h


def test_set_uri_and_uri_args_rewrite_what_goes_upstream(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/old/*", [(up.port,)], id="mv", plugins=pre("""
return function()
  local args = ngx.req.get_uri_args()
  ngx.req.set_uri("/v2" .. string.sub(ngx.var.uri, 5))
  args.added = "a b"
  ngx.req.set_uri_args(args)
  ngx.req.set_header("X-Uri-Now", ngx.var.uri)
end""", phase="rewrite"))]})
    r = gw.get("/old/items/7?id=3")
    target = r.json()["target"]
    path, _, query = target.partition("?")
    assert path == "/v2/items/7"
    assert sorted(query.split("&")) == ["added=a%20b", "id=3"]
    assert headers_seen(r)["x-uri-now"] == "/v2/items/7"  # ngx.var.uri follows set_uri


def test_post_function_edits_the_response(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/hdr", [(up.port,)], id="hdr", plugins=post("""
return function()
  ngx.header["X-Edge"] = "post"
  ngx.header["X-Upstream"] = nil
  if ngx.status == 200 then ngx.status = 203 end
end""")),
        route("/big/*", [(up.port,)], id="body", plugins=post(
            "return function() ngx.arg[1] = '[' .. #ngx.arg[1] .. ']' end", phase="body_filter")),
    ]})
    r = gw.get("/hdr")
    assert r.status_code == 203
    assert r.headers["X-Edge"] == "post" and "X-Upstream" not in r.headers
    assert r.json()["target"] == "/hdr"  # the body is the upstream's
    r = gw.get("/big/5000")
    assert r.status_code == 200 and r.text == "[5000]"
    assert r.headers["Content-Length"] == "6"


def test_ngx_ctx_is_shared_by_pre_and_post_functions_of_one_request(gateway, upstream):
    up = upstream()
    plugins = {**pre("return function() ngx.ctx.who = ngx.var.arg_who end"),
               **post("return function() ngx.header['X-Who'] = ngx.ctx.who end")}
    gw = gateway({"routes": [route("/ctx", [(up.port,)], id="ctx", plugins=plugins)]})
    with requests.Session() as s:  # one connection, so one Context reused between requests
        assert s.get(gw.url("/ctx?who=ann")).headers["X-Who"] == "ann"
        assert s.get(gw.url("/ctx?who=bob")).headers["X-Who"] == "bob"
        assert "X-Who" not in s.get(gw.url("/ctx")).headers  # nothing left from the last request


def test_before_proxy_runs_after_access_and_may_answer(gateway, upstream):
    up = upstream()
    plugins = {**pre("return function() ngx.ctx.order = 'access' end"),
               **post("""
return function()
  if ngx.var.arg_block then return ngx.exit(451) end
  ngx.req.set_header("X-Order", ngx.ctx.order .. ",before_proxy")
end""", phase="before_proxy")}
    gw = gateway({"routes": [route("/bp", [(up.port,)], id="bp", plugins=plugins)]})
    assert headers_seen(gw.get("/bp"))["x-order"] == "access,before_proxy"
    r = gw.get("/bp?block=1")
    assert r.status_code == 451 and "451" in r.text


def read_response(f, head=False):
    """One response from a buffered socket file, as a client that keeps the connection:
    (status, headers, body); the body is read by Content-Length unless the answer has none."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line  # out of step: a stray body
    status = int(status_line.split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    bodiless = head or status < 200 or status in (204, 304)
    body = b"" if bodiless else f.read(int(headers.get("content-length", 0)))
    return status, headers, body


def test_local_answers_to_head_and_bodiless_statuses_keep_the_connection_in_step(gateway,
                                                                                  upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/say", [(up.port,)], id="say", plugins=pre("return function() ngx.say('hello') end")),
        route("/nocontent", [(up.port,)], id="nc", plugins=pre(
            "return function() ngx.status = 204 ngx.say('not sent') ngx.exit(204) end")),
        route("/notmodified", [(up.port,)], id="nm", plugins=pre(
            "return function() return 304, 'not sent' end")),
    ]})
    sent = [("HEAD", "/say"), ("GET", "/nocontent"), ("GET", "/notmodified"),
                 ("HEAD", "/no-such-route"), ("GET", "/say")]
    pipelined = b"".join(f"{m} {p} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for m, p in sent)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(pipelined)  # one keep-alive connection, all at once
        f = s.makefile("rb")
        answers = [read_response(f, head=m == "HEAD") for m, _ in sent]
    (head_say, nocontent, notmodified, head_404, say) = answers
    assert head_say[0] == 200 and head_say[1]["content-length"] == "6"  # what GET would send
    assert nocontent[0] == 204 and "content-length" not in nocontent[1]
    assert notmodified[0] == 304 and "content-length" not in notmodified[1]
    assert head_404[0] == 404 and int(head_404[1]["content-length"]) > 0
    assert say == (200, say[1], b"hello\n")  # the last answer parsed where it should start
    assert up.requests == []


def test_log_phase_writes_to_the_error_log(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/log", [(up.port,)], id="logged", plugins=post(
        "return function() ngx.log(ngx.WARN, 'served ', ngx.var.uri, ' with ', ngx.status) end",
        phase="log"))]})
    assert gw.get("/log").status_code == 200
    line = gw.wait_log_line("edge function (route logged): served /log with 200")
    assert "[warn]" in line


def test_syntax_error_is_refused_with_the_field_path(tmp_path, gateway, upstream):
    bad = "return function(conf, ctx)\n  local a = 1\n  x y\nend"
    doc = {"routes": [route("/a", [(1,)], id="a", plugins=pre("return function() end", bad))]}
    code, out = validate(tmp_path, doc)
    assert code == 1, out
    assert ("routes[0].plugins.serverless-pre-function.functions[1]: "
            "[string \"return function(conf, ctx)...\"]:3:") in out, out
    assert "'=' expected near 'y'" in out, out
    code, out = validate(tmp_path, {"routes": [route("/a", [(1,)], id="a",
                                                     plugins=pre("return 1"))]})
    assert code == 1 and "only accept Lua function, the input code type is number" in out, out
    code, out = validate(tmp_path, {"routes": [route("/a", [(1,)], id="a",
                                                     plugins=pre("return function() end"))]})
    assert code == 0, out

    # A running gateway keeps its config when the file gains the error.
    up = upstream()
    gw = gateway({"routes": [route("/a", [(up.port,)], id="a", plugins=pre(
        "return function() return 200, 'first' end"))]})
    assert gw.get("/a").text == "first"
    gw.write_routes({"routes": [route("/a", [(up.port,)], id="a", plugins=pre(
        "return function() return 200, 'second' end", bad))]})
    gw.wait_log("routes[0].plugins.serverless-pre-function.functions[1]")
    assert "rejected" in gw.error_log()
    assert gw.get("/a").text == "first"


def test_unknown_fields_and_phases_are_config_errors(tmp_path):
    code, out = validate(tmp_path, {"routes": [route("/a", [(1,)], id="a", plugins={
        "serverless-post-function": {"phase": "content", "functions": ["return function() end"],
                                     "timeout": 3}})]})
    assert code == 1
    assert "routes[0].plugins.serverless-post-function.phase: must be one of" in out, out
    assert "routes[0].plugins.serverless-post-function.timeout: unknown field" in out, out
    code, out = validate(tmp_path, {"routes": [route("/a", [(1,)], id="a", plugins={
        "serverless-pre-function": {"functions": []}})]})
    assert code == 1 and "serverless-pre-function.functions: is required" in out, out


def test_infinite_loop_answers_500_quickly_and_the_worker_keeps_serving(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/loop", [(up.port,)], id="loop", plugins=pre("return function() while true do end end")),
        route("/ok", [(up.port,)], id="ok", plugins=pre("return function() ngx.ctx.x = 1 end")),
    ]}, workers=1)
    results, errors = [], []

    def looper():
        try:
            for _ in range(5):
                t = time.monotonic()
                r = gw.get("/loop")
                results.append((r.status_code, time.monotonic() - t, r.text))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    t = threading.Thread(target=looper)
    t.start()
    oks = [gw.get("/ok").status_code for _ in range(20)]  # same single worker, meanwhile
    t.join(30)
    assert not errors, errors
    assert oks == [200] * 20
    assert len(results) == 5
    for status, took, text in results:
        assert status == 500, text
        assert took < 1.0, took  # 10 ms of Lua, not a hung worker
        assert "edge function failed" in text
        assert "while" not in text  # no source or Lua error to the client
    line = gw.wait_log_line("edge function failed: route loop", "timeout")
    assert "serverless-pre-function (access) functions[0]" in line
    assert edge_errors(gw, route="loop", reason="timeout") == 5
    assert gw.get("/ok").status_code == 200


def test_memory_bomb_answers_500_and_the_next_request_works(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/bomb", [(up.port,)], id="bomb", plugins=pre("""
return function()
  local t = {}
  while true do t[#t + 1] = string.rep("x", 1024) .. #t end
end""", time_limit="2s")),
        route("/fine", [(up.port,)], id="fine", plugins=pre("return function() return 200, 'fine' end")),
    ]}, start=False)
    cfg = gw.config()
    cfg["edge_functions"] = {"memory_limit": "8m", "max_time_limit": "2s"}
    gw.config_path.write_text(yaml.safe_dump(cfg))
    gw.start()
    t = time.monotonic()
    r = gw.get("/bomb")
    assert r.status_code == 500 and time.monotonic() - t < 2
    gw.wait_log_line("edge function failed: route bomb", "memory: not enough memory")
    assert gw.get("/fine").text == "fine"
    assert gw.get("/bomb").status_code == 500  # and again: the state was collected, not leaked
    assert gw.get("/fine").text == "fine"
    assert edge_errors(gw, route="bomb", reason="memory") == 2


def test_a_route_over_half_the_memory_starts_over_alone(gateway, upstream):
    # One worker, one Lua state of 8 MiB shared by both routes. /hog keeps 128 KiB more per
    # request in an upvalue; past half the state it fails and its functions start over, while
    # /count's upvalue (a call counter) lives on: one route cannot take the others' memory.
    up = upstream()
    gw = gateway({"routes": [
        route("/hog", [(up.port,)], id="hog", plugins=pre("""
local keep = {}
return function()
  keep[#keep + 1] = string.rep("h", 128 * 1024 - 32) .. #keep
  return 200, tostring(#keep)
end""")),
        route("/count", [(up.port,)], id="count", plugins=pre(
            "local n = 0 return function() n = n + 1 return 200, tostring(n) end")),
    ]}, start=False)
    cfg = gw.config()
    cfg["edge_functions"] = {"memory_limit": "8m"}
    gw.config_path.write_text(yaml.safe_dump(cfg))
    gw.start()
    assert gw.get("/count").text == "1"
    held = []
    for _ in range(80):
        r = gw.get("/hog")
        if r.status_code != 200:
            break
        held.append(int(r.text))
    assert r.status_code == 500 and r.json() == {"error_msg": "edge function failed"}
    assert held == list(range(1, len(held) + 1)) and len(held) >= 24  # 3 MiB were fine
    gw.wait_log_line("edge function failed: route hog", "more than half of the worker's")
    line = gw.wait_log_line("dropped the compiled functions of routes[0].plugins."
                            "serverless-pre-function")
    assert "they start over at their next use" in line
    assert gw.get("/count").text == "2"  # its upvalue survived
    assert gw.get("/hog").text == "1"  # the hog starts over
    assert edge_errors(gw, route="hog", reason="memory") == 1


def test_loops_inside_the_api_are_held_to_the_time_limit(gateway, upstream):
    # The instruction hook does not run inside C: printing or encoding a list that holds one
    # sublist many times is billions of steps there, and must stop at the limit all the same.
    up = upstream()
    say = """
return function()
  local t = {}
  for d = 1, 16 do local n = {} for i = 1, 100 do n[i] = t end t = n end
  ngx.say(t)
end"""
    encode = """
return function()
  local l, t = {}, {}
  for i = 1, 100000 do l[i] = false end
  for k = 1, 10000 do t["k" .. k] = l end
  return 200, ngx.encode_args(t)
end"""
    exited = "return function() pcall(ngx.exit, 200) while true do end end"
    gw = gateway({"routes": [
        route("/say", [(up.port,)], id="say", plugins=pre(say)),
        route("/encode", [(up.port,)], id="encode", plugins=pre(encode, time_limit="300ms")),
        route("/exited", [(up.port,)], id="exited", plugins=pre(exited)),
    ]}, workers=1)
    for path, rid in (("/say", "say"), ("/encode", "encode"), ("/exited", "exited")):
        t = time.monotonic()
        r = gw.get(path)
        assert r.status_code == 500 and time.monotonic() - t < 3, (path, r.text)
        assert edge_errors(gw, route=rid, reason="timeout") == 1, path


def test_answers_redirects_and_hosts_past_their_size_are_errors(gateway, upstream):
    up = upstream()
    big_body = "return function() return 200, string.rep('x', 2 * 1024 * 1024) end"
    big_redirect = "return function() ngx.redirect('/' .. string.rep('a', 10000)) end"
    big_host = "return function() ngx.req.set_header('Host', string.rep('h', 5000)) end"
    gw = gateway({"routes": [
        route("/body", [(up.port,)], id="body", plugins=pre(big_body)),
        route("/redirect", [(up.port,)], id="redirect", plugins=pre(big_redirect)),
        route("/host", [(up.port,)], id="host", plugins=pre(big_host)),
    ]})
    for rid in ("body", "redirect", "host"):
        assert gw.get("/" + rid, allow_redirects=False).status_code == 500, rid
        gw.wait_log_line(f"edge function failed: route {rid}", "too large")


def test_the_upstream_request_line_takes_only_escaped_text(gateway, upstream):
    # A tab or a byte >= 0x80 in the request line is read differently by different servers.
    up = upstream()
    set_uri = "return function() ngx.var.upstream_uri = ngx.var.arg_to end"
    set_args = "return function() ngx.req.set_uri_args(ngx.var.arg_q) end"
    gw = gateway({"routes": [
        route("/uri", [(up.port,)], id="uri", plugins=pre(set_uri)),
        route("/args", [(up.port,)], id="args", plugins=pre(set_args)),
    ]})
    assert gw.get("/uri", params={"to": "/ok?a=1"}).json()["target"] == "/ok?a=1"
    assert gw.get("/args", params={"q": "a=1"}).json()["target"] == "/args?a=1"
    for bad in ("/a\tb", "/caf\u00e9", "/a b"):
        assert gw.get("/uri", params={"to": bad}).status_code == 500, bad
        assert gw.get("/args", params={"q": "x=" + bad}).status_code == 500, bad
    line = gw.wait_log_line("edge function failed: route uri", "must start with / and be escaped")
    assert "functions[0]" in line


def test_a_function_cannot_ask_for_more_time_than_the_node_allows(tmp_path):
    code, out = validate(tmp_path, {"routes": [route("/a", [(1,)], id="a", plugins=pre(
        "return function() end", time_limit="5s"))]})
    assert code == 1
    assert ("routes[0].plugins.serverless-pre-function.time_limit: is at most 1s here "
            "(the node's edge_functions.max_time_limit)") in out, out


def test_a_lua_error_is_logged_on_one_line(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/forge", [(up.port,)], id="forge", plugins=pre(
        'return function() error("boom\\n2026-01-01T00:00:00Z [error] forged line") end'))]})
    assert gw.get("/forge").status_code == 500
    line = gw.wait_log_line("edge function failed: route forge", "boom")
    assert "boom 2026-01-01T00:00:00Z [error] forged line" in line
    assert not any(l.startswith("2026-01-01T00:00:00Z") for l in gw.error_log().splitlines())


def test_runtime_error_is_a_500_with_one_log_line(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/err", [(up.port,)], id="err", plugins=pre(
        "return function() local t = nil return t.field end"))]})
    r = gw.get("/err", headers={"Authorization": "Bearer very-secret-token"})
    assert r.status_code == 500 and r.json() == {"error_msg": "edge function failed"}
    line = gw.wait_log_line("edge function failed: route err")
    # the chunk is named as loadstring names it (its first line, shortened)
    assert ("error: [string \"return function() local t = nil return t.fiel...\"]:1: "
            "attempt to index local 't' (a nil value)") in line, line
    assert "very-secret-token" not in gw.error_log()
    assert edge_errors(gw, route="err", reason="error") == 1


def test_os_execute_io_and_friends_are_not_available(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [
        route("/types", [(up.port,)], id="types", plugins=pre("""
return function()
  return 200, table.concat({type(os.execute), type(io), type(loadstring), type(require),
                            type(debug), type(ffi), type(package), type(os.time)}, ",")
end""")),
        route("/io", [(up.port,)], id="io", plugins=pre(
            "return function() return 200, io.open('/etc/passwd'):read('*a') end")),
        route("/exec", [(up.port,)], id="exec", plugins=pre(
            "return function() os.execute('touch /tmp/portico-edge-pwned') end")),
        route("/ffi", [(up.port,)], id="ffi", plugins=pre(
            "return function() return 200, type(require('ffi')) end")),
    ]})
    assert gw.get("/types").text == "nil,nil,nil,function,nil,nil,nil,function"
    r = gw.get("/io")
    assert r.status_code == 500 and "root:" not in r.text
    gw.wait_log_line("route io", "attempt to index global 'io' (a nil value)")
    assert gw.get("/exec").status_code == 500
    gw.wait_log_line("route exec", "attempt to call field 'execute' (a nil value)")
    assert gw.get("/ffi").status_code == 500
    gw.wait_log_line("route ffi", "module 'ffi' is not available")


def test_apisix_core_and_cjson_through_require(gateway, upstream):
    up = upstream()
    gw = gateway({"routes": [route("/core", [(up.port,)], id="core", plugins=pre("""
local core = require("apisix.core")
local cjson = require("cjson.safe")
return function(conf, ctx)
  local body = cjson.decode(ngx.var.arg_json or "")
  if not body then
    return core.response.exit(400, {error = "bad json", route = ctx.route_id})
  end
  core.request.set_header(ctx, "X-Sum", tostring(body.a + body.b))
  core.log.info("sum for ", ctx.var.remote_addr)
end"""))]})
    r = gw.get("/core?json=oops")
    assert r.status_code == 400 and r.json() == {"error": "bad json", "route": "core"}
    r = gw.get("/core", params={"json": '{"a": 2, "b": 3}'})
    assert r.status_code == 200 and headers_seen(r)["x-sum"] == "5"


def test_admin_api_on_etcd_validates_and_serves_edge_functions(etcd, gateway, upstream):
    up = upstream()
    egw = gateway(etcd=etcd)
    r = egw.admin("PUT", "/routes/r1", {"uri": "/hello", "upstream": inline_upstream(up.port),
                                        "plugins": pre("return function() return 200, 'v1' end")})
    assert r.status_code == 201, r.text
    assert wait_until(lambda: egw.get("/hello").text == "v1", 3)
    r = egw.admin("PUT", "/routes/r1", {"uri": "/hello", "upstream": inline_upstream(up.port),
                                        "plugins": pre("return function( end")})
    assert r.status_code == 400, r.text
    assert "plugins.serverless-pre-function.functions[0]" in r.json()["error_msg"], r.text
    time.sleep(0.3)
    assert egw.get("/hello").text == "v1"  # the refused write changed nothing
