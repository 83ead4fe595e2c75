// Helpers of the ngx API: the current call, phase names, argument checks, URI escaping and
// query arguments.
#include <array>

#include "core/hex.hpp"
#include "http/request_vars.hpp"
#include "plugins/edge/lua_sandbox.hpp"
#include "plugins/edge/ngx_internal.hpp"

namespace portico::plugins::edge {
namespace {

thread_local PhaseCall* t_call = nullptr;
constexpr int kMaxArgCount = 100;  // OpenResty's default for get_uri_args / decode_args

constexpr std::array<const char*, 6> kPhaseNames = {"rewrite",       "access",      "before_proxy",
                                                    "header_filter", "body_filter", "log"};

}  // namespace

const char* phase_name(Phase p) { return kPhaseNames[static_cast<size_t>(p)]; }

std::optional<Phase> parse_phase(std::string_view name) {
  for (size_t i = 0; i < kPhaseNames.size(); ++i)
    if (name == kPhaseNames[i]) return static_cast<Phase>(i);
  return std::nullopt;
}

PhaseCall* current_call() { return t_call; }

CallScope::CallScope(PhaseCall& call) : previous_(t_call) { t_call = &call; }
CallScope::~CallScope() { t_call = previous_; }

namespace api {

void add_value(lua_State* L, std::string_view key) {
  push(L, key);
  lua_rawget(L, -3);
  int existing = lua_type(L, -1);
  if (existing == LUA_TNIL) {
    lua_pop(L, 1);
    push(L, key);
    lua_insert(L, -2);
    lua_rawset(L, -3);
    return;
  }
  if (existing != LUA_TTABLE) {  // the single value becomes a list
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    push(L, key);
    lua_pushvalue(L, -2);
    lua_rawset(L, -5);
  }
  lua_insert(L, -2);  // ... list value
  lua_rawseti(L, -2, static_cast<int>(lua_objlen(L, -2)) + 1);
  lua_pop(L, 1);
}

namespace {

void append_arg(std::string& out, std::string_view key, lua_State* L, int value_index) {
  LuaSandbox::count_step(L);
  int t = lua_type(L, value_index);
  if (t == LUA_TBOOLEAN) {
    if (!lua_toboolean(L, value_index)) return;
    check_size(out.size() + key.size(), kMaxCopy, "ngx.encode_args");
    if (!out.empty()) out += '&';
    out += escape_uri(key, false);
    return;
  }
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    throw ApiError("ngx.encode_args: values must be strings, numbers, booleans or lists");
  std::string_view value = to_view(L, value_index);
  // Before escaping, which only grows them: a list may hold one long string many times.
  check_size(out.size() + key.size() + value.size(), kMaxCopy, "ngx.encode_args");
  if (!out.empty()) out += '&';
  out += escape_uri(key, false);
  out += '=';
  out += escape_uri(value, false);
}

}  // namespace

PhaseCall& need_call(const char* what) {
  PhaseCall* call = current_call();
  if (!call) throw ApiError(std::string(what) + ": not available outside a request");
  return *call;
}

PhaseCall& need_request_phase(const char* what, bool also_header_filter) {
  PhaseCall& call = need_call(what);
  if (!call.may_answer() && !(also_header_filter && call.phase == Phase::HeaderFilter))
    throw ApiError(std::string(what) + ": not in the " + phase_name(call.phase) + " phase");
  return call;
}

void check_size(size_t size, size_t limit, const char* what) {
  if (size > limit)
    throw ApiError(std::string(what) + ": too large (more than " + std::to_string(limit) +
                   " bytes)");
}

std::string_view to_view(lua_State* L, int index) {
  size_t n = 0;
  const char* s = lua_tolstring(L, index, &n);
  return s ? std::string_view(s, n) : std::string_view();
}

std::string_view need_string(lua_State* L, int index, const char* what) {
  int t = lua_type(L, index);
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    throw ApiError(std::string(what) + ": expected a string, got " + lua_typename(L, t));
  return to_view(L, index);
}

std::string_view need_input(lua_State* L, int index, const char* what) {
  std::string_view s = need_string(L, index, what);
  check_size(s.size(), kMaxCopy, what);
  return s;
}

void push(lua_State* L, std::string_view s) { lua_pushlstring(L, s.data(), s.size()); }

void end_function(lua_State* L) {
  static const char kMarker = 0;  // the error value: recognised by address, never shown
  lua_pushlightuserdata(L, const_cast<char*>(&kMarker));
  lua_error(L);
  __builtin_unreachable();
}

std::string header_key(std::string_view name) {
  std::string key(name);
  for (char& c : key) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '_') c = '-';
  }
  return key;
}

bool is_framing_header(std::string_view n) {
  return n == "content-length" || n == "transfer-encoding" || n == "connection" ||
         n == "keep-alive" || n == "te" || n == "trailer" || n == "upgrade" ||
         n == "proxy-connection";
}

std::string escape_uri(std::string_view s, bool path) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~' ||
                 (path && std::string_view("/!$&'()*+,;=:@").find(ch) != std::string_view::npos);
    if (plain) {
      out += ch;
    } else {
      out += '%';
      out += hex::kUpperDigits[c >> 4];
      out += hex::kUpperDigits[c & 15];
    }
  }
  return out;
}

std::string unescape_uri(std::string_view s) { return http::percent_decode(s, false); }

void push_args_table(lua_State* L, std::string_view query) {
  lua_newtable(L);
  int count = 0;
  while (!query.empty() && count < kMaxArgCount) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    ++count;
    size_t eq = item.find('=');
    std::string key = http::percent_decode(item.substr(0, eq), true);
    if (eq == std::string_view::npos)
      lua_pushboolean(L, 1);
    else
      push(L, http::percent_decode(item.substr(eq + 1), true));
    add_value(L, key);
  }
}

std::string encode_args(lua_State* L, int index) {
  if (index < 0) index = lua_gettop(L) + index + 1;
  std::string out;
  lua_pushnil(L);
  while (lua_next(L, index) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      throw ApiError("ngx.encode_args: argument names must be strings");
    std::string key(to_view(L, -2));
    if (lua_istable(L, -1)) {
      for (int i = 1;; ++i) {
        lua_rawgeti(L, -1, i);
        if (lua_isnil(L, -1)) {
          lua_pop(L, 1);
          break;
        }
        append_arg(out, key, L, lua_gettop(L));
        lua_pop(L, 1);
      }
    } else {
      append_arg(out, key, L, lua_gettop(L));
    }
    lua_pop(L, 1);
  }
  return out;
}

}  // namespace api
}  // namespace portico::plugins::edge
