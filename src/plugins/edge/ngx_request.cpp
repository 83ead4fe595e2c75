// The request and response parts of the ngx API: ngx.req.*, ngx.var, ngx.header and ngx.arg,
// over the plugin Context. Reads see earlier edits (a header set by one function is what the
// next one reads); writes become the Context's edits, which the proxy applies.
#include <utility>
#include <vector>

#include "http/http_parser.hpp"
#include "plugins/context_vars.hpp"
#include "plugins/edge/ngx_internal.hpp"
#include "plugins/header_config.hpp"

namespace portico::plugins::edge::api {
namespace {

using HeaderList = std::vector<std::pair<std::string, std::string>>;  // lower-case name, value

// OpenResty's method constants (ngx.HTTP_GET ...), for ngx.req.set_method.
const std::pair<int, const char*> kMethods[] = {
    {2, "GET"},          {4, "HEAD"},    {8, "POST"},      {16, "PUT"},      {32, "DELETE"},
    {64, "MKCOL"},       {128, "COPY"},  {256, "MOVE"},    {512, "OPTIONS"}, {1024, "PROPFIND"},
    {2048, "PROPPATCH"}, {4096, "LOCK"}, {8192, "UNLOCK"}, {16384, "PATCH"}, {32768, "TRACE"}};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

void apply_edits(HeaderList& list, const std::vector<HeaderEdit>& edits) {
  for (const HeaderEdit& e : edits) {
    std::string key = lower(e.name);
    if (e.op != HeaderEdit::Op::Add)
      std::erase_if(list, [&](const auto& h) { return h.first == key; });
    if (e.op != HeaderEdit::Op::Remove) list.emplace_back(std::move(key), e.value);
  }
}

// The request headers as the upstream will get them (Host included).
HeaderList request_headers(const Context& ctx) {
  HeaderList list;
  for (const auto& h : ctx.req->headers) list.emplace_back(lower(h.name), std::string(h.value));
  apply_edits(list, ctx.upstream.headers);
  if (ctx.upstream.host) {
    std::erase_if(list, [](const auto& h) { return h.first == "host"; });
    list.emplace_back("host", *ctx.upstream.host);
  }
  return list;
}

// The response headers as the client will get them, as far as they are known in this phase.
HeaderList response_headers(const PhaseCall& call) {
  const Context& ctx = call.ctx;
  HeaderList list;
  if (ctx.response) {
    for (const auto& h : ctx.response->headers)
      if (!http::is_hop_by_hop(h.name, ctx.response->connection))
        list.emplace_back(lower(h.name), std::string(h.value));
  } else if (call.phase >= Phase::HeaderFilter && !ctx.reply.content_type.empty()) {
    list.emplace_back("content-type", ctx.reply.content_type);
  }
  apply_edits(list, ctx.response_headers);
  return list;
}

// Pushes the values of `key`: nil, a string, or a list when repeated.
void push_values(lua_State* L, const HeaderList& list, const std::string& key) {
  int n = 0;
  for (const auto& [name, value] : list) {
    if (name != key) continue;
    if (n == 0) {
      push(L, value);
    } else {
      if (n == 1) {  // the single string becomes a list
        lua_createtable(L, 2, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
      }
      push(L, value);
      lua_rawseti(L, -2, n + 1);
    }
    ++n;
  }
  if (n == 0) lua_pushnil(L);
}

std::string_view current_target(const Context& ctx) {
  return ctx.upstream.target ? std::string_view(*ctx.upstream.target) : ctx.req->target;
}

std::pair<std::string_view, std::string_view> split_target(std::string_view target) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return {target, {}};
  return {target.substr(0, q), target.substr(q + 1)};
}

// Applies a header write: nil removes, a list sets several values. `edits` gets the result.
// The write replaces the earlier edits of the name (applied in order, they would be ignored), so
// a loop that sets one header keeps one edit; all of them together hold at most kMaxCopy bytes.
void write_header(lua_State* L, int value_index, std::string name, std::vector<HeaderEdit>& edits,
                  const char* what) {
  if (!valid_header_name(name)) throw ApiError(std::string(what) + ": invalid header name");
  auto same_name = [&](const HeaderEdit& e) { return http::iequals(e.name, name); };
  if (lua_isnoneornil(L, value_index)) {
    std::erase_if(edits, same_name);
    edits.push_back({HeaderEdit::Op::Remove, std::move(name), ""});
    return;
  }
  size_t bytes = 0;
  for (const HeaderEdit& e : edits)
    if (!same_name(e)) bytes += e.name.size() + e.value.size();
  std::vector<std::string> values;
  auto take = [&](int index) {
    std::string_view v = need_string(L, index, what);
    bytes += name.size() + v.size();
    check_size(bytes, kMaxCopy, what);
    values.emplace_back(v);
  };
  if (lua_istable(L, value_index)) {
    for (int i = 1;; ++i) {
      lua_rawgeti(L, value_index, i);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      take(-1);
      lua_pop(L, 1);
    }
  } else {
    take(value_index);
  }
  for (const auto& v : values)
    if (!valid_header_value(v))
      throw ApiError(std::string(what) + ": header values must not contain control characters");
  std::erase_if(edits, same_name);
  if (values.empty()) {
    edits.push_back({HeaderEdit::Op::Remove, std::move(name), ""});
    return;
  }
  for (size_t i = 0; i < values.size(); ++i)
    edits.push_back({i == 0 ? HeaderEdit::Op::Set : HeaderEdit::Op::Add, name, values[i]});
}

// ---------------------------------------------------------------------------- ngx.req

int req_get_method(lua_State* L) {
  const Context& ctx = need_call("ngx.req.get_method").ctx;
  push(L, ctx.upstream.method ? std::string_view(*ctx.upstream.method) : ctx.req->method);
  return 1;
}

int req_set_method(lua_State* L) {
  Context& ctx = need_request_phase("ngx.req.set_method").ctx;
  int wanted = static_cast<int>(lua_tointeger(L, 1));
  for (const auto& [code, name] : kMethods)
    if (code == wanted) {
      ctx.upstream.method = name;
      return 0;
    }
  throw ApiError("ngx.req.set_method: unknown method (use ngx.HTTP_GET, ngx.HTTP_POST, ...)");
}

int req_set_header(lua_State* L) {
  Context& ctx = need_request_phase("ngx.req.set_header").ctx;
  std::string name(need_string(L, 1, "ngx.req.set_header"));
  std::string key = header_key(name);
  if (is_framing_header(key))
    throw ApiError("ngx.req.set_header: " + name + " is the gateway's to set");
  if (key == "host") {
    if (lua_isnoneornil(L, 2)) throw ApiError("ngx.req.set_header: Host cannot be removed");
    std::string_view host = need_string(L, 2, "ngx.req.set_header");
    check_size(host.size(), kMaxHost, "ngx.req.set_header: Host");
    if (host.empty() || !valid_header_value(host))
      throw ApiError("ngx.req.set_header: invalid Host");
    ctx.upstream.host = std::string(host);
    return 0;
  }
  write_header(L, 2, std::move(name), ctx.upstream.headers, "ngx.req.set_header");
  return 0;
}

int req_clear_header(lua_State* L) {
  lua_settop(L, 1);
  lua_pushnil(L);
  return req_set_header(L);
}

int req_get_uri_args(lua_State* L) {
  const Context& ctx = need_call("ngx.req.get_uri_args").ctx;
  push_args_table(L, split_target(current_target(ctx)).second);
  return 1;
}

// What may go into the upstream request line as it is: printable ASCII without spaces (a tab or
// a byte >= 0x80 there is read differently by different servers), at most kMaxUri.
bool escaped_request_target(std::string_view s) {
  if (s.size() > kMaxUri) return false;
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

int req_set_uri_args(lua_State* L) {
  Context& ctx = need_request_phase("ngx.req.set_uri_args").ctx;
  std::string query;
  if (lua_type(L, 1) == LUA_TTABLE) {
    query = encode_args(L, 1);
  } else {
    query = std::string(need_string(L, 1, "ngx.req.set_uri_args"));
    if (!escaped_request_target(query))
      throw ApiError("ngx.req.set_uri_args: arguments must be escaped (ngx.encode_args)");
  }
  std::string target(split_target(current_target(ctx)).first);
  if (!query.empty()) {
    target += '?';
    target += query;
  }
  ctx.upstream.target = std::move(target);
  return 0;
}

int req_set_uri(lua_State* L) {
  PhaseCall& call = need_request_phase("ngx.req.set_uri");
  std::string_view uri = need_input(L, 1, "ngx.req.set_uri");
  if (lua_toboolean(L, 2)) throw ApiError("ngx.req.set_uri: jump is not supported by Portico");
  if (uri.empty() || uri.front() != '/')
    throw ApiError("ngx.req.set_uri: the uri must start with /");
  std::string target = escape_uri(uri, true);
  std::string_view query = split_target(current_target(call.ctx)).second;
  if (!query.empty()) {
    target += '?';
    target += query;
  }
  call.ctx.upstream.target = std::move(target);
  call.request.uri = std::string(uri);
  return 0;
}

int req_get_headers(lua_State* L) { return get_headers(L); }

int req_http_version(lua_State* L) {
  lua_pushnumber(L, need_call("ngx.req.http_version").ctx.req->minor_version == 0 ? 1.0 : 1.1);
  return 1;
}

int req_start_time(lua_State* L) {
  lua_pushnumber(L, static_cast<double>(need_call("ngx.req.start_time").ctx.now_ms) / 1000);
  return 1;
}

int req_nothing(lua_State*) { return 0; }  // read_body, discard_body: bodies are not offered

int req_no_body(lua_State* L) {
  lua_pushnil(L);
  return 1;
}

// ---------------------------------------------------------------------------- ngx.var

int var_index(lua_State* L) {
  PhaseCall& call = need_call("ngx.var");
  const Context& ctx = call.ctx;
  std::string_view name = need_string(L, 2, "ngx.var");
  if (name == "uri" && call.request.uri) {
    push(L, *call.request.uri);
    return 1;
  }
  if (name == "upstream_uri") {
    push(L, current_target(ctx));
    return 1;
  }
  if (name == "request_id") {
    ctx.request_id.empty() ? lua_pushnil(L) : push(L, ctx.request_id);
    return 1;
  }
  if (name.starts_with("http_") && (!ctx.upstream.headers.empty() || ctx.upstream.host)) {
    push_values(L, request_headers(ctx), header_key(name.substr(5)));
    if (lua_istable(L, -1)) lua_rawgeti(L, -1, 1);  // nginx gives the first of repeated ones
    return 1;
  }
  std::string error;
  auto ref = router::parse_var_name(name, error);
  // The value may point into `vars` (status and upstream_status are formatted there): it is
  // copied into Lua while `vars` is alive.
  const ContextVars vars(ctx);
  std::optional<std::string_view> value;
  if (ref) value = vars.get(*ref);
  value ? push(L, *value) : lua_pushnil(L);
  return 1;
}

int var_newindex(lua_State* L) {
  Context& ctx = need_request_phase("ngx.var").ctx;
  std::string_view name = need_string(L, 2, "ngx.var");
  if (name != "upstream_uri")
    throw ApiError("ngx.var." + std::string(name) + " cannot be set (only upstream_uri)");
  std::string_view target = need_string(L, 3, "ngx.var.upstream_uri");
  if (target.empty() || target.front() != '/' || !escaped_request_target(target))
    throw ApiError("ngx.var.upstream_uri: must start with / and be escaped");
  ctx.upstream.target = std::string(target);
  return 0;
}

// ---------------------------------------------------------------------------- ngx.header

int header_index(lua_State* L) {
  PhaseCall& call = need_call("ngx.header");
  push_values(L, response_headers(call), header_key(need_string(L, 2, "ngx.header")));
  return 1;
}

int header_newindex(lua_State* L) {
  PhaseCall& call = need_request_phase("ngx.header", /*also_header_filter=*/true);
  std::string name(need_string(L, 2, "ngx.header"));
  for (char& c : name)
    if (c == '_') c = '-';
  // Framing is the gateway's: `ngx.header.content_length = nil` (common before a body rewrite)
  // is accepted and changes nothing.
  if (is_framing_header(header_key(name))) return 0;
  write_header(L, 3, std::move(name), call.ctx.response_headers, "ngx.header");
  return 0;
}

// ---------------------------------------------------------------------------- ngx.arg

int arg_index(lua_State* L) {
  PhaseCall* call = current_call();
  lua_Integer i = lua_tointeger(L, 2);
  if (!call || call->phase != Phase::BodyFilter || !call->body || (i != 1 && i != 2)) {
    lua_pushnil(L);
  } else if (i == 1) {
    push(L, *call->body);
  } else {
    lua_pushboolean(L, 1);  // the whole body at once: this is also the last piece
  }
  return 1;
}

int arg_newindex(lua_State* L) {
  PhaseCall* call = current_call();
  if (!call || call->phase != Phase::BodyFilter || !call->body)
    throw ApiError("ngx.arg: only in the body_filter phase");
  if (lua_tointeger(L, 2) != 1) return 0;  // ngx.arg[2] (eof) cannot be changed
  if (lua_isnil(L, 3))
    call->body->clear();
  else
    call->body->assign(need_string(L, 3, "ngx.arg[1]"));
  return 0;
}

// A table whose reads and writes go to C functions; its metatable is hidden from the functions.
void add_proxy(lua_State* L, const char* field, lua_CFunction index, lua_CFunction newindex) {
  lua_newtable(L);
  push_locked_metatable(L, index, newindex);
  if (std::string_view(field) == "var") {  // the `ctx` argument's var is a proxy like it
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "portico.var_mt");
  }
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, field);
}

int headers_lookup(lua_State* L) {  // get_headers()["X-Foo"] finds "x-foo"
  std::string key = header_key(need_string(L, 2, "headers"));
  lua_pushlstring(L, key.data(), key.size());
  lua_rawget(L, 1);
  return 1;
}

}  // namespace

void push_locked_metatable(lua_State* L, lua_CFunction index, lua_CFunction newindex) {
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, index);
  lua_setfield(L, -2, "__index");
  if (newindex) {
    lua_pushcfunction(L, newindex);
    lua_setfield(L, -2, "__newindex");
  }
  lua_pushboolean(L, 0);  // getmetatable() gives false; setmetatable() refuses
  lua_setfield(L, -2, "__metatable");
}

int get_headers(lua_State* L) {
  const Context& ctx = need_call("ngx.req.get_headers").ctx;
  HeaderList list = request_headers(ctx);
  lua_createtable(L, 0, static_cast<int>(list.size()));
  for (const auto& [name, value] : list) {
    push(L, value);
    add_value(L, name);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "portico.headers_mt");
  lua_setmetatable(L, -2);
  return 1;
}

void add_request_api(lua_State* L) {
  const luaL_Reg req[] = {{"get_method", guarded<req_get_method>},
                          {"set_method", guarded<req_set_method>},
                          {"get_headers", guarded<req_get_headers>},
                          {"set_header", guarded<req_set_header>},
                          {"clear_header", guarded<req_clear_header>},
                          {"get_uri_args", guarded<req_get_uri_args>},
                          {"set_uri_args", guarded<req_set_uri_args>},
                          {"set_uri", guarded<req_set_uri>},
                          {"http_version", guarded<req_http_version>},
                          {"start_time", guarded<req_start_time>},
                          {"read_body", req_nothing},
                          {"discard_body", req_nothing},
                          {"get_body_data", req_no_body},
                          {"get_body_file", req_no_body},
                          {nullptr, nullptr}};
  lua_newtable(L);
  luaL_register(L, nullptr, req);
  lua_setfield(L, -2, "req");
  add_proxy(L, "var", guarded<var_index>, guarded<var_newindex>);
  add_proxy(L, "header", guarded<header_index>, guarded<header_newindex>);
  add_proxy(L, "arg", guarded<arg_index>, guarded<arg_newindex>);
  push_locked_metatable(L, guarded<headers_lookup>, nullptr);
  lua_setfield(L, LUA_REGISTRYINDEX, "portico.headers_mt");
}

}  // namespace portico::plugins::edge::api
