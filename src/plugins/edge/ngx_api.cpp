// The ngx table (everything but the request parts, see ngx_request.cpp), print, and the
// modules `require` returns: "apisix.core" (a subset), "cjson" and "cjson.safe".
#include "plugins/edge/ngx_api.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/time.h>

#include <ctime>

#include "core/base64.hpp"
#include "core/hex.hpp"
#include "core/json_depth.hpp"
#include "core/log.hpp"
#include "http/responses.hpp"
#include "plugins/edge/lua_json.hpp"
#include "plugins/edge/ngx_internal.hpp"

namespace portico::plugins::edge {
namespace api {
namespace {

constexpr size_t kMaxOutput = 1 << 20;  // ngx.say / ngx.print: one answer's body
constexpr size_t kMaxLogLine = 2048;    // ngx.log: one line
constexpr int kMaxJsonDepth = 1000;     // json.decode
constexpr int kLevelErr = 4, kLevelWarn = 5, kLevelNotice = 6, kLevelDebug = 8;

// nginx's log levels and OpenResty's constants (ngx.OK ..., ngx.HTTP_*).
const std::pair<const char*, int> kConstants[] = {{"STDERR", 0},
                                                  {"EMERG", 1},
                                                  {"ALERT", 2},
                                                  {"CRIT", 3},
                                                  {"ERR", kLevelErr},
                                                  {"WARN", kLevelWarn},
                                                  {"NOTICE", kLevelNotice},
                                                  {"INFO", 7},
                                                  {"DEBUG", kLevelDebug},
                                                  {"OK", 0},
                                                  {"ERROR", -1},
                                                  {"AGAIN", -2},
                                                  {"DONE", -4},
                                                  {"DECLINED", -5},
                                                  {"HTTP_GET", 2},
                                                  {"HTTP_HEAD", 4},
                                                  {"HTTP_POST", 8},
                                                  {"HTTP_PUT", 16},
                                                  {"HTTP_DELETE", 32},
                                                  {"HTTP_MKCOL", 64},
                                                  {"HTTP_COPY", 128},
                                                  {"HTTP_MOVE", 256},
                                                  {"HTTP_OPTIONS", 512},
                                                  {"HTTP_PROPFIND", 1024},
                                                  {"HTTP_PROPPATCH", 2048},
                                                  {"HTTP_LOCK", 4096},
                                                  {"HTTP_UNLOCK", 8192},
                                                  {"HTTP_PATCH", 16384},
                                                  {"HTTP_TRACE", 32768},
                                                  {"HTTP_CONTINUE", 100},
                                                  {"HTTP_SWITCHING_PROTOCOLS", 101},
                                                  {"HTTP_OK", 200},
                                                  {"HTTP_CREATED", 201},
                                                  {"HTTP_ACCEPTED", 202},
                                                  {"HTTP_NO_CONTENT", 204},
                                                  {"HTTP_PARTIAL_CONTENT", 206},
                                                  {"HTTP_SPECIAL_RESPONSE", 300},
                                                  {"HTTP_MOVED_PERMANENTLY", 301},
                                                  {"HTTP_MOVED_TEMPORARILY", 302},
                                                  {"HTTP_SEE_OTHER", 303},
                                                  {"HTTP_NOT_MODIFIED", 304},
                                                  {"HTTP_TEMPORARY_REDIRECT", 307},
                                                  {"HTTP_PERMANENT_REDIRECT", 308},
                                                  {"HTTP_BAD_REQUEST", 400},
                                                  {"HTTP_UNAUTHORIZED", 401},
                                                  {"HTTP_PAYMENT_REQUIRED", 402},
                                                  {"HTTP_FORBIDDEN", 403},
                                                  {"HTTP_NOT_FOUND", 404},
                                                  {"HTTP_NOT_ALLOWED", 405},
                                                  {"HTTP_NOT_ACCEPTABLE", 406},
                                                  {"HTTP_REQUEST_TIMEOUT", 408},
                                                  {"HTTP_CONFLICT", 409},
                                                  {"HTTP_GONE", 410},
                                                  {"HTTP_UPGRADE_REQUIRED", 426},
                                                  {"HTTP_TOO_MANY_REQUESTS", 429},
                                                  {"HTTP_CLOSE", 444},
                                                  {"HTTP_ILLEGAL", 451},
                                                  {"HTTP_INTERNAL_SERVER_ERROR", 500},
                                                  {"HTTP_METHOD_NOT_IMPLEMENTED", 501},
                                                  {"HTTP_BAD_GATEWAY", 502},
                                                  {"HTTP_SERVICE_UNAVAILABLE", 503},
                                                  {"HTTP_GATEWAY_TIMEOUT", 504},
                                                  {"HTTP_VERSION_NOT_SUPPORTED", 505},
                                                  {"HTTP_INSUFFICIENT_STORAGE", 507}};

// apisix.core as far as it makes sense here; receives ngx, core.response.exit and the JSON
// functions. Its functions close over the template's ngx, so an environment that changes its
// own copy of ngx does not change what core does.
constexpr const char* kCoreModule = R"(
local ngx, response_exit, encode, decode = ...
local type, select, ipairs = type, select, ipairs
local core = {response = {}, log = {}, request = {}, json = {}}
core.response.exit = response_exit
function core.response.set_header(...)
  for i = 1, select('#', ...), 2 do
    local name, value = select(i, ...)
    ngx.header[name] = value
  end
end
for _, level in ipairs({"emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"}) do
  local constant = ngx[level == "error" and "ERR" or level:upper()]
  core.log[level] = function(...) return ngx.log(constant, ...) end
end
function core.request.header(ctx, name)
  if type(ctx) == "string" then name = ctx end
  return ngx.req.get_headers()[name]
end
function core.request.headers() return ngx.req.get_headers() end
function core.request.set_header(ctx, name, value)
  if type(ctx) == "string" then name, value = ctx, name end
  return ngx.req.set_header(name, value)
end
function core.request.get_method() return ngx.req.get_method() end
function core.request.get_uri_args() return ngx.req.get_uri_args() end
core.json.encode, core.json.decode, core.json.delay_encode = encode, decode, encode
return core
)";

// Appends the text of the value at `index` as ngx.say does (lists are flattened), stopping
// at `limit` bytes: a list that holds one long string or sublist many times must not be
// flattened into gigabytes first.
void append_text(lua_State* L, int index, std::string& out, size_t limit, int depth,
                 const char* what) {
  LuaSandbox::count_step(L);
  auto append = [&](std::string_view s) {
    if (out.size() + s.size() > limit)
      throw ApiError(std::string(what) + ": too large (the response body is limited to 1 MiB)");
    out += s;
  };
  switch (lua_type(L, index)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
      append(to_view(L, index));
      return;
    case LUA_TNIL:
      append("nil");
      return;
    case LUA_TBOOLEAN:
      append(lua_toboolean(L, index) ? "true" : "false");
      return;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, index) == nullptr) {
        append("null");
        return;
      }
      break;
    case LUA_TTABLE:
      if (depth > 16) break;
      for (int i = 1;; ++i) {
        lua_rawgeti(L, index, i);
        if (lua_isnil(L, -1)) {
          lua_pop(L, 1);
          return;
        }
        append_text(L, lua_gettop(L), out, limit, depth + 1, what);
        lua_pop(L, 1);
      }
    default:
      break;
  }
  throw ApiError(std::string(what) + ": cannot print a " + lua_typename(L, lua_type(L, index)));
}

int output(lua_State* L, const char* what, bool newline) {
  PhaseCall& call = need_request_phase(what);
  if (call.output.empty()) call.output_status = call.request.status.value_or(200);
  int n = lua_gettop(L);
  for (int i = 1; i <= n; ++i) append_text(L, i, call.output, kMaxOutput, 0, what);
  if (newline) call.output += '\n';
  lua_pushinteger(L, 1);
  return 1;
}

int ngx_say(lua_State* L) { return output(L, "ngx.say", true); }
int ngx_print(lua_State* L) { return output(L, "ngx.print", false); }

int ngx_exit(lua_State* L) {
  PhaseCall& call = need_call("ngx.exit");
  lua_Integer status = lua_tointeger(L, 1);
  if (status > 599) throw ApiError("ngx.exit: status must be at most 599");
  call.exited = true;
  call.exit_status = 0;
  if (call.may_answer()) {
    if (status >= 200) call.exit_status = static_cast<int>(status);
    if (status == -1) call.exit_status = 500;  // ngx.ERROR
  }
  end_function(L);
}

int ngx_redirect(lua_State* L) {
  PhaseCall& call = need_request_phase("ngx.redirect");
  std::string_view uri = need_string(L, 1, "ngx.redirect");
  check_size(uri.size(), kMaxUri, "ngx.redirect");
  lua_Integer status = lua_isnoneornil(L, 2) ? 302 : lua_tointeger(L, 2);
  if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
    throw ApiError("ngx.redirect: status must be 301, 302, 303, 307 or 308");
  for (char c : uri)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      throw ApiError("ngx.redirect: the uri must not contain control characters");
  call.ctx.response_headers.push_back({HeaderEdit::Op::Set, "Location", std::string(uri)});
  call.exited = true;
  call.exit_status = static_cast<int>(status);
  end_function(L);
}

int response_exit(lua_State* L) {
  PhaseCall& call = need_request_phase("core.response.exit");
  lua_Integer status = lua_tointeger(L, 1);
  if (status < 200 || status > 599) throw ApiError("core.response.exit: status must be 200..599");
  set_answer(L, call, static_cast<int>(status), lua_isnoneornil(L, 2) ? 0 : 2);
  end_function(L);
}

log::Level log_level(lua_Integer level) {
  if (level <= kLevelErr) return log::Level::Error;
  if (level == kLevelWarn) return log::Level::Warn;
  if (level >= kLevelDebug) return log::Level::Debug;
  return log::Level::Info;
}

void write_log(lua_State* L, log::Level level, int first) {
  if (!log::enabled(level)) return;
  PhaseCall* call = current_call();
  std::string line = "edge function";
  if (call && call->ctx.route_id) line += " (route " + *call->ctx.route_id + ")";
  line += ": ";
  int n = lua_gettop(L);
  for (int i = first; i <= n && line.size() < kMaxLogLine; ++i) {
    int t = lua_type(L, i);
    if (t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TNIL || t == LUA_TBOOLEAN ||
        (t == LUA_TLIGHTUSERDATA && !lua_touserdata(L, i)))
      append_text(L, i, line, SIZE_MAX, 0, "ngx.log");
    else
      line += lua_typename(L, t);
  }
  log::write(level, log::one_line(line, kMaxLogLine));  // one line per call, whatever it wrote
}

int ngx_log(lua_State* L) {
  write_log(L, log_level(lua_tointeger(L, 1)), 2);
  return 0;
}

int lua_print(lua_State* L) {
  write_log(L, log::Level::Info, 1);
  return 0;
}

// ngx.ctx and ngx.status: per request, so looked up on each access.
int ngx_index(lua_State* L) {
  std::string_view key = to_view(L, 2);
  if (key == "ctx") {
    PhaseCall& call = need_call("ngx.ctx");
    lua_rawgeti(L, LUA_REGISTRYINDEX, call.request.table_ref);
    lua_rawgeti(L, -1, 1);
    return 1;
  }
  if (key == "status") {
    PhaseCall& call = need_call("ngx.status");
    int status = call.may_answer() ? call.request.status.value_or(0)
                                   : call.ctx.response_status.value_or(call.ctx.status);
    lua_pushinteger(L, status);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

int ngx_newindex(lua_State* L) {
  std::string_view key = to_view(L, 2);
  if (key == "ctx") {
    PhaseCall& call = need_call("ngx.ctx");
    if (!lua_istable(L, 3)) throw ApiError("ngx.ctx: must be a table");
    lua_rawgeti(L, LUA_REGISTRYINDEX, call.request.table_ref);
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, 1);
    return 0;
  }
  if (key == "status") {
    PhaseCall& call = need_request_phase("ngx.status", /*also_header_filter=*/true);
    lua_Integer status = lua_tointeger(L, 3);
    if (status < 200 || status > 599) throw ApiError("ngx.status: must be 200..599");
    if (call.may_answer())
      call.request.status = static_cast<int>(status);
    else
      call.ctx.response_status = static_cast<int>(status);
    return 0;
  }
  lua_rawset(L, 1);  // the environment's own copy of ngx may carry the function's own fields
  return 0;
}

int ngx_time(lua_State* L) {
  lua_pushnumber(L, static_cast<double>(std::time(nullptr)));
  return 1;
}

int ngx_now(lua_State* L) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  lua_pushnumber(L, static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec / 1000) / 1000);
  return 1;
}

int format_time(lua_State* L, const char* format, bool utc, time_t when) {
  tm parts{};
  if (!(utc ? gmtime_r(&when, &parts) : localtime_r(&when, &parts)))
    throw ApiError("time out of range");
  char text[64];
  size_t n = std::strftime(text, sizeof(text), format, &parts);
  lua_pushlstring(L, text, n);
  return 1;
}

int ngx_today(lua_State* L) { return format_time(L, "%Y-%m-%d", false, std::time(nullptr)); }
int ngx_localtime(lua_State* L) {
  return format_time(L, "%Y-%m-%d %H:%M:%S", false, std::time(nullptr));
}
int ngx_utctime(lua_State* L) {
  return format_time(L, "%Y-%m-%d %H:%M:%S", true, std::time(nullptr));
}
int ngx_http_time(lua_State* L) {
  // Years 1..9999, as an HTTP date writes them. Checked on the double: converting NaN or what
  // time_t cannot hold is undefined, and gmtime_r fails on years an int cannot hold.
  double when = luaL_checknumber(L, 1);
  if (!(when >= -62135596800.0 && when <= 253402300799.0))
    throw ApiError("ngx.http_time: time out of range (years 1..9999)");
  return format_time(L, "%a, %d %b %Y %H:%M:%S GMT", true, static_cast<time_t>(when));
}
int ngx_nothing(lua_State*) { return 0; }

int digest(lua_State* L, const EVP_MD* md, bool hex, const char* what) {
  std::string_view in = need_input(L, 1, what);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(in.data(), in.size(), out, &n, md, nullptr) != 1)
    throw ApiError(std::string(what) + ": digest failed");
  LuaSandbox::check_clock(L);
  if (!hex) {
    lua_pushlstring(L, reinterpret_cast<const char*>(out), n);
    return 1;
  }
  std::string text = hex::encode(out, n);
  lua_pushlstring(L, text.data(), text.size());
  return 1;
}

int ngx_md5(lua_State* L) { return digest(L, EVP_md5(), true, "ngx.md5"); }
int ngx_md5_bin(lua_State* L) { return digest(L, EVP_md5(), false, "ngx.md5_bin"); }
int ngx_sha1_bin(lua_State* L) { return digest(L, EVP_sha1(), false, "ngx.sha1_bin"); }

int ngx_hmac_sha1(lua_State* L) {
  std::string_view key = need_input(L, 1, "ngx.hmac_sha1");
  std::string_view data = need_input(L, 2, "ngx.hmac_sha1");
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &n))
    throw ApiError("ngx.hmac_sha1: failed");
  LuaSandbox::check_clock(L);
  lua_pushlstring(L, reinterpret_cast<const char*>(out), n);
  return 1;
}

int ngx_encode_base64(lua_State* L) {
  std::string text = base64_encode(need_input(L, 1, "ngx.encode_base64"));
  if (lua_toboolean(L, 2))
    while (!text.empty() && text.back() == '=') text.pop_back();
  LuaSandbox::check_clock(L);
  push(L, text);
  return 1;
}

int ngx_decode_base64(lua_State* L) {
  auto bytes = base64_decode(need_input(L, 1, "ngx.decode_base64"), Base64Alphabet::Standard);
  LuaSandbox::check_clock(L);
  bytes ? push(L, *bytes) : lua_pushnil(L);
  return 1;
}

int ngx_escape_uri(lua_State* L) {
  push(L, escape_uri(need_input(L, 1, "ngx.escape_uri"), false));
  return 1;
}

int ngx_unescape_uri(lua_State* L) {
  push(L, unescape_uri(need_input(L, 1, "ngx.unescape_uri")));
  return 1;
}

int ngx_encode_args(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  push(L, encode_args(L, 1));
  return 1;
}

int ngx_decode_args(lua_State* L) {
  push_args_table(L, need_input(L, 1, "ngx.decode_args"));
  return 1;
}

int json_encode(lua_State* L) {
  std::string text = to_json(L, 1, kMaxCopy).dump();
  LuaSandbox::check_clock(L);
  push(L, text);
  return 1;
}

int json_decode(lua_State* L) {
  std::string_view text = need_input(L, 1, "json.decode");
  // As cjson's decode_max_depth: deeper input would recurse as deep in push_json. Found by a
  // scan, not a parser callback: nlohmann's callback parser walks a whole array at the end of
  // each object in it (quadratic: an array of 70,000 objects took seconds).
  if (json_too_deep(text, kMaxJsonDepth)) throw ApiError("json.decode: nesting deeper than 1000");
  config::json value = config::json::parse(text);
  LuaSandbox::check_clock(L);
  push_json(L, value, LuaSandbox::count_step);  // building the tables looks at the clock
  return 1;
}

// cjson.safe: nil and the message instead of an error.
template <lua_CFunction F>
int safely(lua_State* L) {
  std::string message;
  try {
    return F(L);
  } catch (const std::exception& e) {
    message = e.what();
  }
  lua_pushnil(L);
  push(L, message);
  return 2;
}

void push_json_module(lua_State* L, bool safe) {
  lua_newtable(L);
  lua_pushcfunction(L, safe ? safely<json_encode> : guarded<json_encode>);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, safe ? safely<json_decode> : guarded<json_decode>);
  lua_setfield(L, -2, "decode");
  lua_pushlightuserdata(L, nullptr);
  lua_setfield(L, -2, "null");
}

}  // namespace
}  // namespace api

using namespace api;

void set_answer(lua_State* L, PhaseCall& call, int status, int body_index) {
  call.exited = true;
  call.exit_status = status;
  call.output_status = status;
  if (body_index == 0) return;
  if (lua_istable(L, body_index)) {
    call.output += to_json(L, body_index, kMaxOutput).dump();
    call.exit_content_type = "application/json";
  } else {
    std::string_view body = need_string(L, body_index, "response body");
    check_size(call.output.size() + body.size(), kMaxOutput, "response body");
    call.output += body;
  }
}

std::string default_page(int status) {
  std::string line = std::to_string(status) + " " + http::status_reason(status);
  return "<html>\n<head><title>" + line + "</title></head>\n<body>\n<center><h1>" + line +
         "</h1></center>\n<hr><center>portico</center>\n</body>\n</html>\n";
}

void install_ngx_api(LuaSandbox& sandbox) {
  lua_State* L = sandbox.state();
  const luaL_Reg functions[] = {{"say", guarded<ngx_say>},
                                {"print", guarded<ngx_print>},
                                {"exit", guarded<ngx_exit>},
                                {"redirect", guarded<ngx_redirect>},
                                {"log", guarded<ngx_log>},
                                {"time", ngx_time},
                                {"now", ngx_now},
                                {"update_time", ngx_nothing},
                                {"today", guarded<ngx_today>},
                                {"localtime", guarded<ngx_localtime>},
                                {"utctime", guarded<ngx_utctime>},
                                {"http_time", guarded<ngx_http_time>},
                                {"md5", guarded<ngx_md5>},
                                {"md5_bin", guarded<ngx_md5_bin>},
                                {"sha1_bin", guarded<ngx_sha1_bin>},
                                {"hmac_sha1", guarded<ngx_hmac_sha1>},
                                {"encode_base64", guarded<ngx_encode_base64>},
                                {"decode_base64", guarded<ngx_decode_base64>},
                                {"escape_uri", guarded<ngx_escape_uri>},
                                {"unescape_uri", guarded<ngx_unescape_uri>},
                                {"encode_args", guarded<ngx_encode_args>},
                                {"decode_args", guarded<ngx_decode_args>},
                                {nullptr, nullptr}};
  lua_newtable(L);  // ngx
  luaL_register(L, nullptr, functions);
  for (const auto& [name, value] : kConstants) {
    lua_pushinteger(L, value);
    lua_setfield(L, -2, name);
  }
  lua_pushlightuserdata(L, nullptr);
  lua_setfield(L, -2, "null");
  add_request_api(L);
  push_locked_metatable(L, guarded<ngx_index>, guarded<ngx_newindex>);
  lua_setmetatable(L, -2);

  // apisix.core, built over this (template) ngx.
  if (luaL_loadstring(L, kCoreModule) != 0) throw std::runtime_error("edge: bad core module");
  lua_pushvalue(L, -2);
  lua_pushcfunction(L, guarded<response_exit>);
  lua_pushcfunction(L, guarded<json_encode>);
  lua_pushcfunction(L, guarded<json_decode>);
  lua_call(L, 4, 1);
  sandbox.add_module("apisix.core");
  sandbox.add_global("ngx");
  push_json_module(L, false);
  sandbox.add_module("cjson");
  push_json_module(L, true);
  sandbox.add_module("cjson.safe");
  lua_pushcfunction(L, guarded<lua_print>);
  sandbox.add_global("print");
}

}  // namespace portico::plugins::edge
