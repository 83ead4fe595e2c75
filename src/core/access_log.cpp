#include "core/access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "core/hex.hpp"

namespace portico {

AccessLogWriter::AccessLogWriter(const std::string& target) {
  if (target == "off") return;
  if (target == "-") {
    fd_ = STDOUT_FILENO;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(target).parent_path(), ec);
    fd_ = ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw std::runtime_error("cannot open " + target + " for appending: " + std::strerror(errno));
    own_fd_ = true;
  }
  thread_ = std::thread([this] { run(); });
}

AccessLogWriter::~AccessLogWriter() {
  if (thread_.joinable()) {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  if (own_fd_) ::close(fd_);
}

bool AccessLogWriter::submit(std::string& chunk) {
  if (chunk.empty() || fd_ < 0) return true;
  std::string replacement;
  {
    std::lock_guard lock(mutex_);
    if (queued_bytes_ + chunk.size() > kMaxQueuedBytes) {
      chunk.clear();
      return false;
    }
    queued_bytes_ += chunk.size();
    queue_.push_back(std::move(chunk));
    if (!spare_.empty()) {
      replacement = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  cv_.notify_one();
  chunk = std::move(replacement);
  chunk.clear();
  return true;
}

void AccessLogWriter::run() {
  std::vector<std::string> batch;
  while (true) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty() && stop_) return;
      batch.swap(queue_);
      queued_bytes_ = 0;
    }
    for (auto& s : batch) {
      size_t off = 0;
      while (off < s.size()) {
        ssize_t n = ::write(fd_, s.data() + off, s.size() - off);
        if (n <= 0) break;  // disk full or closed: drop rather than block workers
        off += static_cast<size_t>(n);
      }
      s.clear();
    }
    std::lock_guard lock(mutex_);
    for (auto& s : batch)
      if (spare_.size() < 16) spare_.push_back(std::move(s));
    batch.clear();
  }
}

void append_json_escaped(std::string& out, std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\u00";
      out.push_back(hex::kDigits[u >> 4]);
      out.push_back(hex::kDigits[u & 15]);
    } else {
      out.push_back(c);  // bytes >= 0x80 pass as-is; the log is UTF-8 when the input is
    }
  }
}

}  // namespace portico
