// Shared by the files that implement the ngx.* API (ngx_api.cpp, ngx_request.cpp): turning C++
// errors into Lua errors, and reaching the current call.
#pragma once

#include <lua.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

#include "plugins/edge/phase_call.hpp"

namespace portico::plugins::edge::api {

// A misuse the function reports as a Lua error ("ngx.req.set_header: invalid header name").
struct ApiError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Every API function runs through this: a C++ exception (ApiError, bad_alloc, json errors)
// becomes a Lua error once the C++ frames are gone. Only std::exception is caught: LuaJIT's own
// errors unwind as foreign exceptions and must pass through.
template <lua_CFunction F>
int guarded(lua_State* L) {
  thread_local char message[512];
  try {
    return F(L);
  } catch (const std::exception& e) {
    std::snprintf(message, sizeof(message), "%s", e.what());
  }
  return luaL_error(L, "%s", message);
}

// The current call, or an ApiError naming `what` outside a request.
PhaseCall& need_call(const char* what);
// The current call when it may still change or answer the request (rewrite, access,
// before_proxy); `also_header_filter` admits header_filter too.
PhaseCall& need_request_phase(const char* what, bool also_header_filter = false);

// What the API copies out of Lua into C++ (JSON, query strings, header values) is not counted
// by the state's allocator, and a table holding one string or subtable many times copies into
// far more than it holds itself; the input of its costly C functions (digests, base64, JSON
// decoding) decides how long they run, where the time limit cannot stop them. Both stop here.
inline constexpr size_t kMaxCopy = size_t{2} << 20;
// A URI a function sends on (upstream_uri, set_uri_args, ngx.redirect), and a Host it sets.
inline constexpr size_t kMaxUri = size_t{8} << 10;
inline constexpr size_t kMaxHost = size_t{4} << 10;
// ApiError "<what>: too large (more than N bytes)" when `size` is over `limit`.
void check_size(size_t size, size_t limit, const char* what);

std::string_view to_view(lua_State* L, int index);
// A string or number argument; ApiError naming `what` otherwise.
std::string_view need_string(lua_State* L, int index, const char* what);
// need_string for the input of a costly function: at most kMaxCopy bytes.
std::string_view need_input(lua_State* L, int index, const char* what);
void push(lua_State* L, std::string_view s);
// Raises the special error that ends the running function after ngx.exit (the call records the
// exit first, so a pcall around it changes nothing).
[[noreturn]] void end_function(lua_State* L);

// "X-Foo", "x_foo" -> "x-foo" (OpenResty's ngx.header.x_foo).
std::string header_key(std::string_view name);
// Headers the gateway frames messages with; edge functions may not set them.
bool is_framing_header(std::string_view lower_name);
std::string escape_uri(std::string_view s, bool path);
std::string unescape_uri(std::string_view s);
// With a table and a value on the stack: t[key] = value, or appended to the list t[key] holds
// (turning a single earlier value into a list). Pops the value.
void add_value(lua_State* L, std::string_view key);
// name -> value, true (no '='), or a list for repeated names; at most 100 arguments.
void push_args_table(lua_State* L, std::string_view query);
// ngx.encode_args over the table at `index`; at most kMaxCopy bytes.
std::string encode_args(lua_State* L, int index);

// Registration: the functions of ngx.req, and the ngx.var / ngx.header / ngx.arg proxies, into
// the table on top of the stack (ngx).
void add_request_api(lua_State* L);
// Pushes a metatable whose reads (and writes, unless null) go to C functions, hidden from the
// functions: getmetatable() gives false and setmetatable() refuses (proxies like ngx.var).
void push_locked_metatable(lua_State* L, lua_CFunction index, lua_CFunction newindex);
// core.request.header and friends use this: the request headers as the upstream will get them.
int get_headers(lua_State* L);

}  // namespace portico::plugins::edge::api
