#include "core/server.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include "admin/admin_api.hpp"
#include "admin/admin_key.hpp"
#include "admin/control_api.hpp"
#include "admin/http_service.hpp"
#include "core/host_refresh.hpp"
#include "core/log.hpp"
#include "core/private_arena.hpp"
#include "http/client_session.hpp"
#include "plugins/limit/redis_conn_slots.hpp"
#include "plugins/log/batch_processor.hpp"
#include "stream/stream_session.hpp"

namespace portico {

namespace {
constexpr auto kWatchInterval = std::chrono::milliseconds(500);
constexpr int kControlNice = 10;

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}
}  // namespace

Server::Server(config::NodeConfig node) : node_(std::move(node)) {
  config::set_edge_function_limits(node_.edge_functions);
  config::set_https_port(node_);
  worker_count_ = node_.workers > 0
                      ? node_.workers
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

Server::~Server() {
  current_.reset();
  if (etcd_) etcd_->stop();
  admin_http_.reset();
  control_http_.reset();
  for (auto& w : workers_) w->stop();
  // Every worker ends before any is destroyed: a running one may still post() to a sibling.
  for (auto& w : workers_) w->join();
  workers_.clear();
}

Server::FileStamp Server::stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
          static_cast<int64_t>(st.st_size), static_cast<uint64_t>(st.st_ino)};
}

bool Server::settled(const FileStamp& now, const FileStamp& applied, FileStamp& pending) {
  if (now == applied || now == pending) return true;
  pending = now;
  return false;
}

namespace {

// Whether a routes file holds nothing but blanks and comments: an emptied file on a running
// gateway is almost always a mistake (a failed deploy, a full disk), not a wish to drop every
// route; `routes: []` says that.
bool blank_yaml(const std::string& path) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    size_t at = line.find_first_not_of(" \t\r");
    if (at == std::string::npos || line[at] == '#' || line.compare(at, 3, "---") == 0) continue;
    return false;
  }
  return in.eof();  // read to the end (an unreadable file is for the loader to report)
}

}  // namespace

std::shared_ptr<const config::Snapshot> Server::share(std::unique_ptr<config::Snapshot> snap) {
  snap->version = ++version_;
  // The last worker to let go of a snapshot must not pay for freeing 50k routes: deletion is
  // handed back to this (control) thread.
  // It goes to a lock-free list; reap_snapshots() frees it on a config thread.
  return std::shared_ptr<const config::Snapshot>(
      snap.release(), [this](const config::Snapshot* s) { retired_.push(s); });
}

void Server::publish(std::shared_ptr<const config::Snapshot> snap) {
  current_ = snap;
  if (checker_) checker_->update(*snap);
  for (auto& w : workers_) w->publish(snap);
}

config::ConfigSourceStatus Server::source_status() const {
  return etcd_ ? etcd_->status() : file_status_;
}

void Server::log_applied(const std::string& why, std::chrono::steady_clock::time_point started,
                         std::chrono::milliseconds compile) {
  int64_t stall_us = 0;
  for (auto& w : workers_) stall_us = std::max(stall_us, w->max_stall_us.exchange(0));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started)
                .count();
  log::info("config reloaded (" + why + "): version " + std::to_string(version_) + ", revision " +
            std::to_string(source_status().revision) + ", " +
            std::to_string(current_ ? current_->routes.size() : 0) + " routes, compiled in " +
            std::to_string(compile.count()) + " ms, applied in " + std::to_string(ms) +
            " ms; longest worker stall meanwhile " + std::to_string(stall_us / 1000) + " ms");
}

void Server::log_new_problems(const config::Errors& problems) {
  std::set<std::string> now;
  for (const auto& e : problems.list()) {
    std::string line = e.path + ": " + e.message;
    if (!last_problems_.count(line)) log::warn("config: object skipped until fixed: " + line);
    now.insert(std::move(line));
  }
  last_problems_ = std::move(now);
}

void Server::schedule_rebuild(const char* why) {
  if (workers_.empty()) return;  // before start-up: the first compile sees every change
  rebuild_dirty_ = true;
  if (rebuild_posted_ || compile_in_flight_) return;
  rebuild_posted_ = true;
  // Not run now: the watch may be delivering more changes in the same read, and they should
  // land in the same compile. And paced: the next compile starts no sooner than ten times the
  // CPU time of the last one after it, so however fast changes come, compiling takes at most
  // ~10% of a core (with 50k routes: ~25 ms per compile, so changes apply within ~0.3 s; with a
  // few hundred routes there is no delay at all).
  auto timer = std::make_shared<Timer>(control_.get_executor());
  timer->expires_at(next_compile_);
  timer->async_wait([this, timer, why](error_code) {
    rebuild_posted_ = false;
    rebuild_from_store(why);
  });
}

void Server::rebuild_for_host_names() {
  static constexpr const char* kWhy = "node host names resolved anew";
  if (etcd_) {
    schedule_rebuild(kWhy);
    return;
  }
  // yaml mode: the objects served stay the same, so only the upstreams whose names changed are
  // compiled again (yaml_cache_); the others keep their balancer state.
  auto started = std::chrono::steady_clock::now();
  config::Errors problems, errors;
  auto snap = config::build_snapshot(store_.config_set(problems), node_.http, worker_count_, errors,
                                     nullptr, &yaml_cache_);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  if (!snap || !errors.empty()) {
    log::error(std::string("config (") + kWhy + ") not applied, keeping the running config:\n" +
               errors.to_string());
    return;
  }
  publish(share(std::move(snap)));
  log_applied(kWhy, started, took);
}

void Server::rebuild_from_store(const std::string& why, std::function<void(bool)> then) {
  if (compile_in_flight_) {  // one compile at a time; changes meanwhile go into the next one
    rebuild_dirty_ = true;
    return;
  }
  rebuild_dirty_ = false;
  compile_in_flight_ = true;
  auto started = std::chrono::steady_clock::now();
  auto problems = std::make_shared<config::Errors>();
  config::ConfigSet set = store_.config_set(*problems);
  compiler_->submit(
      std::move(set), node_.http, [this, why, started, problems, then](SnapshotCompiler::Result r) {
        compile_in_flight_ = false;
        next_compile_ = std::chrono::steady_clock::now() + 10 * r.cpu;
        for (const auto& e : r.problems.list()) problems->add(e.path, e.message);
        log_new_problems(*problems);
        bool ok = r.snapshot != nullptr;
        if (!ok)
          log::error("config (" + why + ") not applied, keeping the running config:\n" +
                     r.errors.to_string());
        else if (workers_.empty())
          ok = start_workers_or_stop(share(std::move(r.snapshot)));
        else
          publish(share(std::move(r.snapshot)));
        if (ok) log_applied(why, started, r.took);
        if (then) then(ok);
        if (rebuild_dirty_) {
          rebuild_dirty_ = false;
          schedule_rebuild();
        }
      });
}

Task<> Server::reap_snapshots() {
  Timer timer(control_.get_executor());
  while (true) {
    timer.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await timer.async_wait(await_ec);
    if (ec) co_return;
    for (auto& s : retired_.take_all()) {
      if (compiler_)
        compiler_->dispose(std::move(s));  // idle priority
      else
        s.reset();
    }
  }
}

Task<> Server::watch_compiles() {
  Timer timer(control_.get_executor());
  while (!draining_) {
    timer.expires_after(std::chrono::milliseconds(250));
    co_await timer.async_wait(await_ec);
    compiler_->check_starvation();
  }
}

// Keys read once at start-up; a reload names the ones that changed instead of ignoring them.
void Server::warn_restart_only_changes(const config::NodeConfig& next) const {
  auto listens = [](const std::vector<config::ListenAddress>& l) {
    std::string out;
    for (const auto& a : l) {
      out += a.to_string() + (a.proxy_protocol ? " proxy_protocol" : "");
      for (const auto& t : a.trusted_addresses) out += " " + t;
      out += ",";
    }
    return out;
  };
  const auto& e1 = node_.etcd;
  const auto& e2 = next.etcd;
  std::vector<std::pair<const char*, bool>> keys = {
      {"node.listen", listens(next.listen) != listens(node_.listen)},
      {"node.stream_listen", listens(next.stream_listen) != listens(node_.stream_listen)},
      {"node.workers", next.workers != node_.workers},
      {"config.provider", next.provider != node_.provider},
      {"config.etcd",
       e1.endpoints != e2.endpoints || e1.prefix != e2.prefix || e1.user != e2.user ||
           e1.password != e2.password || e1.tls.ca != e2.tls.ca || e1.tls.cert != e2.tls.cert ||
           e1.tls.key != e2.tls.key || e1.tls.verify != e2.tls.verify || e1.timeout != e2.timeout},
      {"admin.listen", next.admin_listen.to_string() != node_.admin_listen.to_string()},
      {"admin.max_body", next.admin_max_body != node_.admin_max_body},
      {"control.listen", next.control_listen.to_string() != node_.control_listen.to_string()},
      {"log.access", next.access_log != node_.access_log},
      {"log.error", next.error_log != node_.error_log}};
  std::string changed;
  for (const auto& [key, differs] : keys)
    if (differs) changed += (changed.empty() ? "" : ", ") + std::string(key);
  if (!changed.empty())
    log::warn("config reload: " + changed + " changed; that takes effect after a restart");
}

bool Server::reload(const std::string& why) {
  auto started = std::chrono::steady_clock::now();
  config::Errors errors;
  config::NodeConfig next = config::load_node_config(node_.path, errors);
  if (!errors.empty()) {
    ++file_status_.skipped;
    log::error("config reload (" + why + ") rejected, " + node_.path +
               " has errors; keeping the running config:\n" + errors.to_string());
    return false;
  }
  warn_restart_only_changes(next);
  next.listen = node_.listen;
  next.stream_listen = node_.stream_listen;
  next.workers = node_.workers;
  next.provider = node_.provider;
  next.etcd = node_.etcd;
  next.admin_listen = node_.admin_listen;
  next.admin_max_body = node_.admin_max_body;
  next.control_listen = node_.control_listen;
  next.access_log = node_.access_log;
  next.error_log = node_.error_log;
  if (next.admin_keys.empty()) next.admin_keys = node_.admin_keys;
  if (etcd_) {
    node_ = std::move(next);
    config::set_edge_function_limits(node_.edge_functions);
    rebuild_from_store(why);
    return true;
  }
  if (blank_yaml(next.routes_file)) {
    ++file_status_.skipped;
    file_status_.last_error = next.routes_file + " is empty";
    log::error("config reload (" + why + ") rejected, " + next.routes_file +
               " is empty; keeping the running config (write `routes: []` to remove every route)");
    return false;
  }
  config::ObjectStore store;
  // The routes are checked (edge functions run once) under the limits they will run with.
  const config::EdgeFunctionLimits running_limits = config::edge_function_limits();
  config::set_edge_function_limits(next.edge_functions);
  // Objects that did not change keep what was built from them (unless the edge-function limits
  // they were checked under did).
  const bool same_limits = running_limits == next.edge_functions;
  auto snap = config::load_snapshot(next.routes_file, next.http, worker_count_, errors, &store,
                                    &yaml_cache_, same_limits ? &store_ : nullptr);
  if (!snap) {
    ++file_status_.skipped;
    file_status_.last_error = next.routes_file + " has errors";
    config::set_edge_function_limits(running_limits);
    log::error("config reload (" + why + ") rejected, " + next.routes_file +
               " has errors; keeping the running config:\n" + errors.to_string());
    return false;
  }
  node_ = std::move(next);
  store_ = std::move(store);
  ++file_status_.revision;
  file_status_.last_error.clear();
  publish(share(std::move(snap)));
  log_applied(why, started,
              std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started));
  return true;
}

Task<> Server::watch_files() {
  Timer timer(control_.get_executor());
  while (!draining_) {
    timer.expires_after(kWatchInterval);
    co_await timer.async_wait(await_ec);
    // Polling (not inotify) also sees files replaced by rename or by a symlink swap, as config
    // management tools and Kubernetes ConfigMaps do.
    FileStamp r = etcd_ ? FileStamp{} : stamp(node_.routes_file);
    FileStamp c = stamp(node_.path);
    if (r == routes_stamp_ && c == config_stamp_) continue;
    // Both settled, or neither is read: a deploy may change both files together.
    const bool routes_ready = settled(r, routes_stamp_, routes_pending_);
    if (!(settled(c, config_stamp_, config_pending_) && routes_ready)) continue;
    routes_stamp_ = r;
    config_stamp_ = c;
    routes_pending_ = config_pending_ = {};
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
  if (etcd_) etcd_->stop();
  if (checker_) checker_->stop();
  if (admin_http_) admin_http_->stop();
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
  // What the workers still owe after the last request, done before they stop, within the grace
  // (at least a second): loggers' batches, which would go at their timers after the workers
  // stopped, sent now; limit-conn's Redis slots of the last requests, given back.
  const int64_t unsent = plugins::BatchProcessor::unsent();
  if (unsent > 0 && !workers_.empty()) {
    log::info("sending " + std::to_string(unsent) + " batched log entries before stopping");
    workers_.front()->post([] { plugins::BatchProcessor::flush_all(); });
  }
  auto until = std::max(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(1));
  while ((plugins::BatchProcessor::unsent() > 0 || limit::pending_slot_releases() > 0) &&
         !workers_.empty() && std::chrono::steady_clock::now() < until) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(await_ec);
  }
  if (int64_t lost = plugins::BatchProcessor::unsent(); lost > 0 && unsent > 0)
    log::warn("stopping with " + std::to_string(lost) + " log entries unsent");
  for (auto& w : workers_) w->stop();
  for (auto& w : workers_) w->join();
  if (control_http_) control_http_->stop();
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

void Server::start_workers(std::shared_ptr<const config::Snapshot> first) {
  access_log_ = std::make_unique<AccessLogWriter>(node_.access_log);
  Worker::check_not_in_use(node_.listen);
  Worker::check_not_in_use(node_.stream_listen);
  for (int i = 0; i < worker_count_; ++i) {
    auto handler = [](Worker& w, Socket&& s, const config::ListenAddress& listener) {
      if (listener.stream)
        stream::start_stream_session(w, std::move(s), listener);
      else
        http::start_client_session(w, std::move(s), listener);
    };
    workers_.push_back(std::make_unique<Worker>(i, handler, *access_log_));
    workers_.back()->listen(node_.listen);
    workers_.back()->listen(node_.stream_listen);
  }
  current_ = first;
  if (checker_) checker_->update(*first);
  for (auto& w : workers_) {
    w->set_siblings(&workers_);
    w->start(first);
  }
  // Compiling a big config must not take CPU from the workers: this (control) thread yields to
  // them. Set after the workers started, so they keep the normal priority.
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kControlNice) != 0)
    log::warn("could not lower the control thread's priority");
  std::string addrs;
  for (const auto& l : node_.listen)
    addrs +=
        (addrs.empty() ? "" : ", ") + l.to_string() + (l.proxy_protocol ? " (PROXY protocol)" : "");
  for (const auto& l : node_.stream_listen)
    addrs += ", stream " + l.to_string() + (l.proxy_protocol ? " (PROXY protocol)" : "");
  log::info(std::string("portico ") + PORTICO_VERSION + " listening on " + addrs + " with " +
            std::to_string(worker_count_) + " workers, " + std::to_string(first->routes.size()) +
            " routes (config from " + node_.provider + ")");
}

bool Server::start_workers_or_stop(std::shared_ptr<const config::Snapshot> first) {
  try {
    start_workers(std::move(first));
    return true;
  } catch (const std::exception& e) {
    log::error(std::string("start-up failed: ") + e.what());
    // Workers already started run threads that may post() to siblings: all end first.
    for (auto& w : workers_) w->stop();
    for (auto& w : workers_) w->join();
    workers_.clear();
    return false;
  }
}

void Server::start_apis() {
  auto snapshot = [this] { return current_; };
  admin::ControlContext cc;
  cc.provider = node_.provider;
  cc.source_status = [this] { return source_status(); };
  cc.snapshot = snapshot;
  cc.workers = &workers_;
  cc.configured_workers = worker_count_;
  cc.store = &store_;
  cc.upstream_targets = [this] { return checker_->targets(); };
  control_api_ = std::make_unique<admin::ControlApi>(std::move(cc));
  control_http_ = std::make_unique<admin::HttpService>(
      control_.get_executor(), "control API", 64 * 1024,
      [this](admin::HttpRequest& req) { return control_api_->handle(req); });
  control_http_->start(node_.control_listen);

  admin::AdminContext ac;
  ac.node = &node_;
  ac.store = &store_;
  ac.etcd = etcd_.get();
  ac.snapshot = snapshot;
  admin_api_ = std::make_unique<admin::AdminApi>(std::move(ac));
  admin_http_ = std::make_unique<admin::HttpService>(
      control_.get_executor(), "admin API", static_cast<size_t>(node_.admin_max_body),
      [this](admin::HttpRequest& req) { return admin_api_->handle(req); },
      [this](const asio::ip::address& peer) { return admin_api_->admits(peer); });
  admin_http_->start(node_.admin_listen);
}

Task<> Server::start_from_etcd() {
  bool ok = co_await etcd_->initial_sync(node_.etcd.startup_timeout);
  if (!ok) {
    char limit[32];
    std::snprintf(limit, sizeof(limit), "%g", node_.etcd.startup_timeout);
    log::error(std::string("etcd unreachable at start-up for ") + limit + " s (" +
               etcd_->status().last_error +
               "); exiting without serving (config.etcd.startup_timeout sets the wait)");
    exit_code_ = 1;
    control_.stop();
    co_return;
  }
  // The first compile starts the workers (see rebuild_from_store); then the watch begins.
  rebuild_from_store("start-up", [this](bool ok) {
    if (ok && !workers_.empty()) {
      asio::co_spawn(control_, etcd_->run(), asio::detached);
      return;
    }
    exit_code_ = 1;
    control_.stop();
  });
}

int Server::run() {
  std::signal(SIGPIPE, SIG_IGN);
  // Sharing an allocator arena (and its locks) with a worker would slow that worker down while
  // this thread handles a big config.
  use_private_arena("control thread");
  raise_fd_limit();
  if (node_.admin_keys.empty()) {
    std::string key = admin::generate_admin_key(node_.path);
    node_.admin_keys.push_back({key, "admin"});
    std::printf(
        "portico: generated an Admin API key (role admin) and saved it in %s under "
        "admin.keys: %s\n",
        node_.path.c_str(), key.c_str());
    std::fflush(stdout);
  }
  config_stamp_ = stamp(node_.path);
  checker_ =
      std::make_unique<upstream::HealthChecker>(control_.get_executor(), config::health_registry());
  asio::co_spawn(control_, checker_->run(), asio::detached);
  if (node_.provider == "etcd") {
    etcd_ = std::make_unique<config::EtcdSource>(control_.get_executor(), node_.etcd, store_,
                                                 [this] { schedule_rebuild(); });
    compiler_ = std::make_unique<SnapshotCompiler>(control_, worker_count_);
    asio::co_spawn(control_, watch_compiles(), asio::detached);
    start_apis();
    asio::co_spawn(control_, start_from_etcd(), asio::detached);
  } else {
    config::Errors errors;
    auto first = config::load_snapshot(node_.routes_file, node_.http, worker_count_, errors,
                                       &store_, &yaml_cache_);
    if (!first) {
      log::error(node_.routes_file + " has errors:\n" + errors.to_string());
      return 1;
    }
    routes_stamp_ = stamp(node_.routes_file);
    file_status_.reachable = true;
    file_status_.synced = true;
    file_status_.revision = 1;
    start_workers(share(std::move(first)));
    start_apis();
  }
  asio::co_spawn(control_, handle_signals(), asio::detached);
  asio::co_spawn(control_, watch_files(), asio::detached);
  asio::co_spawn(control_, reap_snapshots(), asio::detached);
  asio::co_spawn(
      control_,
      refresh_host_names(node_, current_, draining_, [this] { rebuild_for_host_names(); }),
      asio::detached);
  control_.run();
  return exit_code_;
}

}  // namespace portico
