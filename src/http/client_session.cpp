#include "http/client_session.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "core/log.hpp"
#include "http/exchange.hpp"
#include "http/proxy.hpp"
#include "http/proxy_protocol_accept.hpp"
#include "http/request_vars.hpp"
#include "http/responses.hpp"
#include "http/socket_io.hpp"
#include "plugins/runner.hpp"
#include "router/path_normalizer.hpp"
#include "router/route_rule.hpp"
#include "tls/server_certificates.hpp"
#include "tls/stream.hpp"

namespace portico::http {
namespace {

// While a keep-alive connection idles, it holds a read buffer and a coroutine only for this
// long (the busy case: the next request arrives without any extra system call); after that it
// is parked: no buffer, no coroutine, just the socket waiting for readability, so thousands of
// idle connections cost little memory.
constexpr double kBufferedIdleSeconds = 2.0;
constexpr double kLingerSeconds = 2.0;

enum class Wait { Ready, Close, Park };

Task<> run_session(std::unique_ptr<ClientConnection> c);

// Waits (for at most kBufferedIdleSeconds) for the first bytes of the next request, `timeout`
// seconds in all (taken by value: the snapshot it came from may be replaced meanwhile).
Task<Wait> wait_for_request(ClientConnection& c, double timeout) {
  Worker& w = c.worker;
  if (c.idle_until_ms == 0)
    c.idle_until_ms = steady_now_ms() + static_cast<int64_t>(timeout * 1000);
  double left = static_cast<double>(c.idle_until_ms - steady_now_ms()) / 1000.0;
  if (left <= 0) co_return Wait::Close;
  if (!c.in.allocated()) c.in = w.buffers().acquire();
  c.idle_deadline.arm(std::min(left, kBufferedIdleSeconds), &c.socket);
  auto [ec, n] = co_await c.stream.read_some(asio::buffer(c.in.write_ptr(), c.in.writable()));
  c.idle_deadline.disarm();
  if (!ec) {
    c.in.commit(n);
    c.idle_until_ms = 0;
    co_return Wait::Ready;
  }
  if (ec != asio::error::operation_aborted || !c.idle_deadline.fired() || w.draining())
    co_return Wait::Close;
  co_return steady_now_ms() < c.idle_until_ms ? Wait::Park : Wait::Close;
}

// Parks a long-idle connection until it becomes readable, its idle time runs out, or the worker
// drains; then the session resumes in a new coroutine (or the connection closes).
void park(std::unique_ptr<ClientConnection> c) {
  c->worker.buffers().release(c->in);
  if (c->stream.secure()) tls::release_buffers(*c->stream.tls());
  Socket& socket = c->socket;
  c->idle_deadline.arm(static_cast<double>(c->idle_until_ms - steady_now_ms()) / 1000.0, &socket);
  auto resume = [c = std::move(c)](error_code ec) mutable {
    c->idle_deadline.disarm();
    if (ec || c->worker.draining()) return;  // timed out, closed or draining: `c` closes
    Executor ex = c->worker.executor();
    asio::co_spawn(ex, run_session(std::move(c)), asio::detached);
  };
  socket.async_wait(Socket::wait_read, std::move(resume));
}

// Starts the rewrite and access phases (see plugins/runner.hpp for Wait). `route` is null for a
// request that matched no route: global rules still run (APISIX).
plugins::Step start_plugins(ClientConnection& c, Exchange& x, const config::Snapshot& snapshot,
                            const config::CompiledRoute* route, std::string_view path) {
  plugins::Context& ctx = x.ctx;
  ctx.reset();
  x.with_plugins = true;
  ctx.req = &x.req;
  ctx.path = path;
  ctx.client_ip.assign(c.remote_ip);
  ctx.client_bytes = c.remote_bytes;
  ctx.client_port = c.remote_port;
  ctx.server_port = c.local_port;
  ctx.https = c.stream.secure();
  ctx.server_name = c.server_name;
  ctx.client_cert = c.client_cert.get();
  ctx.route_id = route ? &route->id : nullptr;
  ctx.service_id = route ? &route->service_id : nullptr;
  ctx.route_info = route ? route->info.get() : nullptr;
  ctx.consumers = &snapshot.consumers;
  ctx.metadata = snapshot.plugin_metadata.get();
  ctx.worker = c.worker.index();
  ctx.now_ms = wall_now_ms();
  return plugins::start_request_phases(ctx, snapshot.global_plugins.get(),
                                       route ? route->plugins.get() : nullptr);
}

// A Host every reader of it reads the same way (the router, the mTLS check, the upstream): a
// name or address of at most 255 bytes, a bracketed IPv6 literal, and at most one :port of
// digits. Others are refused (400), as nginx does, rather than read two ways.
bool well_formed_host(std::string_view host) {
  auto port_ok = [](std::string_view rest) {  // "" or ":digits"
    if (rest.empty()) return true;
    if (rest.front() != ':' || rest.size() < 2 || rest.size() > 6) return false;
    return std::all_of(rest.begin() + 1, rest.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (host.starts_with('[')) {
    size_t close = host.find(']');
    return close != std::string_view::npos && close <= 255 && port_ok(host.substr(close + 1));
  }
  size_t colon = host.find(':');
  std::string_view name = host.substr(0, colon);
  if (name.size() > 255 || name.find_first_of("[]") != std::string_view::npos) return false;
  return colon == std::string_view::npos || port_ok(host.substr(colon));
}

// Why a request must be refused under mTLS (docs/tls.md): status 0 when it may go on.
struct Refusal {
  int status = 0;
  std::string reason;
};

// The connection's own name may have let a client without a good certificate in
// (skip_mtls_uri_regex: only the paths it matches are served), and its check may predate the
// running config (a CA replaced or removed since: 421, the client connects again and is checked
// anew). A request's Host may name an ssls object that asks for a certificate: then, as APISIX
// does, the connection must have proved one for that very name (a name that asks for nothing,
// or another object's, does not open a protected host).
Refusal client_certificate_refusal(const ClientConnection& c, const config::Snapshot& snapshot,
                                   std::string_view host, std::string_view path) {
  auto skipped = [&](const tls::ClientVerification& policy) {
    return policy.skips && policy.skips(path);
  };
  const tls::CertificateTable* table = snapshot.certificates.get();
  const tls::ClientCertificate* proved = c.client_cert.get();
  auto unproved = [&] {  // (built only when refusing: this runs on every request)
    return Refusal{400, !proved || proved->verify == "NONE" ? "client certificate required"
                                                            : "client certificate not accepted"};
  };
  if (proved) {
    const tls::ServerCertificate* now = table ? table->find(proved->name) : nullptr;
    if (!now || now->client != proved->policy)
      return {421, "the certificate settings changed: connect again"};
    if (!proved->verified && !skipped(*now->client)) return unproved();
  }
  if (!c.stream.secure() || !table || !table->asks_for_client_certificates()) return {};
  // The Host as the router reads it (serve_request refused any other reading).
  char buf[256];
  host = router::normalize_host(host, buf, sizeof(buf));
  if (host.starts_with('[')) return {};  // an IPv6 literal names no certificate
  const tls::ServerCertificate* cert = table->find_for_host(host);
  if (!cert || !cert->client || skipped(*cert->client)) return {};
  if (!proved || !proved->verified) return unproved();
  if (cert->client != proved->policy || !iequals(proved->name, host))
    return {400, "client certificate was presented for another host name"};
  return {};
}

// Reads and serves one request. Returns whether the connection stays open.
Task<bool> serve_request(ClientConnection& c) {
  Worker& w = c.worker;
  auto snapshot = w.snapshot();  // the request keeps the snapshot it started with
  const config::HttpLimits& limits = snapshot->limits;
  ExchangeLease lease;
  Exchange& x = *lease;
  x.start_us = now_us();
  LogPhaseOnThrow log_on_throw(x);

  RequestLimits rl{limits.client_max_header_size, limits.max_uri_length};
  c.io_deadline.arm(limits.client_header_timeout, &c.socket);  // the whole head, not per read
  while (true) {
    ParseResult r = parse_request(c.in.view(), rl, x.req);
    if (r.status == ParseStatus::Done) break;
    if (r.status == ParseStatus::Error) {
      c.io_deadline.disarm();
      co_return co_await respond_error(c, x, r.error_status, r.reason, false, limits);
    }
    if (c.in.writable() == 0) {
      c.in.compact();
      if (c.in.writable() == 0) c.in.grow(std::max(rl.max_head, rl.max_uri) + 1);
    }
    auto [ec, n] = co_await c.stream.read_some(asio::buffer(c.in.write_ptr(), c.in.writable()));
    if (ec) {
      bool timed_out = c.io_deadline.fired();
      c.io_deadline.disarm();
      if (timed_out)
        co_return co_await respond_error(c, x, 408, "request header timeout", false, limits);
      co_return false;  // the client went away mid-head
    }
    c.in.commit(n);
  }
  c.io_deadline.disarm();
  ++c.requests;
  w.requests.fetch_add(1, std::memory_order_relaxed);
  x.method.assign(x.req.method);
  x.target.assign(x.req.target);
  x.host.assign(x.req.host);
  x.bytes_in = x.req.head_size;

  if (!well_formed_host(x.req.host))
    co_return co_await respond_error(c, x, 400, "invalid Host", false, limits);
  std::string_view path;
  if (!router::normalize_path(x.req.path, x.path_scratch, path))
    co_return co_await respond_error(c, x, 400, "invalid URI path", false, limits);
  if (c.client_cert ||
      (snapshot->certificates && snapshot->certificates->asks_for_client_certificates())) {
    Refusal refusal = client_certificate_refusal(c, *snapshot, x.req.host, path);
    if (refusal.status != 0) {
      if (c.client_cert && !c.client_cert->verified)
        log::debug("mTLS: request from " + c.remote_ip + " refused, client certificate " +
                   c.client_cert->verify);
      co_return co_await respond_error(c, x, refusal.status, refusal.reason, false, limits);
    }
  }
  RequestVars vars(x.req, path, c.remote_ip, c.remote_port, c.local_port, c.stream.secure());
  router::MatchInput in{x.req.method,   x.req.host,           path,
                        c.remote_bytes, !c.remote_ip.empty(), &vars};
  int idx = snapshot->router.match(in);
  if (idx == router::RouteIndex::kNoMatch) {
    if (snapshot->global_plugins) {
      plugins::Step step = start_plugins(c, x, *snapshot, nullptr, path);
      if (step == plugins::Step::Wait) step = co_await plugins::finish_request_phases(x.ctx);
      if (step == plugins::Step::Respond) co_return co_await respond_plugin_reply(c, x, limits);
    }
    bool bodyless = !x.req.has_body();
    if (bodyless) c.in.consume(x.req.head_size);  // a body we did not read forces a close
    co_return co_await respond_error(c, x, 404, "404 Route Not Found", bodyless, limits);
  }
  const config::CompiledRoute& route = snapshot->routes[static_cast<size_t>(idx)];
  x.route_id = &route.id;
  if (limits.client_max_body_size > 0 && x.req.content_length > limits.client_max_body_size)
    co_return co_await respond_error(c, x, 413, "request body too large", false, limits);
  if (route.plugins || snapshot->global_plugins) {
    plugins::Step step = start_plugins(c, x, *snapshot, &route, path);
    if (step == plugins::Step::Wait) step = co_await plugins::finish_request_phases(x.ctx);
    if (step == plugins::Step::Respond) co_return co_await respond_plugin_reply(c, x, limits);
  }
  bool keep = co_await proxy_request(c, x, route, snapshot, limits);
  // A client that goes away before any answer (mid-body, during 100-continue) ends the request
  // without record_exchange; the log phase must run anyway, or limit-conn keeps its slot forever.
  if (x.with_plugins && !x.ctx.log_done) {
    if (!x.status) x.status = 499;
    x.ctx.status = x.status;
    fill_log_facts(x);
    plugins::run_log(x.ctx);
  }
  co_return keep;
}

// TLS: a close_notify ends the stream cleanly (a client reading to the end of a response without
// a length can tell it from a cut); the client's own close_notify is awaited for a moment.
Task<> close_tls(ClientConnection& c) {
  c.io_deadline.arm(kLingerSeconds, &c.socket);
  co_await tls::shutdown(*c.stream.tls());
  c.io_deadline.disarm();
}

// Reads and discards what the client still sends for a moment after our last response, so
// closing does not turn into a reset that destroys that response in flight (nginx does the same).
Task<> lingering_close(ClientConnection& c) {
  error_code ec;
  if (c.stream.secure()) co_await close_tls(c);
  c.socket.shutdown(Socket::shutdown_send, ec);
  if (!c.in.allocated()) c.in = c.worker.buffers().acquire();
  int64_t until = steady_now_ms() + static_cast<int64_t>(kLingerSeconds * 1000);
  while (steady_now_ms() < until) {
    c.in.clear();
    IoStatus s =
        read_done(co_await async_read(c.socket, c.in, c.io_deadline,
                                      static_cast<double>(until - steady_now_ms()) / 1000.0),
                  c.in, c.io_deadline);
    if (s != IoStatus::Ok) break;
  }
}

Task<> run_session(std::unique_ptr<ClientConnection> conn) {
  ClientConnection& c = *conn;
  Worker& w = c.worker;
  try {
    while (true) {
      if (c.in.empty()) {
        const config::HttpLimits& limits = w.snapshot()->limits;
        double timeout = c.requests == 0 ? limits.client_header_timeout : limits.keepalive_timeout;
        Wait next = co_await wait_for_request(c, timeout);
        if (next == Wait::Park) {
          park(std::move(conn));
          co_return;
        }
        if (next == Wait::Close) break;
      }
      if (!co_await serve_request(c)) break;
      if (w.draining()) break;
    }
    if (c.needs_lingering_close && c.socket.is_open())
      co_await lingering_close(c);
    else if (c.stream.secure() && c.socket.is_open())
      co_await close_tls(c);
  } catch (const std::exception& e) {
    log::debug(std::string("client session ended: ") + e.what());
  }
  error_code ec;
  c.socket.close(ec);
}

// proxy_protocol listeners: the PROXY header first (it replaces the client address), then the
// connection is served like any other; a connection without a valid header is just closed.
Task<> run_session_after_proxy_header(std::unique_ptr<ClientConnection> conn,
                                      const config::ListenAddress& listener) {
  double timeout = conn->worker.snapshot()->limits.client_header_timeout;
  if (co_await accept_proxy_header(*conn, listener, timeout)) co_await run_session(std::move(conn));
}

// ssl listeners: the handshake (after the PROXY header, if any), with the certificate for the
// client's server name from the running config; the connection is then served like any other.
Task<> run_tls_session(std::unique_ptr<ClientConnection> conn,
                       const config::ListenAddress& listener) {
  ClientConnection& c = *conn;
  try {
    // One budget from accept to the first request's first bytes, whatever the stages (PROXY
    // header, handshake, wait): a client cannot stretch it by stalling in each.
    double timeout = c.worker.snapshot()->limits.client_header_timeout;
    const int64_t until = steady_now_ms() + static_cast<int64_t>(timeout * 1000);
    auto left = [&] { return static_cast<double>(until - steady_now_ms()) / 1000.0; };
    if (listener.proxy_protocol && !co_await accept_proxy_header(c, listener, left())) co_return;
    if (!c.in.allocated()) c.in = c.worker.buffers().acquire();
    if (c.in.empty()) {  // the first bytes tell TLS from plain HTTP
      IoStatus s = read_done(co_await async_read(c.socket, c.in, c.io_deadline, left()), c.in,
                             c.io_deadline);
      if (s != IoStatus::Ok) {
        tls::count_handshake(s == IoStatus::Timeout ? tls::HandshakeResult::Timeout
                                                    : tls::HandshakeResult::Closed);
        co_return;
      }
    }
    // Only the certificates, and only from here: a silent connection holds no config.
    std::shared_ptr<const tls::CertificateTable> certificates = c.worker.snapshot()->certificates;
    tls::Handshake h = co_await tls::accept(c.socket, c.in.view(), *certificates,
                                            listener.fallback_sni, c.io_deadline, left());
    c.in.clear();
    certificates.reset();
    if (!h.stream) {
      log::debug("TLS handshake with " + c.remote_ip + " failed: " + tls::result_name(h.result) +
                 (h.server_name.empty() ? "" : " (server name " + h.server_name + ")") +
                 (h.detail.empty() ? "" : ": " + h.detail));
      co_return;
    }
    c.stream.use_tls(std::move(h.stream));
    c.server_name = std::move(h.server_name);
    c.client_cert = std::move(h.client);
    c.idle_until_ms = until;  // the first request's wait gets what is left
  } catch (const std::exception& e) {
    log::debug(std::string("TLS handshake ended: ") + e.what());
    co_return;
  }
  co_await run_session(std::move(conn));
}

}  // namespace

void start_client_session(Worker& worker, Socket&& socket, const config::ListenAddress& listener) {
  auto conn = std::make_unique<ClientConnection>(worker, std::move(socket), listener.port);
  if (listener.ssl)
    asio::co_spawn(worker.executor(), run_tls_session(std::move(conn), listener), asio::detached);
  else if (listener.proxy_protocol)
    asio::co_spawn(worker.executor(), run_session_after_proxy_header(std::move(conn), listener),
                   asio::detached);
  else
    asio::co_spawn(worker.executor(), run_session(std::move(conn)), asio::detached);
}

}  // namespace portico::http
