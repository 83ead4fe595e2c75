#include "plugins/edge/edge_runtime.hpp"

#include <lua.hpp>

#include <algorithm>
#include <mutex>

#include "config/node_config.hpp"
#include "core/log.hpp"
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

uint64_t pack(uint32_t serial, uint32_t index) { return (uint64_t{serial} << 32) | index; }
uint32_t serial_of(uint64_t slot) { return static_cast<uint32_t>(slot >> 32); }
uint32_t index_of(uint64_t slot) { return static_cast<uint32_t>(slot); }

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

// What the state allocates while a set compiles or runs is charged to the set's account; the
// state's own account again after, also when an exception unwinds. An account no cache entry
// owns (a config check, a runtime that does not cache, a compile that failed) is closed with it.
class Charge {
 public:
  explicit Charge(LuaSandbox& sandbox) : sandbox_(sandbox) {}
  ~Charge() { end(); }
  Charge(const Charge&) = delete;
  Charge& operator=(const Charge&) = delete;
  void begin(MemoryAccount* account, bool owned) {
    end();
    account_ = account;
    owned_ = owned;
    sandbox_.charge_to(account_);
  }
  void adopt() { owned_ = true; }  // a cache entry owns the account now
  MemoryAccount* account() const { return account_; }
  void end() {
    if (!account_) return;
    sandbox_.charge_to(nullptr);
    if (!owned_) sandbox_.close_account(account_);
    account_ = nullptr;
  }

 private:
  LuaSandbox& sandbox_;
  MemoryAccount* account_ = nullptr;
  bool owned_ = false;
};

FunctionSet::FunctionSet(std::vector<std::string> sources, config::json conf, std::string label)
    : sources_(std::move(sources)), conf_(std::move(conf)), label_(std::move(label)) {}

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
  compiled_.clear();  // the accounts die with the state
  free_entries_.clear();
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
  for (uint64_t slot : slots) forget(slot);
}

const Runtime::Compiled* Runtime::compiled(uint64_t slot) const {
  uint32_t i = index_of(slot);
  if (slot == 0 || i >= compiled_.size() || compiled_[i].serial != serial_of(slot)) return nullptr;
  return &compiled_[i];
}

void Runtime::forget(uint64_t slot) {
  if (!compiled(slot)) return;  // from a state since replaced
  Compiled& entry = compiled_[index_of(slot)];
  luaL_unref(sandbox_->state(), LUA_REGISTRYINDEX, entry.ref);
  sandbox_->close_account(entry.account);
  entry = Compiled{};
  free_entries_.push_back(index_of(slot));
}

size_t Runtime::memory_of(const FunctionSet& set) const {
  if (index_ >= kMaxCachingRuntimes) return 0;
  const Compiled* entry = compiled(set.slots_[index_].load(std::memory_order_relaxed));
  return entry ? entry->account->bytes : 0;
}

void Runtime::drop(uint32_t i, const char* why) {
  const Compiled& entry = compiled_[i];
  log::warn("edge functions: " + std::string(why) + ": dropped the compiled functions of " +
            (entry.label.empty() ? std::string("a plugin") : entry.label) + " (holding " +
            std::to_string(entry.account->bytes >> 10) +
            " KiB); they start over at their next use. Raise edge_functions.memory_limit if "
            "this repeats");
  forget(pack(entry.serial, i));
}

// After a memory failure (the state has been collected): while live data fills more than half
// the limit, drop the compiled sets holding the most, largest first. They compile again on their
// next use; the others keep their upvalues. Only when that is not enough (per-request tables of
// requests in flight hold the rest) does the state start over.
void Runtime::make_room() {
  sandbox_->collect();  // what a set dropped just before is garbage now
  if (!sandbox_->exhausted()) return;
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < compiled_.size(); ++i)
    if (compiled_[i].serial != 0) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return compiled_[a].account->bytes > compiled_[b].account->bytes;
  });
  size_t live = sandbox_->memory_used();
  const size_t target = sandbox_->memory_limit() / 2;
  for (uint32_t i : order) {
    if (live <= target) break;
    live -= std::min(live, compiled_[i].account->bytes);
    drop(i, "this worker's Lua state is full");
  }
  sandbox_->collect();
  if (!sandbox_->exhausted()) return;
  log::warn("edge functions: this worker's Lua state is still full; starting a new one");
  start_state();
}

// Pushes the set's compiled table {conf = ..., f1, ..., fn}, compiling it on first use, and
// starts charging the set's account.
bool Runtime::push_functions(const FunctionSet& set, Outcome& out, Charge& charge) {
  lua_State* L = sandbox_->state();
  const bool caching = index_ < kMaxCachingRuntimes;
  if (caching) {
    if (const Compiled* entry = compiled(set.slots_[index_].load(std::memory_order_relaxed))) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, entry->ref);
      charge.begin(entry->account, true);
      return true;
    }
  }
  charge.begin(sandbox_->open_account(), false);
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
    uint32_t i = static_cast<uint32_t>(compiled_.size());
    if (!free_entries_.empty()) {
      i = free_entries_.back();
      free_entries_.pop_back();
    } else {
      compiled_.emplace_back();
    }
    lua_pushvalue(L, -1);
    compiled_[i] = {next_serial_++, luaL_ref(L, LUA_REGISTRYINDEX), charge.account(), set.label()};
    if (next_serial_ == 0) next_serial_ = 1;
    set.slots_[index_].store(pack(compiled_[i].serial, i), std::memory_order_release);
    charge.adopt();
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
  // Charged like a set, so the chunk's top level is held to the same share.
  Charge charge(*sandbox_);
  charge.begin(sandbox_->open_account(), false);
  CallResult r = sandbox_->load(source, source);
  if (r.ok()) r = sandbox_->call(0, 1);
  if (r.ok() && !lua_isfunction(L, -1))
    r = {Failure::Error,
         std::string("only accept Lua function, the input code type is ") + luaL_typename(L, -1)};
  lua_settop(L, top);
  charge.end();
  if (r.failure == Failure::Memory) make_room();
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
  Charge charge(*sandbox_);
  if (push_functions(set, out, charge)) {
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
      // running out of time or memory: that is counted, and memory made room for (make_room).
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
  charge.end();
  if (out.failure == Failure::None && call.may_answer()) out.answered = answer(call);
  if (out.failure == Failure::Memory) {
    // Over its share: most likely its upvalues keep growing; it starts over, alone.
    const uint64_t slot =
        index_ < kMaxCachingRuntimes ? set.slots_[index_].load(std::memory_order_relaxed) : 0;
    if (sandbox_->over_share() && compiled(slot))
      drop(index_of(slot), "functions over half of edge_functions.memory_limit");
    make_room();
  }
  return out;
}

}  // namespace portico::plugins::edge
