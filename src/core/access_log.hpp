// JSON access log written off the request path: each worker appends lines to its own buffer
// and hands full buffers to one writer thread, so a slow disk never stalls a request.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace portico {

class AccessLogWriter {
 public:
  // target: a file path, "-" for stdout, or "off".
  explicit AccessLogWriter(const std::string& target);
  ~AccessLogWriter();
  AccessLogWriter(const AccessLogWriter&) = delete;
  AccessLogWriter& operator=(const AccessLogWriter&) = delete;

  bool enabled() const { return fd_ >= 0; }
  // Takes the contents of `chunk` (leaves it empty, capacity kept when possible). False when
  // it was dropped instead: a disk that cannot keep up must not grow memory without end.
  bool submit(std::string& chunk);

 private:
  void run();

  int fd_ = -1;
  bool own_fd_ = false;
  std::mutex mutex_;
  std::condition_variable cv_;
  static constexpr size_t kMaxQueuedBytes = 64 << 20;
  std::vector<std::string> queue_;
  size_t queued_bytes_ = 0;
  std::vector<std::string> spare_;  // emptied strings handed back to workers
  bool stop_ = false;
  std::thread thread_;
};

// Escapes `s` into `out` as the inside of a JSON string.
void append_json_escaped(std::string& out, std::string_view s);

}  // namespace portico
