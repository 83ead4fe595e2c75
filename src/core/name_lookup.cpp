#include "core/name_lookup.hpp"

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "config/host_table.hpp"
#include "core/deadline.hpp"

namespace portico {
namespace {

constexpr int64_t kFreshMs = 30'000;
constexpr size_t kMaxNames = 1024;  // names come from the config: a few

struct Lookup {
  std::atomic<bool> done{false};
  NameLookup answer;  // written before `done`
};

struct Entry {
  NameLookup answer;
  int64_t resolved_ms = 0;            // 0: never answered
  std::shared_ptr<Lookup> in_flight;  // a lookup running now
};

// Never destroyed: a lookup thread may still finish after main() returns.
std::mutex& cache_mutex = *new std::mutex;
std::unordered_map<std::string, Entry>& cache = *new std::unordered_map<std::string, Entry>;

// Starts a lookup of `name` unless one runs; returns the running one. Under cache_mutex.
std::shared_ptr<Lookup> start_lookup(const std::string& name, Entry& entry) {
  if (entry.in_flight) return entry.in_flight;
  auto lookup = std::make_shared<Lookup>();
  // Detached: a slow resolver must not hold a shutdown; the thread owns what it touches.
  std::thread thread;
  try {
    thread = std::thread([name, lookup] {
      NameLookup answer;
      answer.addresses = config::resolve_host(name, answer.error);
      std::lock_guard lock(cache_mutex);
      auto it = cache.find(name);
      if (it != cache.end() && it->second.in_flight == lookup) {
        it->second.in_flight = nullptr;
        // A failed lookup keeps the last good answer (the next call tries again).
        if (!answer.addresses.empty() || it->second.resolved_ms == 0) {
          it->second.answer = answer;
          it->second.resolved_ms = answer.addresses.empty() ? 0 : steady_now_ms();
        }
      }
      lookup->answer = std::move(answer);
      lookup->done.store(true, std::memory_order_release);
    });
  } catch (const std::system_error& e) {  // out of threads: this call fails, the next tries
    lookup->answer.error = std::string("cannot start a lookup: ") + e.what();
    lookup->done.store(true, std::memory_order_release);
    return lookup;
  }
  thread.detach();
  entry.in_flight = lookup;
  return lookup;
}

}  // namespace

Task<NameLookup> lookup_name(const std::string& name, double timeout) {
  error_code ec;
  asio::ip::address literal = asio::ip::make_address(name, ec);
  if (!ec) co_return NameLookup{{literal}, {}};
  std::shared_ptr<Lookup> lookup;
  {
    std::lock_guard lock(cache_mutex);
    if (cache.size() >= kMaxNames && !cache.contains(name))
      std::erase_if(cache, [](auto& kv) { return !kv.second.in_flight; });
    Entry& entry = cache[name];
    if (entry.resolved_ms != 0) {
      if (steady_now_ms() - entry.resolved_ms >= kFreshMs) start_lookup(name, entry);
      co_return entry.answer;
    }
    lookup = start_lookup(name, entry);
  }
  // (5 ms polls: only the first call for a name waits here.)
  Timer poll(co_await asio::this_coro::executor);
  const int64_t until = steady_now_ms() + static_cast<int64_t>(timeout * 1000);
  while (!lookup->done.load(std::memory_order_acquire)) {
    if (steady_now_ms() >= until) co_return NameLookup{{}, "timed out resolving " + name};
    poll.expires_after(std::chrono::milliseconds(5));
    co_await poll.async_wait(await_ec);
  }
  co_return lookup->answer;
}

}  // namespace portico
