#include "core/server.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <thread>

#include "core/log.hpp"
#include "http/client_session.hpp"

namespace portico {

namespace {
constexpr auto kWatchInterval = std::chrono::milliseconds(500);
constexpr int kControlNice = 10;

// The control thread allocates and frees hundreds of MB when it compiles a big config. Sharing
// an allocator arena (and its locks) with a worker would slow that worker down meanwhile, so
// this thread gets an arena of its own.
void isolate_control_allocations() {
  unsigned arena = 0;
  size_t len = sizeof(arena);
  if (mallctl("arenas.create", &arena, &len, nullptr, 0) != 0 ||
      mallctl("thread.arena", nullptr, nullptr, &arena, sizeof(arena)) != 0)
    log::warn("could not give the control thread its own allocator arena");
}

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}
}  // namespace

Server::Server(config::NodeConfig node) : node_(std::move(node)) {
  worker_count_ = node_.workers > 0
                      ? node_.workers
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

Server::~Server() {
  for (auto& w : workers_) w->stop();
  workers_.clear();
}

Server::FileStamp Server::stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
          static_cast<int64_t>(st.st_size), static_cast<uint64_t>(st.st_ino)};
}

std::shared_ptr<const config::Snapshot> Server::share(std::unique_ptr<config::Snapshot> snap) {
  snap->version = ++version_;
  // The last worker to let go of a snapshot must not pay for freeing 50k routes: deletion is
  // handed back to this (control) thread.
  return std::shared_ptr<const config::Snapshot>(snap.release(), [this](const config::Snapshot* s) {
    asio::post(control_, [owned = std::unique_ptr<const config::Snapshot>(s)] {});
  });
}

void Server::publish(std::shared_ptr<const config::Snapshot> snap) {
  for (auto& w : workers_) w->publish(snap);
}

bool Server::reload(const std::string& why) {
  auto started = std::chrono::steady_clock::now();
  config::Errors errors;
  config::NodeConfig next = config::load_node_config(node_.path, errors);
  if (!errors.empty()) {
    log::error("config reload (" + why + ") rejected, " + node_.path +
               " has errors; keeping the running config:\n" + errors.to_string());
    return false;
  }
  auto snap = config::load_snapshot(next.routes_file, next.http, worker_count_, errors);
  if (!snap) {
    log::error("config reload (" + why + ") rejected, " + next.routes_file +
               " has errors; keeping the running config:\n" + errors.to_string());
    return false;
  }
  if (next.listen.size() != node_.listen.size() || next.workers != node_.workers)
    log::warn("node.listen and node.workers changes take effect after a restart");
  size_t routes = snap->routes.size();
  next.listen = node_.listen;
  next.workers = node_.workers;
  node_ = std::move(next);
  publish(share(std::move(snap)));
  int64_t stall_us = 0;
  for (auto& w : workers_) stall_us = std::max(stall_us, w->max_stall_us.exchange(0));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started)
                .count();
  log::info("config reloaded (" + why + "): version " + std::to_string(version_) + ", " +
            std::to_string(routes) + " routes, loaded and compiled in " + std::to_string(ms) +
            " ms on the control thread; longest worker stall meanwhile " +
            std::to_string(stall_us / 1000) + " ms");
  return true;
}

Task<> Server::watch_files() {
  Timer timer(control_.get_executor());
  while (!draining_) {
    timer.expires_after(kWatchInterval);
    co_await timer.async_wait(await_ec);
    // Polling (not inotify) also sees files replaced by rename or by a symlink swap, as config
    // management tools and Kubernetes ConfigMaps do.
    FileStamp r = stamp(node_.routes_file);
    FileStamp c = stamp(node_.path);
    if (r == routes_stamp_ && c == config_stamp_) continue;
    routes_stamp_ = r;
    config_stamp_ = c;
    reload("file changed");
  }
}

Task<> Server::drain() {
  draining_ = true;
  char grace[32];
  std::snprintf(grace, sizeof(grace), "%g", node_.shutdown_timeout);
  log::info(std::string("draining: no new connections, finishing in-flight requests (up to ") +
            grace + " s)");
  for (auto& w : workers_) w->begin_drain();
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(node_.shutdown_timeout * 1000));
  Timer timer(control_.get_executor());
  while (std::chrono::steady_clock::now() < deadline) {
    int64_t open = 0;
    for (auto& w : workers_) open += w->connections.load();
    if (open == 0) break;
    timer.expires_after(std::chrono::milliseconds(50));
    co_await timer.async_wait(await_ec);
  }
  int64_t left = 0;
  for (auto& w : workers_) left += w->connections.load();
  if (left > 0) log::warn("shutdown timeout: closing " + std::to_string(left) + " connections");
  for (auto& w : workers_) w->stop();
  for (auto& w : workers_) w->join();
  log::info("stopped");
  control_.stop();
}

Task<> Server::handle_signals() {
  asio::basic_signal_set<Executor> signals(control_.get_executor(), SIGINT, SIGTERM, SIGHUP);
  while (true) {
    auto [ec, sig] = co_await signals.async_wait(await_ec);
    if (ec) co_return;
    if (sig == SIGHUP) {
      reload("SIGHUP");
      continue;
    }
    if (!draining_) asio::co_spawn(control_, drain(), asio::detached);
  }
}

int Server::run() {
  std::signal(SIGPIPE, SIG_IGN);
  isolate_control_allocations();
  raise_fd_limit();
  config::Errors errors;
  auto first = config::load_snapshot(node_.routes_file, node_.http, worker_count_, errors);
  if (!first) {
    log::error(node_.routes_file + " has errors:\n" + errors.to_string());
    return 1;
  }
  routes_stamp_ = stamp(node_.routes_file);
  config_stamp_ = stamp(node_.path);
  size_t routes = first->routes.size();
  auto snap = share(std::move(first));
  access_log_ = std::make_unique<AccessLogWriter>(node_.access_log);
  for (int i = 0; i < worker_count_; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, http::start_client_session, *access_log_));
    workers_.back()->listen(node_.listen);
  }
  for (auto& w : workers_) w->start(snap);
  snap.reset();
  // Compiling a big config must not take CPU from the workers: this (control) thread yields to
  // them. Set after the workers started, so they keep the normal priority.
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kControlNice) != 0)
    log::warn("could not lower the control thread's priority");
  std::string addrs;
  for (const auto& l : node_.listen) addrs += (addrs.empty() ? "" : ", ") + l.to_string();
  log::info(std::string("portico ") + PORTICO_VERSION + " listening on " + addrs + " with " +
            std::to_string(worker_count_) + " workers, " + std::to_string(routes) + " routes");
  asio::co_spawn(control_, handle_signals(), asio::detached);
  asio::co_spawn(control_, watch_files(), asio::detached);
  control_.run();
  return 0;
}

}  // namespace portico
