// The process: workers plus the control thread (this one), which loads and compiles config,
// publishes snapshots, watches the routes file, and handles signals (TERM/INT drain, HUP reload).
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/etcd_source.hpp"
#include "config/node_config.hpp"
#include "config/object_store.hpp"
#include "config/snapshot.hpp"
#include "core/access_log.hpp"
#include "core/asio.hpp"
#include "core/retired_snapshots.hpp"
#include "core/snapshot_compiler.hpp"
#include "core/worker.hpp"
#include "upstream/health_checker.hpp"

namespace portico {

namespace admin {
class HttpService;
class AdminApi;
class ControlApi;
}  // namespace admin

class Server {
 public:
  explicit Server(config::NodeConfig node);
  ~Server();
  // Runs until drained after SIGTERM/SIGINT. Returns the process exit code.
  int run();

 private:
  struct FileStamp {
    int64_t mtime_ns = 0;
    int64_t size = -1;
    uint64_t inode = 0;
    bool operator==(const FileStamp&) const = default;
  };
  static FileStamp stamp(const std::string& path);
  // Whether a file whose stamp changed from `applied` may be read now: once it has stayed the
  // same from one poll to the next (`pending` holds the stamp seen last). An editor truncates
  // then writes, other tools create then write: a half-written routes.yaml can be valid YAML
  // with fewer routes. Not by mtime: file systems with whole-second stamps, and writers whose
  // clock is behind ours (NFS, bind mounts from another machine), would make a fresh one look
  // old.
  static bool settled(const FileStamp& now, const FileStamp& applied, FileStamp& pending);

  std::shared_ptr<const config::Snapshot> share(std::unique_ptr<config::Snapshot> snap);
  bool reload(const std::string& why);
  void warn_restart_only_changes(const config::NodeConfig& next) const;
  void publish(std::shared_ptr<const config::Snapshot> snap);
  void start_workers(std::shared_ptr<const config::Snapshot> first);
  void start_apis();
  Task<> start_from_etcd();
  // etcd mode: coalesces store changes into one compile on the control thread.
  void schedule_rebuild(const char* why = "etcd change");
  // A host name of a node resolves to other addresses now (host_refresh.hpp).
  void rebuild_for_host_names();
  // Store -> snapshot on the compile thread; objects with missing references are left out (and
  // logged once). The first compile starts the workers. `then` runs after publishing.
  void rebuild_from_store(const std::string& why, std::function<void(bool ok)> then = {});
  bool start_workers_or_stop(std::shared_ptr<const config::Snapshot> first);
  Task<> watch_compiles();
  Task<> reap_snapshots();
  // Logs each object left out (a missing reference) once, not on every later change.
  void log_new_problems(const config::Errors& problems);
  config::ConfigSourceStatus source_status() const;
  void log_applied(const std::string& why, std::chrono::steady_clock::time_point started,
                   std::chrono::milliseconds compile);
  Task<> watch_files();
  Task<> handle_signals();
  Task<> drain();

  // Declared first so it outlives the workers: retired snapshots are deleted on this thread.
  asio::io_context control_;
  RetiredSnapshots retired_;  // outlives the workers and everything holding snapshots
  config::NodeConfig node_;
  int worker_count_ = 1;
  std::unique_ptr<AccessLogWriter> access_log_;
  std::vector<std::unique_ptr<Worker>> workers_;
  config::ObjectStore store_;  // the objects being served (file or etcd)
  std::unique_ptr<config::EtcdSource> etcd_;
  std::unique_ptr<SnapshotCompiler> compiler_;  // etcd mode
  std::unique_ptr<upstream::HealthChecker> checker_;
  config::ConfigSourceStatus file_status_;  // yaml mode
  config::CompileCache yaml_cache_;         // yaml mode: upstreams a rebuild may keep
  std::shared_ptr<const config::Snapshot> current_;
  std::unique_ptr<admin::AdminApi> admin_api_;
  std::unique_ptr<admin::ControlApi> control_api_;
  std::unique_ptr<admin::HttpService> admin_http_;
  std::unique_ptr<admin::HttpService> control_http_;
  std::set<std::string> last_problems_;  // etcd mode: reference problems already logged
  bool rebuild_posted_ = false;          // a rebuild is posted to run after the current handler
  bool rebuild_dirty_ = false;           // the store changed since the last compile started
  bool compile_in_flight_ = false;
  std::chrono::steady_clock::time_point next_compile_{};  // pacing, see schedule_rebuild()
  int exit_code_ = 0;
  uint64_t version_ = 0;
  FileStamp routes_stamp_;
  FileStamp config_stamp_;
  FileStamp routes_pending_;  // changed in place, waiting to settle (settled())
  FileStamp config_pending_;
  bool draining_ = false;
};

}  // namespace portico
