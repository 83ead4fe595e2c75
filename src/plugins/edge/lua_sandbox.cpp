#include "plugins/edge/lua_sandbox.hpp"

#include <time.h>
#include <lua.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "plugins/edge/lua_patterns.hpp"

#include "core/log.hpp"

namespace portico::plugins::edge {
namespace {

// VM instructions between two looks at the clock (~20 ns each through the vDSO) and at the
// memory in use: few enough that a loop of costly library calls cannot run far past either.
constexpr int kHookInstructions = 100;
// Nested tables deeper than this are shared, not copied, into environments (none are).
constexpr int kMaxCopyDepth = 4;
constexpr size_t kBlockHeader = sizeof(MemoryAccount*);

int64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// What the functions see of the base library. Left out: load, loadstring, loadfile, dofile,
// require (a safe one is added per environment), getfenv, setfenv, rawset, collectgarbage,
// gcinfo, newproxy, module, and xpcall (replaced, see kXpcall).
const char* const kBaseFunctions[] = {"assert",   "error",        "ipairs",       "next",
                                      "pairs",    "pcall",        "select",       "tonumber",
                                      "tostring", "type",         "unpack",       "rawequal",
                                      "rawget",   "getmetatable", "setmetatable", "_VERSION"};
const char* const kOsFunctions[] = {"time", "clock", "date"};

// LuaJIT runs an xpcall handler before unwinding, while the count hook that raised the error is
// still marked active: a handler that loops would never be stopped. This one runs the handler
// after pcall has returned, where the hook works (the handler then sees no traceback, which the
// missing debug library could not show anyway).
constexpr const char* kXpcall = R"(
local pcall = pcall
local function finish(handler, ok, ...)
  if ok then return true, ... end
  return false, handler((...))
end
return function(f, handler, ...)
  return finish(handler, pcall(f, ...))
end)";

int require_module(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  lua_getfield(L, lua_upvalueindex(1), name);
  if (lua_isnil(L, -1))
    return luaL_error(L, "module '%s' is not available to edge functions", name);
  return 1;
}

int on_panic(lua_State* L) {
  const char* what = lua_tostring(L, -1);
  log::error(std::string("edge functions: unprotected Lua error: ") + (what ? what : "?"));
  std::abort();
}

std::string error_text(lua_State* L) {
  int t = lua_type(L, -1);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    size_t n = 0;
    const char* s = lua_tolstring(L, -1, &n);
    return std::string(s, n < 1024 ? n : 1024);
  }
  return std::string("(error object is a ") + lua_typename(L, t) + " value)";
}

}  // namespace

const char* failure_name(Failure f) {
  switch (f) {
    case Failure::None:
      return "none";
    case Failure::Error:
      return "error";
    case Failure::Timeout:
      return "timeout";
    case Failure::Memory:
      return "memory";
  }
  return "error";
}

LuaSandbox::LuaSandbox(size_t memory_limit) : limit_(memory_limit) {
  // lua_newstate with our allocator works on GC64 builds (Debian's LuaJIT on x86-64 and arm64).
  L_ = lua_newstate(&allocate, this);
  if (!L_) throw std::runtime_error("edge functions: LuaJIT refused a state with our allocator");
  lua_atpanic(L_, on_panic);
  // The interpreter calls count hooks on every instruction it runs; compiled traces never do.
  luaJIT_setmode(L_, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  open_safe_libraries();
}

LuaSandbox::~LuaSandbox() {
  enforce_ = false;
  if (L_) lua_close(L_);
}

void LuaSandbox::open_safe_libraries() {
  const std::pair<const char*, lua_CFunction> libs[] = {{"", luaopen_base},
                                                        {LUA_STRLIBNAME, luaopen_string},
                                                        {LUA_TABLIBNAME, luaopen_table},
                                                        {LUA_MATHLIBNAME, luaopen_math},
                                                        {LUA_OSLIBNAME, luaopen_os},
                                                        {LUA_BITLIBNAME, luaopen_bit}};
  for (const auto& [name, open] : libs) {
    lua_pushcfunction(L_, open);
    lua_pushstring(L_, name);
    lua_call(L_, 1, 0);
  }
  // string.dump would hand out bytecode; it goes from the library itself, which strings'
  // metatable indexes, and that metatable is hidden from getmetatable("").
  lua_getglobal(L_, "string");
  lua_pushnil(L_);
  lua_setfield(L_, -2, "dump");
  install_pattern_functions(L_, count_step);  // LuaJIT's cannot be stopped by the time limit
  lua_pop(L_, 1);
  lua_pushliteral(L_, "");
  lua_getmetatable(L_, -1);
  lua_pushboolean(L_, 0);
  lua_setfield(L_, -2, "__metatable");
  lua_pop(L_, 2);

  lua_newtable(L_);  // the template environment
  for (const char* name : kBaseFunctions) {
    lua_getglobal(L_, name);
    lua_setfield(L_, -2, name);
  }
  for (const char* name : {"string", "table", "math", "bit"}) {
    lua_getglobal(L_, name);
    lua_setfield(L_, -2, name);
  }
  lua_newtable(L_);
  lua_getglobal(L_, "os");
  for (const char* name : kOsFunctions) {
    lua_getfield(L_, -1, name);
    lua_setfield(L_, -3, name);
  }
  lua_pop(L_, 1);
  lua_setfield(L_, -2, "os");
  if (luaL_loadstring(L_, kXpcall) != 0) throw std::runtime_error("edge functions: bad xpcall");
  lua_call(L_, 0, 1);
  lua_setfield(L_, -2, "xpcall");
  globals_ref_ = luaL_ref(L_, LUA_REGISTRYINDEX);
  lua_newtable(L_);
  modules_ref_ = luaL_ref(L_, LUA_REGISTRYINDEX);
  // LuaJIT's string buffer is made at its first use and then only resized: made here, it is
  // the state's own, not charged to the first function that joins two strings.
  if (luaL_loadstring(L_, "return ('x'):rep(1024) .. '!'") != 0)
    throw std::runtime_error("edge functions: bad buffer warm-up");
  lua_call(L_, 0, 0);
}

void LuaSandbox::add_global(const char* name) {
  lua_rawgeti(L_, LUA_REGISTRYINDEX, globals_ref_);
  lua_insert(L_, -2);
  lua_setfield(L_, -2, name);
  lua_pop(L_, 1);
}

void LuaSandbox::add_module(const char* name) {
  lua_rawgeti(L_, LUA_REGISTRYINDEX, modules_ref_);
  lua_insert(L_, -2);
  lua_setfield(L_, -2, name);
  lua_pop(L_, 1);
}

// Pushes a copy of the value at `index`: tables are copied (keys shared, values copied in turn)
// and keep their metatable, which is how proxies like ngx.var stay proxies.
void LuaSandbox::copy_value(int index, int depth) {
  if (index < 0) index = lua_gettop(L_) + index + 1;
  if (lua_type(L_, index) != LUA_TTABLE || depth >= kMaxCopyDepth) {
    lua_pushvalue(L_, index);
    return;
  }
  lua_newtable(L_);
  lua_pushnil(L_);
  while (lua_next(L_, index) != 0) {  // copy key value
    copy_value(-1, depth + 1);        // copy key value value'
    lua_remove(L_, -2);               // copy key value'
    lua_pushvalue(L_, -2);            // copy key value' key
    lua_insert(L_, -2);               // copy key key value'
    lua_rawset(L_, -4);               // copy key
  }
  if (lua_getmetatable(L_, index)) lua_setmetatable(L_, -2);
}

void LuaSandbox::push_environment() {
  lua_rawgeti(L_, LUA_REGISTRYINDEX, globals_ref_);
  copy_value(-1, 0);
  lua_remove(L_, -2);
  lua_pushvalue(L_, -1);
  lua_setfield(L_, -2, "_G");
  lua_rawgeti(L_, LUA_REGISTRYINDEX, modules_ref_);
  copy_value(-1, 0);
  lua_remove(L_, -2);
  lua_pushcclosure(L_, require_module, 1);
  lua_setfield(L_, -2, "require");
}

CallResult LuaSandbox::load(std::string_view source, const std::string& chunk_name) {
  refused_ = false;
  enforce_ = true;  // lua_load is protected: running out here is an ordinary error
  int rc = luaL_loadbufferx(L_, source.data(), source.size(), chunk_name.c_str(), "t");
  enforce_ = false;
  if (rc != 0) {
    CallResult r{rc == LUA_ERRMEM || refused_ ? Failure::Memory : Failure::Error, error_text(L_)};
    lua_pop(L_, 1);
    return r;
  }
  push_environment();
  lua_setfenv(L_, -2);
  return {};
}

void LuaSandbox::count_step(lua_State* L) {
  thread_local unsigned steps = 0;
  if ((++steps & 1023) == 0) check_clock(L);
}

void LuaSandbox::check_clock(lua_State* L) {
  void* ud = nullptr;
  lua_getallocf(L, &ud);
  auto* self = static_cast<LuaSandbox*>(ud);
  if (self->enforce_ && monotonic_ns() >= self->deadline_ns_) self->time_out(L);
}

// The allocator refuses what would pass the limit, and LuaJIT cannot collect from inside it:
// garbage alone could then fail a function whose live data is small. So the hook (and each
// call) collects in full once usage passes half the limit, then again once half of the room
// left after that collection is used up: a collection per so much allocation, never a refusal
// while most of the limit is garbage. The allocator has the hook look at the very next
// instruction once that point is passed: a loop making a large string per iteration could
// otherwise fill the limit with garbage between two of the hook's counts.
size_t LuaSandbox::collect_threshold() const { return collect_at_ ? collect_at_ : limit_ / 2; }

void LuaSandbox::collect_if_needed() {
  if (used_ > collect_threshold()) collect();
}

void LuaSandbox::start_clock(double seconds) {
  budget_seconds_ = seconds;
  deadline_ns_ = monotonic_ns() + static_cast<int64_t>(seconds * 1e9);
}

CallResult LuaSandbox::call(int nargs, int nresults) {
  int base = lua_gettop(L_) - nargs - 1;
  refused_ = false;
  timed_out_ = false;
  over_share_ = false;
  collect_if_needed();
  lua_sethook(L_, count_hook, LUA_MASKCOUNT, kHookInstructions);
  enforce_ = true;
  calling_ = true;
  int rc = lua_pcall(L_, nargs, nresults, 0);
  enforce_ = false;
  calling_ = false;
  lua_sethook(L_, nullptr, 0, 0);  // never armed outside a call: an unprotected error aborts
  // Past the share with no instruction after (a tail call into C): judged now.
  if (look_soon_ && rc == 0) past_share();
  look_soon_ = false;
  CallResult r;
  if (timed_out_) {
    // Also when the function caught the error and returned: its time was up all the same.
    char text[96];
    std::snprintf(text, sizeof(text), "time limit of %g ms exceeded", budget_seconds_ * 1000);
    r = {Failure::Timeout, text};
  } else if (rc != 0) {
    r = {rc == LUA_ERRMEM || refused_ ? Failure::Memory : Failure::Error, error_text(L_)};
  } else if (over_share_) {
    r = {Failure::Memory, share_message()};  // likewise, also when caught
  }
  if (!r.ok()) {
    lua_settop(L_, base);
    if (r.failure == Failure::Memory) collect();
  }
  return r;
}

MemoryAccount* LuaSandbox::open_account() {
  if (!reusable_) return &accounts_.emplace_back();
  MemoryAccount* account = reusable_;
  reusable_ = account->next_free;
  *account = MemoryAccount{};
  return account;
}

void LuaSandbox::close_account(MemoryAccount* account) {
  if (charged_ == account) charged_ = &own_;
  account->closed = true;
  if (account->blocks == 0) {
    account->next_free = reusable_;
    reusable_ = account;
  }
}

void LuaSandbox::debit(MemoryAccount* account, size_t bytes) {
  account->bytes -= bytes;
  if (--account->blocks == 0 && account->closed) {
    account->next_free = reusable_;
    reusable_ = account;
  }
}

// Each block starts with the account it is charged to (8 bytes: LuaJIT's own allocator aligns
// to 8 as well). A block keeps its account when resized: LuaJIT's own buffers (the stack, the
// string buffer, the registry) were made during setup and stay the state's, whoever grows them.
void* LuaSandbox::allocate(void* ud, void* block, size_t old_size, size_t new_size) {
  auto* self = static_cast<LuaSandbox*>(ud);
  char* base = block ? static_cast<char*>(block) - kBlockHeader : nullptr;
  size_t current = block ? old_size + kBlockHeader : 0;
  if (new_size == 0) {
    if (!base) return nullptr;
    self->debit(*reinterpret_cast<MemoryAccount**>(base), current);
    std::free(base);
    self->used_ -= current;
    return nullptr;
  }
  size_t wanted = new_size + kBlockHeader;
  if (self->enforce_ && wanted > current && self->used_ - current + wanted > self->limit_) {
    self->refused_ = true;  // LuaJIT raises "not enough memory" where it asked
    return nullptr;
  }
  auto* grown = static_cast<char*>(std::realloc(base, wanted));
  if (!grown) return nullptr;
  MemoryAccount* to;
  if (base) {
    to = *reinterpret_cast<MemoryAccount**>(grown);  // realloc kept the header
    to->bytes = to->bytes - current + wanted;
  } else {
    to = self->charged_;
    to->bytes += wanted;
    ++to->blocks;
    *reinterpret_cast<MemoryAccount**>(grown) = to;
  }
  self->used_ = self->used_ - current + wanted;
  if (self->calling_ && !self->look_soon_ &&
      (self->used_ > self->collect_threshold() ||
       (to == self->charged_ && to != &self->own_ &&
        to->bytes > std::max(self->share_limit(), to->check_at)))) {
    // The allocator cannot collect or raise; the hook can, at the very next instruction (a
    // short function would otherwise return before the hook's next count). call() armed the
    // count hook already, so this only changes its count.
    self->look_soon_ = true;
    lua_sethook(self->L_, count_hook, LUA_MASKCOUNT, 1);
  }
  return grown + kBlockHeader;
}

void LuaSandbox::collect() {
  const bool enforce = enforce_;
  MemoryAccount* charged = charged_;
  enforce_ = false;
  charged_ = &own_;
  lua_gc(L_, LUA_GCCOLLECT, 0);
  enforce_ = enforce;
  charged_ = charged;
  collect_at_ = std::max(limit_ / 2, used_ + (limit_ - std::min(used_, limit_)) / 2);
}

void LuaSandbox::count_hook(lua_State* L, lua_Debug*) {
  void* ud = nullptr;
  lua_getallocf(L, &ud);
  auto* self = static_cast<LuaSandbox*>(ud);
  if (monotonic_ns() >= self->deadline_ns_) self->time_out(L);
  if (self->look_soon_) {
    self->look_soon_ = false;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, kHookInstructions);
  }
  self->collect_if_needed();  // no finalizers can run: the functions cannot make userdata
  self->check_share(L);
}

// Whether the running account holds more than its share after a full collection (garbage does
// not count). One that passes is judged again after 1/16 of the share more.
bool LuaSandbox::past_share() {
  MemoryAccount* account = charged_;
  if (account == &own_ || account->bytes <= std::max(share_limit(), account->check_at))
    return false;
  collect();
  if (account->bytes <= share_limit()) {
    account->check_at = account->bytes + share_limit() / 16;
    return false;
  }
  refused_ = true;
  over_share_ = true;
  over_share_bytes_ = account->bytes;
  return true;
}

// At the instruction after an allocation took the running account past its share. The call
// fails even if the function catches this error (see call()).
void LuaSandbox::check_share(lua_State* L) {
  if (!past_share()) return;
  {
    std::string message = share_message();
    lua_pushlstring(L, message.data(), message.size());  // no location: not the caller's fault
  }
  lua_error(L);
}

std::string LuaSandbox::share_message() const {
  return "not enough memory: these functions hold " + std::to_string(over_share_bytes_ >> 10) +
         " KiB, more than half of the worker's edge_functions.memory_limit";
}

void LuaSandbox::time_out(lua_State* L) {
  timed_out_ = true;
  // From now on every instruction raises: code that catches the error (pcall in a loop) meets
  // it again at its next instruction, outside the pcall.
  lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
  luaL_error(L, "time limit exceeded");
  __builtin_unreachable();
}

}  // namespace portico::plugins::edge
