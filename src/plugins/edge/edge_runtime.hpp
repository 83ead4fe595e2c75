// Where edge functions run: one Lua state per thread (a worker is one thread, so the request
// path takes no lock), the functions of each plugin instance compiled there on first use, and
// the per-request tables behind ngx.ctx.
//
// Caching: a FunctionSet (the immutable part of a plugin instance) has one slot per runtime
// naming its compiled functions in that runtime's state. When the set dies (a config change
// dropped its instance), it hands each filled slot back to its runtime, which releases it at its
// next run: config changes cannot grow the states.
//
// Memory: the state is shared by every route's functions (so ngx.ctx is one table for a
// request's global rules and route), but each set's compiled functions have their own memory
// account. A set that holds more than half the state's limit fails on its own; when the state
// still runs out, the sets holding the most are dropped (they compile again on next use) until
// live data is under half the limit, instead of starting the whole state over.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "config/field_reader.hpp"
#include "plugins/edge/lua_sandbox.hpp"
#include "plugins/edge/phase_call.hpp"

namespace portico::plugins::edge {

// Runtimes (threads) with a cache slot in every FunctionSet; later ones compile on every run.
inline constexpr size_t kMaxCachingRuntimes = 64;

class FunctionSet {
 public:
  // `conf` is what the functions get as their first argument (the plugin's config); `label`
  // names the set in log lines (the config path of the plugin).
  FunctionSet(std::vector<std::string> sources, config::json conf, std::string label = {});
  ~FunctionSet();
  FunctionSet(const FunctionSet&) = delete;
  FunctionSet& operator=(const FunctionSet&) = delete;

  const std::vector<std::string>& sources() const { return sources_; }
  const config::json& conf() const { return conf_; }
  const std::string& label() const { return label_; }

 private:
  friend class Runtime;
  std::vector<std::string> sources_;
  config::json conf_;
  std::string label_;
  // Per runtime: (serial << 32) | index of its entry in the runtime's compiled list; 0 when not
  // compiled there. Written
  // by that runtime's thread only; read by whichever thread destroys the set (after the last
  // reference, so it sees every write).
  mutable std::array<std::atomic<uint64_t>, kMaxCachingRuntimes> slots_{};
};

struct Outcome {
  Failure failure = Failure::None;
  std::string message;    // the Lua error of a failure
  size_t function = 0;    // the index in `functions` of the one that failed
  bool answered = false;  // rewrite/access/before_proxy: ctx.reply holds the answer
};

class Charge;  // edge_runtime.cpp

class Runtime {
 public:
  // This thread's runtime, made on first use.
  static Runtime& current();
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Config validation: compiles `source` and runs the chunk once under the limits (APISIX
  // runs it too); it must return a function. Empty when fine, else the error.
  std::string check(const std::string& source, double seconds);

  // Runs the set's functions as f(conf, ctx) for one phase of the request, with `seconds` for
  // all of them together. Stops at the first failure or answer.
  Outcome run(const FunctionSet& set, Phase phase, Context& ctx, std::string* body, double seconds);

  LuaSandbox& sandbox() { return *sandbox_; }
  uint32_t epoch() const { return epoch_; }
  // For RequestState: releases a per-request table made in this runtime's current state.
  void release(uint32_t epoch, int ref);
  // The bytes the set's compiled functions hold here (0 when not compiled here).
  size_t memory_of(const FunctionSet& set) const;

 private:
  // A set's functions compiled in this state: {conf = ..., f1, ..., fn} in the registry.
  struct Compiled {
    uint32_t serial = 0;  // 0: a free entry
    int ref = -1;
    MemoryAccount* account = nullptr;
    std::string label;
  };

  Runtime();
  void start_state();
  void drain_retired();
  const Compiled* compiled(uint64_t slot) const;
  void forget(uint64_t slot);
  void drop(uint32_t index, const char* why);
  void make_room();
  bool push_functions(const FunctionSet& set, Outcome& out, Charge& charge);
  RequestFacts& request_facts(Context& ctx);

  std::unique_ptr<LuaSandbox> sandbox_;
  uint32_t index_;
  uint32_t epoch_ = 0;  // bumped each time the state is replaced
  std::vector<Compiled> compiled_;
  std::vector<uint32_t> free_entries_;
  uint32_t next_serial_ = 1;  // never reused: a dead set's slot cannot name a newer entry
};

}  // namespace portico::plugins::edge
