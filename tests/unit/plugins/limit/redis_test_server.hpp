// A real redis-server (Debian's /usr/bin/redis-server, or $REDIS_SERVER) for unit tests: a free
// loopback port, a temp dir, no persistence; stopped (and restartable on the same port) by the
// PID it started. Plus a blocking run() for driving coroutines from a test.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/asio.hpp"
#include "plugins/limit/redis_client.hpp"

extern char** environ;

namespace portico::testing {

// Runs `task` on `io` until it completes (other work on `io`, like a client's read loop, stays
// queued for the next run).
template <class T>
T run(asio::io_context& io, Task<T> task) {
  std::optional<T> result;
  std::exception_ptr error;
  asio::co_spawn(io.get_executor(), std::move(task), [&](std::exception_ptr e, T value) {
    error = e;
    result = std::move(value);
    io.stop();
  });
  io.restart();
  io.run();
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

class RedisTestServer {
 public:
  explicit RedisTestServer(std::string requirepass = "") : requirepass_(std::move(requirepass)) {
    dir_ = std::filesystem::temp_directory_path() /
           ("portico-redis-" + std::to_string(::getpid()) + "-" + std::to_string(next_id()));
    std::filesystem::create_directories(dir_);
    port_ = free_port();
    start();
  }
  ~RedisTestServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  uint16_t port() const { return port_; }
  bool running() const { return pid_ > 0; }

  void start() {
    if (pid_ > 0) return;
    const char* bin = std::getenv("REDIS_SERVER");
    std::vector<std::string> args = {bin ? bin : "/usr/bin/redis-server",
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--dir",
                                     dir_.string(),
                                     "--logfile",
                                     (dir_ / "redis.log").string()};
    if (!requirepass_.empty()) {
      args.push_back("--requirepass");
      args.push_back(requirepass_);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
      pid_ = 0;
      throw std::runtime_error("cannot start redis-server");
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (answers_ping()) return;
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        throw std::runtime_error("redis-server exited at start-up");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop();
    throw std::runtime_error("redis-server not ready after 10 s");
  }

  // SIGTERM to the process we started, then wait for it (SIGKILL after 5 s).
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 500; ++i) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }

 private:
  static int next_id() {
    static int id = 0;
    return ++id;
  }

  // A port below the ephemeral range (one from bind(0) could be taken by an outgoing
  // connection before redis-server binds it), free right now.
  static uint16_t free_port() {
    int ephemeral_low = 32768;
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    range >> ephemeral_low;
    const int low = std::max(1024, ephemeral_low - 12000);
    std::mt19937 rng(std::random_device{}());
    for (int attempt = 0; attempt < 500; ++attempt) {
      int port = low + static_cast<int>(rng() % static_cast<unsigned>(ephemeral_low - low));
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
      ::close(fd);
      if (ok) return static_cast<uint16_t>(port);
    }
    throw std::runtime_error("no free loopback port");
  }

  // Any RESP answer to PING (+PONG, or -NOAUTH with requirepass) means it serves.
  bool answers_ping() const {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval one_second{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &one_second, sizeof(one_second));
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        ::write(fd, "PING\r\n", 6) == 6) {
      char c;
      ok = ::read(fd, &c, 1) == 1 && (c == '+' || c == '-');
    }
    ::close(fd);
    return ok;
  }

  std::string requirepass_;
  std::filesystem::path dir_;
  uint16_t port_ = 0;
  pid_t pid_ = 0;
};

// A test with a Redis server of its own and one client on a test-driven io_context: for the
// scripts' tests (limit-count's counters, limit-req's bucket).
class RedisScriptTest : public ::testing::Test {
 protected:
  using Args = std::vector<std::string>;

  limit::RedisReply call(Args args) {
    limit::RedisResult r = run(io_, client_.command(std::move(args)));
    EXPECT_TRUE(r.ok()) << r.error;
    return r.reply;
  }
  // Redis's clock, in ms.
  int64_t redis_now_ms() {
    limit::RedisReply t = call({"TIME"});
    return std::stoll(t.elements[0].str) * 1000 + std::stoll(t.elements[1].str) / 1000;
  }
  static limit::RedisSettings settings_for(uint16_t port) {
    limit::RedisSettings s;
    s.port = port;
    s.timeout_ms = 1000;
    return s;
  }

  RedisTestServer server_;
  asio::io_context io_{1};
  limit::RedisClient client_{io_.get_executor(), settings_for(server_.port())};
};

}  // namespace portico::testing
