// The process: workers plus the control thread (this one), which loads and compiles config,
// publishes snapshots, watches the routes file, and handles signals (TERM/INT drain, HUP reload).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/node_config.hpp"
#include "config/snapshot.hpp"
#include "core/access_log.hpp"
#include "core/asio.hpp"
#include "core/worker.hpp"

namespace portico {

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

  std::shared_ptr<const config::Snapshot> share(std::unique_ptr<config::Snapshot> snap);
  bool reload(const std::string& why);
  void publish(std::shared_ptr<const config::Snapshot> snap);
  Task<> watch_files();
  Task<> handle_signals();
  Task<> drain();

  // Declared first so it outlives the workers: retired snapshots are deleted on this thread.
  asio::io_context control_;
  config::NodeConfig node_;
  int worker_count_ = 1;
  std::unique_ptr<AccessLogWriter> access_log_;
  std::vector<std::unique_ptr<Worker>> workers_;
  uint64_t version_ = 0;
  FileStamp routes_stamp_;
  FileStamp config_stamp_;
  bool draining_ = false;
};

}  // namespace portico
