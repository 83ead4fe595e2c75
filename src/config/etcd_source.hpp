// Keeps an ObjectStore in step with etcd: one full read of the prefix, then one watch for the
// whole process from the next revision. Compaction or a revision going backwards (etcd restored
// from a backup) means a full resync; a lost connection means reconnecting with exponential
// backoff and jitter while the last good objects keep serving. A value that fails validation is
// logged and skipped; the key's previous good version, if any, stays.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "config/etcd_client.hpp"
#include "config/object_store.hpp"
#include "core/asio.hpp"

namespace portico::config {

struct ConfigSourceStatus {
  bool reachable = false;
  bool synced = false;   // at least one full read succeeded
  int64_t revision = 0;  // the last etcd revision applied
  uint64_t skipped = 0;  // invalid values skipped since start
  uint64_t resyncs = 0;
  std::string last_error;  // empty while healthy
};

class EtcdSource {
 public:
  // `changed` runs (on the control thread) after the store changed.
  EtcdSource(Executor ex, EtcdSettings settings, ObjectStore& store, std::function<void()> changed);
  ~EtcdSource();

  // Reads the whole prefix, retrying with backoff until it works or `timeout_s` passes.
  // Returns false on timeout (last_error says why).
  Task<bool> initial_sync(double timeout_s);
  // Watches (and resyncs, reconnects) until stop().
  Task<> run();
  void stop();

  const ConfigSourceStatus& status() const { return status_; }
  EtcdClient& client() { return client_; }
  const std::string& prefix() const { return settings_.prefix; }
  std::string key(Kind kind, const std::string& id) const;

 private:
  Task<> full_sync();
  void apply(std::vector<EtcdEvent>& events, int64_t revision);
  bool apply_put(ObjectStore& store, const EtcdKv& kv, const ObjectStore* previous);
  Task<> probe_loop();
  Task<> check_watch_delivers(int64_t known);
  void restart_watch(const std::string& why);
  Task<> sleep_backoff(std::chrono::steady_clock::time_point not_after =
                           std::chrono::steady_clock::time_point::max());
  void note_failure(const std::string& error);
  void note_reachable();

  Executor ex_;
  EtcdSettings settings_;
  EtcdClient client_;
  ObjectStore& store_;
  std::function<void()> changed_;
  ConfigSourceStatus status_;
  std::chrono::milliseconds backoff_;
  bool need_full_sync_ = true;
  bool restarting_watch_ = false;  // the probe closed a dead watch: not an outage
  int64_t undelivered_ = 0;  // a change under the prefix the watch had not delivered at a probe
  int64_t keys_ = 0;         // keys under the prefix at status_.revision (ours or not)
  // A probe found etcd holding another number of keys than the watch accounts for (a delete
  // not delivered) while the watch was at this revision; -1: no doubt.
  int64_t miscounted_at_ = -1;
  int64_t recounted_at_ = -1;  // the watch was restarted for a miscount at this revision
  std::chrono::steady_clock::time_point last_watch_check_{};
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace portico::config
