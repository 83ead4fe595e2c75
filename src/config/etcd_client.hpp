// A small etcd v3 client over etcd's JSON gateway (/v3/kv/*, streaming /v3/watch), used by the
// control thread only. Several endpoints with failover, optional user/password auth and TLS.
// Keys and values are plain strings here; base64 is this module's business.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/node_config.hpp"
#include "core/asio.hpp"

namespace portico::config {

struct EtcdKv {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
};

// A transaction's condition on a key's mod_revision.
struct EtcdCompare {
  enum class Result { Equal, Less };
  std::string key;
  Result result = Result::Equal;
  int64_t mod_revision = 0;  // Equal 0: the key must not exist
};

struct EtcdEvent {
  bool deleted = false;
  EtcdKv kv;  // for a delete: key and mod_revision (the delete's revision)
};

// Any failure talking to etcd: unreachable, timeout, auth, or an error answer.
class EtcdError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A write was sent and no answer came within the timeout: etcd may or may not have applied it.
class EtcdUnanswered : public EtcdError {
 public:
  using EtcdError::EtcdError;
};

// The watch start revision was compacted away: the caller must resync with a full read.
class EtcdCompacted : public EtcdError {
 public:
  explicit EtcdCompacted(int64_t compact_revision)
      : EtcdError("revision compacted (etcd compact revision " + std::to_string(compact_revision) +
                  ")"),
        compact_revision(compact_revision) {}
  int64_t compact_revision;
};

class EtcdClient {
 public:
  struct Range {
    int64_t revision = 0;  // the store's revision when read
    std::vector<EtcdKv> kvs;
    int64_t count = 0;  // keys in the range, also those a limit left out
  };
  struct Write {
    bool succeeded = true;  // false: a put_when/remove_when compare failed
    int64_t revision = 0;   // the store's revision after the write
    int64_t deleted = 0;
    // A failed put_when/remove_when: the newest mod_revision among the keys it compared, so
    // the caller can wait until its view has that change before trying again.
    int64_t conflict_revision = 0;
  };
  // Watch callbacks: `on_created` gets the store revision when the watch starts (to notice a
  // revision going backwards), `on_events` each batch with the batch's header revision.
  struct WatchHandlers {
    std::function<void(int64_t revision)> on_created;
    std::function<void(std::vector<EtcdEvent>& events, int64_t revision)> on_events;
  };

  EtcdClient(Executor ex, EtcdSettings settings);
  ~EtcdClient();

  // Every call throws EtcdError when no endpoint answers within the timeout.
  Task<Range> get(std::string key);
  Task<Range> get_prefix(std::string prefix);
  // At most one key (no value) under `prefix`: a cheap liveness probe that returns the revision.
  Task<Range> first_key(std::string prefix);
  // The key under `prefix` that changed last (no value): its mod_revision is the newest change
  // there. etcd walks the whole prefix to sort it: not for every probe.
  Task<Range> newest_key(std::string prefix);
  Task<Write> put(std::string key, std::string value);
  // Puts, or deletes, only if every compare holds.
  // `touch`: keys also written (empty values) by the same transaction when it applies.
  Task<Write> put_when(std::string key, std::string value, std::vector<EtcdCompare> compares,
                       std::vector<std::string> touch = {});
  Task<Write> remove_when(std::string key, std::vector<EtcdCompare> compares,
                          std::vector<std::string> touch = {});
  // Streams changes under `prefix` from `start_revision` until the connection breaks (throws
  // EtcdError), the revision is compacted (EtcdCompacted) or cancel_watch() is called (returns).
  Task<> watch(std::string prefix, int64_t start_revision, WatchHandlers handlers);
  // Closes the watch connection; a pending watch() returns.
  // Returns whether a watch connection was there to close.
  bool cancel_watch();
  // The endpoint that answered last, for logs and /v1/health.
  const std::string& endpoint() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The end of a prefix range in etcd's sense: the smallest key greater than every key starting
// with `prefix`.
std::string prefix_range_end(const std::string& prefix);
std::string base64_encode(std::string_view in);
bool base64_decode(std::string_view in, std::string& out);

}  // namespace portico::config
