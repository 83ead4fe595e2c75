#include "plugins/edge/edge_runtime.hpp"

#include <lua.hpp>

#include <mutex>

#include "config/node_config.hpp"
#include "plugins/consumers.hpp"
#include "plugins/edge/lua_json.hpp"
#include "plugins/edge/ngx_api.hpp"

namespace portico::plugins::edge {
namespace {

// Compiled functions handed back by dying FunctionSets, per runtime index.
struct Retired {
  std::mutex mutex;
  std::vector<uint64_t> slots;
  std::atomic<bool> pending{false};
};

// Never freed: plugin instances may die during exit, after static destructors ran.
Retired* retired_lists() {
  static Retired* lists = new Retired[kMaxCachingRuntimes];
  return lists;
}

std::atomic<uint32_t> g_next_index{0};
thread_local Runtime* t_alive = nullptr;  // trivially destructible: safe to read at thread exit

uint64_t pack(uint32_t epoch, int ref) {
  return (uint64_t{epoch} << 32) | static_cast<uint32_t>(ref);
}
uint32_t epoch_of(uint64_t slot) { return static_cast<uint32_t>(slot >> 32); }
int ref_of(uint64_t slot) { return static_cast<int>(static_cast<uint32_t>(slot)); }

// The request's edge-function state in Context::request_local.
struct RequestState final : RequestLocal {
  RequestState(Runtime* r, uint32_t e) : owner(r), epoch(e) {}
  ~RequestState() override {
    if (t_alive == owner && facts.table_ref > 0) owner->release(epoch, facts.table_ref);
  }
  Runtime* owner;
  uint32_t epoch;
  RequestFacts facts;
};

bool answerable_status(int status) { return status >= 200 && status <= 599; }

// ctx.reply from what the functions printed or the status they exited with.
bool answer(PhaseCall& call) {
  Context& ctx = call.ctx;
  if (!call.output.empty() || (call.exited && call.exit_status >= 200)) {
    int status = call.output.empty() ? call.exit_status : call.output_status;
    std::string type = call.exit_content_type.empty() ? "text/plain" : call.exit_content_type;
    if (call.output.empty() && status >= 300 && status != 304)
      ctx.respond(status, default_page(status), "text/html");
    else
      ctx.respond(status, std::move(call.output), std::move(type));
    return true;
  }
  return false;
}

}  // namespace

FunctionSet::FunctionSet(std::vector<std::string> sources, config::json conf)
    : sources_(std::move(sources)), conf_(std::move(conf)) {}

FunctionSet::~FunctionSet() {
  Retired* lists = retired_lists();
  for (size_t i = 0; i < slots_.size(); ++i) {
    uint64_t slot = slots_[i].load(std::memory_order_acquire);
    if (slot == 0) continue;
    std::lock_guard lock(lists[i].mutex);
    lists[i].slots.push_back(slot);
    lists[i].pending.store(true, std::memory_order_release);
  }
}

Runtime& Runtime::current() {
  thread_local std::unique_ptr<Runtime> instance;
  if (!instance) instance.reset(new Runtime());
  return *instance;
}

Runtime::Runtime() : index_(g_next_index.fetch_add(1)) {
  start_state();
  t_alive = this;
}

Runtime::~Runtime() { t_alive = nullptr; }

void Runtime::start_state() {
  sandbox_.reset();  // the old state first: two at their limit would be twice the memory
  auto limits = config::edge_function_limits();
  sandbox_ = std::make_unique<LuaSandbox>(static_cast<size_t>(limits.memory_limit));
  install_ngx_api(*sandbox_);
  ++epoch_;
}

void Runtime::release(uint32_t epoch, int ref) {
  if (epoch == epoch_) luaL_unref(sandbox_->state(), LUA_REGISTRYINDEX, ref);
}

void Runtime::drain_retired() {
  if (index_ >= kMaxCachingRuntimes) return;
  Retired& mine = retired_lists()[index_];
  if (!mine.pending.exchange(false, std::memory_order_acquire)) return;
  std::vector<uint64_t> slots;
  {
    std::lock_guard lock(mine.mutex);
    slots.swap(mine.slots);
  }
  for (uint64_t slot : slots) release(epoch_of(slot), ref_of(slot));
}

// Pushes the set's compiled table {conf = ..., f1, ..., fn}, compiling it on first use.
bool Runtime::push_functions(const FunctionSet& set, Outcome& out) {
  lua_State* L = sandbox_->state();
  const bool caching = index_ < kMaxCachingRuntimes;
  if (caching) {
    uint64_t slot = set.slots_[index_].load(std::memory_order_relaxed);
    if (slot != 0 && epoch_of(slot) == epoch_) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, ref_of(slot));
      return true;
    }
  }
  const auto& sources = set.sources();
  lua_createtable(L, static_cast<int>(sources.size()), 1);
  push_json(L, set.conf());
  lua_setfield(L, -2, "conf");
  for (size_t i = 0; i < sources.size(); ++i) {
    CallResult r = sandbox_->load(sources[i], sources[i]);
    if (r.ok()) r = sandbox_->call(0, 1);
    if (r.ok() && !lua_isfunction(L, -1)) {
      r = {Failure::Error,
           std::string("only accept Lua function, the input code type is ") + luaL_typename(L, -1)};
      lua_pop(L, 1);
    }
    if (!r.ok()) {
      lua_pop(L, 1);
      out.failure = r.failure;
      out.message = std::move(r.message);
      out.function = i;
      return false;
    }
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  if (caching) {
    lua_pushvalue(L, -1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    set.slots_[index_].store(pack(epoch_, ref), std::memory_order_release);
  }
  return true;
}

RequestFacts& Runtime::request_facts(Context& ctx) {
  auto* state = dynamic_cast<RequestState*>(ctx.request_local.get());
  if (state && state->owner == this && state->epoch == epoch_) return state->facts;
  lua_State* L = sandbox_->state();
  auto fresh = std::make_unique<RequestState>(this, epoch_);
  lua_createtable(L, 2, 0);
  lua_newtable(L);  // [1] ngx.ctx
  lua_rawseti(L, -2, 1);
  lua_createtable(L, 0, 4);  // [2] the `ctx` argument, as APISIX's api_ctx: var, route_id, ...
  lua_newtable(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "portico.var_mt");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "var");
  if (ctx.route_id) {
    lua_pushlstring(L, ctx.route_id->data(), ctx.route_id->size());
    lua_setfield(L, -2, "route_id");
  }
  if (ctx.service_id && !ctx.service_id->empty()) {
    lua_pushlstring(L, ctx.service_id->data(), ctx.service_id->size());
    lua_setfield(L, -2, "service_id");
  }
  lua_rawseti(L, -2, 2);
  fresh->facts.table_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  RequestFacts& facts = fresh->facts;
  ctx.request_local = std::move(fresh);
  return facts;
}

std::string Runtime::check(const std::string& source, double seconds) {
  drain_retired();
  sandbox_->set_memory_limit(static_cast<size_t>(config::edge_function_limits().memory_limit));
  lua_State* L = sandbox_->state();
  int top = lua_gettop(L);
  sandbox_->start_clock(seconds);
  CallResult r = sandbox_->load(source, source);
  if (r.ok()) r = sandbox_->call(0, 1);
  if (r.ok() && !lua_isfunction(L, -1))
    r = {Failure::Error,
         std::string("only accept Lua function, the input code type is ") + luaL_typename(L, -1)};
  lua_settop(L, top);
  if (r.failure == Failure::Memory && sandbox_->exhausted()) start_state();
  return r.message;
}

Outcome Runtime::run(const FunctionSet& set, Phase phase, Context& ctx, std::string* body,
                     double seconds) {
  drain_retired();
  sandbox_->set_memory_limit(static_cast<size_t>(config::edge_function_limits().memory_limit));
  lua_State* L = sandbox_->state();
  const int top = lua_gettop(L);
  PhaseCall call(ctx, phase, request_facts(ctx), body);
  CallScope scope(call);
  sandbox_->start_clock(seconds);
  Outcome out;
  if (push_functions(set, out)) {
    const int functions = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, call.request.table_ref);
    const int request = lua_gettop(L);
    if (ctx.consumer) {
      // Raw: this runs outside lua_pcall, and an earlier function may have given `ctx` a
      // metatable; a __newindex run here would escape the time limit, and its errors abort.
      lua_rawgeti(L, request, 2);
      lua_pushliteral(L, "consumer_name");
      lua_pushlstring(L, ctx.consumer->username.data(), ctx.consumer->username.size());
      lua_rawset(L, -3);
      lua_pop(L, 1);
    }
    for (size_t i = 0; i < set.sources().size(); ++i) {
      lua_rawgeti(L, functions, static_cast<int>(i + 1));
      lua_getfield(L, functions, "conf");
      lua_rawgeti(L, request, 2);
      CallResult r = sandbox_->call(2, 2);
      // ngx.exit: whatever the function did after (a pcall caught it) is ignored, but not its
      // running out of time or memory: that is counted, and a state out of memory replaced.
      const bool over_limit = r.failure == Failure::Timeout || r.failure == Failure::Memory;
      if (call.exited && !over_limit) {
        lua_settop(L, request);
        if (call.may_answer() && (call.exit_status >= 200 || !call.output.empty())) break;
        call.exited = false;  // ngx.exit(ngx.OK): this function is over, the next one runs
        continue;
      }
      if (!r.ok()) {
        out.failure = r.failure;
        out.message = std::move(r.message);
        out.function = i;
        break;
      }
      // APISIX: a function that returns a status (and a body) answers the request.
      if (call.may_answer() && lua_type(L, -2) == LUA_TNUMBER) {
        int status = static_cast<int>(lua_tointeger(L, -2));
        try {
          if (!answerable_status(status))
            throw std::runtime_error("returned status " + std::to_string(status) +
                                     " (must be 200..599)");
          set_answer(L, call, status, lua_isnil(L, -1) ? 0 : lua_gettop(L));
        } catch (const std::exception& e) {
          out = {Failure::Error, e.what(), i, false};
        }
        break;
      }
      lua_settop(L, request);
      if (!call.output.empty()) break;  // printed without ngx.exit: that is the answer
    }
  }
  lua_settop(L, top);
  if (out.failure == Failure::None && call.may_answer()) out.answered = answer(call);
  if (out.failure == Failure::Memory && sandbox_->exhausted()) start_state();
  return out;
}

}  // namespace portico::plugins::edge
