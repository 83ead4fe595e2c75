// The Lua state edge functions run in: LuaJIT with its JIT compiler off (the count hook that
// enforces the time limit never fires inside compiled traces), a counting allocator that
// enforces a memory limit, and a safe subset of the standard library copied into a fresh
// environment for every chunk, so that one route's globals never reach another's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

struct lua_State;
struct lua_Debug;

namespace portico::plugins::edge {

enum class Failure { None, Error, Timeout, Memory };
// "error", "timeout", "memory": the metric label.
const char* failure_name(Failure f);

struct CallResult {
  Failure failure = Failure::None;
  std::string message;  // what went wrong (the Lua error), empty on success
  bool ok() const { return failure == Failure::None; }
};

// The memory one owner's allocations hold in the state: the compiled functions of one plugin
// instance, with their upvalues and what they allocate while they run. Every block carries a
// pointer to the account it is charged to, so a block freed by the collector later is taken off
// the right account whoever runs then.
struct MemoryAccount {
  size_t bytes = 0;
  size_t blocks = 0;
  bool closed = false;  // no new charges; reused once its last block is freed
  // Past its share, judged again only above this (set after a check that passed): an account
  // that lives just under its share would otherwise pay a full collection every few KiB.
  size_t check_at = 0;
  MemoryAccount* next_free = nullptr;
};

class LuaSandbox {
 public:
  explicit LuaSandbox(size_t memory_limit);
  ~LuaSandbox();
  LuaSandbox(const LuaSandbox&) = delete;
  LuaSandbox& operator=(const LuaSandbox&) = delete;

  lua_State* state() const { return L_; }

  // Adds the value on top of the stack (popped) to what every new environment gets: a global,
  // or a module that the environment's `require` returns. Tables are copied into each
  // environment (nested plain tables too); metatables are shared, so proxies keep working.
  void add_global(const char* name);
  void add_module(const char* name);

  // Compiles `source` as loadstring() would (text only: precompiled bytecode is refused) and
  // gives the chunk a new environment. Pushes the chunk on success; nothing on failure.
  CallResult load(std::string_view source, const std::string& chunk_name);
  // Pushes a new environment: copies of the safe globals, `_G` naming itself, and `require`.
  void push_environment();

  // Calls the function below its `nargs` arguments on the stack with the memory limit enforced
  // and the time budget of start_clock. Leaves `nresults` values on success (LUA_MULTRET
  // allowed), none on failure. The time is wall time: a worker is one thread, so it is the CPU
  // time the call takes unless the machine is overloaded.
  CallResult call(int nargs, int nresults);
  // Starts the time budget that call() checks; a phase run starts it once for all its calls.
  void start_clock(double seconds);
  // For C functions that can run long (digests, JSON): raises the time-limit error when the
  // budget ran out while they ran, since the count hook only looks between VM instructions.
  static void check_clock(lua_State* L);
  // Loops in C over what a function built (lists to print, arguments to encode, a pattern
  // match's backtracking) run without the instruction hook: a list that holds one sublist a
  // hundred times, sixteen levels deep, is 100^16 steps. They call this per step; it looks at
  // the clock every 1024 calls, so the time limit holds there too.
  static void count_step(lua_State* L);

  // Accounts: new blocks are charged to the one set by charge_to (the state's own when null);
  // a block keeps its account when it grows or shrinks. One account may hold at most half the
  // limit (share_limit): past that, after a full collection, the running function fails with a
  // memory error, so one plugin's functions cannot take the room the others need.
  MemoryAccount* open_account();
  void close_account(MemoryAccount* account);
  void charge_to(MemoryAccount* account) { charged_ = account ? account : &own_; }
  size_t share_limit() const { return limit_ / 2; }
  // The last call failed because its account passed the share (not the state's limit).
  bool over_share() const { return over_share_; }
  // A full collection, with nothing charged to a plugin and no limit (the collector may need
  // a block itself).
  void collect();

  size_t memory_used() const { return used_; }
  size_t memory_limit() const { return limit_; }
  void set_memory_limit(size_t bytes) {
    if (bytes != limit_) collect_at_ = 0;
    limit_ = bytes;
  }
  // After a memory failure the state is collected; when live data still fills more than half
  // the limit (functions keep growing tables), the owner should drop what holds the most.
  bool exhausted() const { return used_ > limit_ / 2; }

 private:
  static void* allocate(void* self, void* block, size_t old_size, size_t new_size);
  static void count_hook(lua_State* L, lua_Debug* ar);
  [[noreturn]] void time_out(lua_State* L);
  void collect_if_needed();
  size_t collect_threshold() const;
  void check_share(lua_State* L);
  bool past_share();
  std::string share_message() const;
  void debit(MemoryAccount* account, size_t bytes);
  void open_safe_libraries();
  void copy_value(int index, int depth);

  lua_State* L_ = nullptr;
  size_t used_ = 0;
  size_t limit_;
  size_t collect_at_ = 0;    // past this, the hook runs a full collection (0: limit_ / 2)
  bool enforce_ = false;     // the limit applies while user code runs (never during GC/setup)
  bool refused_ = false;     // the allocator said no during this call
  bool timed_out_ = false;   // the hook fired past the deadline during this call
  bool calling_ = false;     // inside call(): the hook is armed
  bool look_soon_ = false;   // a collection or a share check is due: the hook looks next
  bool over_share_ = false;  // ... and still held it after a collection: the call failed
  size_t over_share_bytes_ = 0;
  int64_t deadline_ns_ = 0;    // monotonic
  double budget_seconds_ = 0;  // for the message
  MemoryAccount own_;          // the libraries, the API, per-request tables' creation
  MemoryAccount* charged_ = &own_;
  std::deque<MemoryAccount> accounts_;  // stable addresses
  // Closed with no blocks left, linked through next_free (the allocator must not allocate).
  MemoryAccount* reusable_ = nullptr;
  int globals_ref_ = -1;  // registry: the template environment
  int modules_ref_ = -1;  // registry: name -> module table, for `require`
};

}  // namespace portico::plugins::edge
