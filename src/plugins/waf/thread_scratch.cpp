#include "plugins/waf/thread_scratch.hpp"

#include <mutex>
#include <stdexcept>

namespace portico::plugins::waf {

namespace {

// Config compiles only (never the request path) take this lock.
std::mutex registry_mutex;
std::shared_ptr<const ScratchPrototype> latest_prototype;
uint64_t last_epoch = 0;

struct ThreadScratch {
  hs_scratch_t* scratch = nullptr;
  uint64_t epoch = 0;  // the prototype it was cloned from; 0: none yet
  ~ThreadScratch() { hs_free_scratch(scratch); }
};
thread_local ThreadScratch this_thread;

}  // namespace

std::shared_ptr<const ScratchPrototype> register_databases(
    std::initializer_list<const hs_database_t*> databases) {
  std::lock_guard lock(registry_mutex);
  // A new prototype grown from the latest: every database registered so far stays covered,
  // which is what lets a thread's epoch stand for "everything up to here".
  hs_scratch_t* scratch = nullptr;
  if (latest_prototype && hs_clone_scratch(latest_prototype->scratch(), &scratch) != HS_SUCCESS)
    throw std::runtime_error("vectorscan: cannot allocate scratch");
  for (const hs_database_t* db : databases) {
    if (db && hs_alloc_scratch(db, &scratch) != HS_SUCCESS) {
      hs_free_scratch(scratch);
      throw std::runtime_error("vectorscan: cannot allocate scratch");
    }
  }
  if (!scratch) return latest_prototype;
  latest_prototype = std::make_shared<const ScratchPrototype>(scratch, ++last_epoch);
  return latest_prototype;
}

hs_scratch_t* thread_scratch(const ScratchPrototype& prototype) {
  ThreadScratch& mine = this_thread;
  if (mine.epoch >= prototype.epoch()) return mine.scratch;
  hs_scratch_t* fresh = nullptr;
  if (hs_clone_scratch(prototype.scratch(), &fresh) != HS_SUCCESS) return nullptr;
  hs_free_scratch(mine.scratch);
  mine.scratch = fresh;
  mine.epoch = prototype.epoch();
  return fresh;
}

}  // namespace portico::plugins::waf
