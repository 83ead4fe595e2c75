// Vectorscan scratch space for worker threads. A scan needs scratch grown for its database; each
// thread keeps one, refreshed (lock-free) from an immutable prototype when a database compiled
// after the thread's last refresh shows up, so the request path never calls hs_alloc_scratch.
#pragma once

#include <hs/hs.h>

#include <cstdint>
#include <initializer_list>
#include <memory>

namespace portico::plugins::waf {

// Scratch valid for every database registered up to and including `epoch`. Immutable once
// published, so any thread may clone it.
class ScratchPrototype {
 public:
  ScratchPrototype(hs_scratch_t* scratch, uint64_t epoch) : scratch_(scratch), epoch_(epoch) {}
  ~ScratchPrototype() { hs_free_scratch(scratch_); }
  ScratchPrototype(const ScratchPrototype&) = delete;
  ScratchPrototype& operator=(const ScratchPrototype&) = delete;

  const hs_scratch_t* scratch() const { return scratch_; }
  uint64_t epoch() const { return epoch_; }

 private:
  hs_scratch_t* scratch_;
  uint64_t epoch_;
};

// Config-compile time: grows the process-wide prototype for `databases` (nulls skipped) and
// returns it; a policy keeps it alive. Throws std::runtime_error if Vectorscan cannot allocate.
std::shared_ptr<const ScratchPrototype> register_databases(
    std::initializer_list<const hs_database_t*> databases);

// Request path: this thread's scratch, valid for every database the prototype covers. Clones
// the prototype only when it is newer than what the thread has (after a config change); nullptr
// if that allocation fails.
hs_scratch_t* thread_scratch(const ScratchPrototype& prototype);

}  // namespace portico::plugins::waf
