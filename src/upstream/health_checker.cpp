#include "upstream/health_checker.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <map>
#include <set>

#include "core/log.hpp"
#include "tls/server_certificates.hpp"

namespace portico::upstream {

namespace {

// "host:port", "[v6]:port" or "host" -> the host alone, without brackets.
std::string host_without_port(const std::string& host) {
  if (host.starts_with('[')) return host.substr(1, host.find(']') - 1);
  return host.substr(0, host.find(':'));
}

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

constexpr auto kTick = std::chrono::milliseconds(100);
constexpr int kMaxRunning = 256;  // probes in flight per process

using TcpStream = boost::beast::basic_stream<asio::ip::tcp, Executor>;
using TlsStream = boost::beast::ssl_stream<TcpStream>;

// "HTTP/1.1 200 OK" -> 200; 0 when it is not a status line.
int status_of(std::string_view head) {
  if (head.size() < 12 || head.substr(0, 5) != "HTTP/") return 0;
  size_t sp = head.find(' ');
  if (sp == std::string_view::npos || sp + 4 > head.size()) return 0;
  int code = 0;
  for (size_t i = sp + 1; i < sp + 4; ++i) {
    if (head[i] < '0' || head[i] > '9') return 0;
    code = code * 10 + (head[i] - '0');
  }
  return code;
}
// Sends the probe request and reads up to the status line: (status or 0, the error if any).
template <class Stream>
Task<std::pair<int, error_code>> send_probe(Stream& stream, const std::string& req) {
  auto [wec, n] = co_await asio::async_write(stream, asio::buffer(req), await_ec);
  std::string head;
  char buf[512];
  while (!wec && head.find("\r\n") == std::string::npos && head.size() < 4096) {
    auto [rec, got] = co_await stream.async_read_some(asio::buffer(buf), await_ec);
    if (rec) {
      wec = rec;
      break;
    }
    head.append(buf, got);
  }
  co_return std::pair<int, error_code>{status_of(head), wec};
}

// One client context per verification mode, shared by every https probe.
asio::ssl::context& tls_context(bool verify) {
  static auto make = [](bool v) {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    ctx->set_default_verify_paths();
    ctx->set_verify_mode(v ? asio::ssl::verify_peer : asio::ssl::verify_none);
    return ctx;
  };
  static auto verifying = make(true);
  static auto trusting = make(false);
  return verify ? *verifying : *trusting;
}

// The Host (and server name) of a probe: `host` when set, else what real traffic would carry
// when nothing else is set: the rewritten one with pass_host: rewrite, else the node's.
const std::string& probe_host(const UpstreamTarget& target, size_t node) {
  const config::Upstream& spec = target.spec();
  const config::ActiveCheck& check = *spec.active;
  if (!check.host.empty()) return check.host;
  if (spec.pass_host == config::PassHost::Rewrite) return spec.upstream_host;
  return target.nodes()[node].host_header;
}

// Everything that makes a probe's request and its outcome: two nodes with equal keys get the
// same answer from one probe.
std::string probe_key(const UpstreamTarget& target, size_t node) {
  const config::Upstream& spec = target.spec();
  const config::ActiveCheck& check = *spec.active;
  Endpoint ep = target.nodes()[node].endpoint;
  if (check.port) ep.port(static_cast<uint16_t>(check.port));
  std::string key = check.type + " " + ep.address().to_string() + " " + std::to_string(ep.port()) +
                    " " + std::to_string(check.timeout);
  if (check.type == "tcp") return key;
  key += " " + check.http_path + " " + probe_host(target, node);
  for (const auto& h : check.req_headers) key += "\n" + h;
  if (check.type == "https") {
    key += check.https_verify_certificate ? " verify" : " any";
    if (spec.tls_client) key += " cert " + spec.tls_client->digest;
  }
  return key;
}
}  // namespace

void HealthChecker::update(const config::Snapshot& snapshot) {
  std::set<const UpstreamTarget*> seen;
  targets_.clear();
  for (const auto& route : snapshot.routes) {
    if (route.upstream && seen.insert(route.upstream.get()).second)
      targets_.push_back(route.upstream);
    for (const auto& choice : route.upstream_choices)
      if (choice && seen.insert(choice.get()).second) targets_.push_back(choice);
  }
  for (const auto& route : snapshot.stream_routes) {
    if (seen.insert(route->upstream.get()).second) targets_.push_back(route->upstream);
    for (const auto& sub : route->sub_routes)
      if (seen.insert(sub.target.get()).second) targets_.push_back(sub.target);
  }
  // A probe whose key is the same as before is kept: its schedule, and a probe in flight
  // finishes on it (a copy would stay "running" forever and never probe again). One member per
  // health object, however many targets share it.
  std::map<std::string, std::shared_ptr<Probe>> old;
  std::set<NodeHealth*> checked_before;
  for (auto& p : probes_) {
    for (const Member& m : p->members)
      if (NodeHealth* h = m.target->nodes()[m.node].health.get()) checked_before.insert(h);
    old[p->key] = p;
  }
  std::map<std::string, std::shared_ptr<Probe>> next;
  std::set<NodeHealth*> probed;
  const int64_t now = steady_now_ms();
  for (const auto& t : targets_) {
    if (!t->spec().active) continue;
    for (size_t i = 0; i < t->nodes().size(); ++i) {
      NodeHealth* health = t->nodes()[i].health.get();
      if (health && !probed.insert(health).second) continue;
      std::string key = probe_key(*t, i);
      std::shared_ptr<Probe>& p = next[key];
      if (!p) {
        auto it = old.find(key);
        p = it != old.end() ? it->second : std::make_shared<Probe>();
        p->key = std::move(key);
        p->members.clear();  // (a probe in flight works on its own copy)
      }
      // A shorter interval applies now, not when the old schedule comes due.
      p->next_ms = std::min(p->next_ms,
                            now + static_cast<int64_t>(t->spec().active->healthy.interval * 1000));
      p->members.push_back({t, i});
    }
  }
  // Nodes no longer checked actively.
  for (NodeHealth* h : checked_before)
    if (!probed.count(h)) h->active_checks_removed(now);
  probes_.clear();
  for (auto& [key, p] : next) probes_.push_back(std::move(p));
  // Now and then, forget the state of nodes no config uses any more.
  if (++updates_ % 64 == 0) registry_.collect_garbage();
}

Task<> HealthChecker::run() {
  Timer timer(ex_);
  while (!stopped_) {
    timer.expires_after(kTick);
    co_await timer.async_wait(await_ec);
    int64_t now = steady_now_ms();
    for (auto& p : probes_) {
      if (p->running || p->next_ms > now || running_ >= kMaxRunning) continue;
      p->running = true;
      ++running_;
      asio::co_spawn(ex_, probe(p), asio::detached);
    }
  }
}

Task<> HealthChecker::probe(std::shared_ptr<Probe> p) {
  // Whatever happens below (an exception included), the probe is free to run again: a probe
  // left "running" would never be scheduled again, and its node would keep its last state.
  struct Done {
    HealthChecker& checker;
    Probe& probe;
    ~Done() {
      if (probe.running) {
        probe.running = false;
        --checker.running_;
      }
    }
  } done{*this, *p};
  try {
    co_await probe_once(p);
  } catch (const std::exception& e) {
    log::error(std::string("health check: a probe failed: ") + e.what());
    p->next_ms = steady_now_ms() + 1000;
  }
}

Task<> HealthChecker::probe_once(const std::shared_ptr<Probe>& p) {
  // What the probe answers for, held: a config change may give `p` other members meanwhile.
  // The first member's upstream says how to probe; the key makes the others' the same.
  const std::vector<Member> members = p->members;
  if (members.empty()) co_return;
  const std::shared_ptr<const UpstreamTarget>& target = members.front().target;
  const NodeTarget& node = target->nodes()[members.front().node];
  const config::ActiveCheck& check = *target->spec().active;
  Endpoint ep = node.endpoint;
  if (check.port) ep.port(static_cast<uint16_t>(check.port));
  auto timeout = std::chrono::milliseconds(static_cast<int64_t>(check.timeout * 1000));
  Outcome outcome = Outcome::Success;
  int status = 0;
  TcpStream stream(ex_);
  stream.expires_after(timeout);
  auto [ec] = co_await stream.async_connect(ep, await_ec);
  if (ec) {
    outcome = ec == boost::beast::error::timeout ? Outcome::Timeout : Outcome::TcpFailure;
  } else if (check.type != "tcp") {
    const std::string& host = probe_host(*target, members.front().node);
    std::string req = "GET " + check.http_path + " HTTP/1.1\r\nHost: " + host +
                      "\r\nUser-Agent: portico-health-check\r\nConnection: close\r\n";
    for (const auto& h : check.req_headers) req += h + "\r\n";
    req += "\r\n";
    std::pair<int, error_code> got;
    if (check.type == "https") {
      TlsStream tls(std::move(stream), tls_context(check.https_verify_certificate));
      std::string sni = host_without_port(host);
      // No server name for an IP address (RFC 6066), as the proxy does: a node whose
      // certificate is chosen by name would otherwise answer probes with another one.
      if (!is_ip_literal(sni)) SSL_set_tlsext_host_name(tls.native_handle(), sni.c_str());
      // Nodes that ask for a client certificate (upstream tls.client_cert) get the one the
      // proxy shows them, or every probe would fail and take them all out.
      if (const tls::ClientIdentity* identity = target->spec().tls_client.get())
        tls::use_client_identity(tls.native_handle(), *identity);
      if (check.https_verify_certificate)
        tls.set_verify_callback(asio::ssl::host_name_verification(sni));
      auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, await_ec);
      if (hec)
        got = {0, hec};
      else
        got = co_await send_probe(tls, req);
      error_code ignored;
      boost::beast::get_lowest_layer(tls).socket().close(ignored);
    } else {
      got = co_await send_probe(stream, req);
    }
    status = got.first;
    if (status == 0)
      outcome = got.second == boost::beast::error::timeout ? Outcome::Timeout : Outcome::TcpFailure;
  }
  error_code ignored;
  stream.socket().close(ignored);
  // Each member judges the answer by its own thresholds; the next probe comes as soon as any
  // of them wants it.
  double interval = 0;
  for (const Member& m : members) {
    NodeHealth* health = m.target->nodes()[m.node].health.get();
    const config::ActiveCheck& own = *m.target->spec().active;
    if (health)
      health->report(outcome, status, own.healthy, own.unhealthy, nullptr, steady_now_ms(),
                     "active");
    const bool healthy = !health || health->healthy(steady_now_ms());
    const double wants = healthy ? own.healthy.interval : own.unhealthy.interval;
    interval = interval == 0 ? wants : std::min(interval, wants);
  }
  p->next_ms = steady_now_ms() + static_cast<int64_t>(interval * 1000);
}

}  // namespace portico::upstream
