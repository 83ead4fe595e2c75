#include "http/proxy.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "core/log.hpp"
#include "core/peer_watch.hpp"
#include "http/balancer_key.hpp"
#include "http/message_heads.hpp"
#include "http/request_body.hpp"
#include "http/response_body.hpp"
#include "http/responses.hpp"
#include "http/socket_io.hpp"
#include "http/upstream_side.hpp"
#include "http/websocket_relay.hpp"
#include "plugins/runner.hpp"

namespace portico::http {
namespace {

using config::HttpLimits;

constexpr size_t kMaxUpstreamHead = 64 * 1024;

// How the request body travels: none, already whole in the read buffer (replayable on a
// retry), or streamed from the client while it is sent (no retry once sending started).
enum class BodyPlan { None, InBuffer, Stream, Chunked };

bool is_idempotent(std::string_view m) { return m != "POST" && m != "PATCH" && m != "LOCK"; }

bool is_connect_failure(Failure f) {
  return f == Failure::ConnectRefused || f == Failure::ConnectTimeout || f == Failure::TlsFailed;
}

bool is_client_failure(Failure f) {
  return f == Failure::ClientGone || f == Failure::ClientTimeout || f == Failure::BadBody ||
         f == Failure::BodyTooLarge;
}

int failure_status(Failure f) {
  switch (f) {
    case Failure::ConnectTimeout:
    case Failure::ReadTimeout:
    case Failure::SendTimeout:
      return 504;
    case Failure::ClientTimeout:
      return 408;
    case Failure::BodyTooLarge:
      return 413;
    case Failure::BadBody:
      return 400;
    case Failure::ClientGone:
      return 499;
    default:
      return 502;
  }
}

const char* failure_text(Failure f) {
  switch (f) {
    case Failure::None:
      return "no upstream node available";
    case Failure::ConnectRefused:
      return "upstream connect failed";
    case Failure::ConnectTimeout:
      return "upstream connect timed out";
    case Failure::TlsFailed:
      return "upstream TLS handshake failed";
    case Failure::SendFailed:
      return "upstream send failed";
    case Failure::SendTimeout:
      return "upstream send timed out";
    case Failure::ReadTimeout:
      return "upstream read timed out";
    case Failure::ReadFailed:
      return "upstream closed the connection";
    case Failure::BadResponse:
      return "invalid upstream response";
    case Failure::ClientGone:
      return "client closed the connection";
    case Failure::ClientTimeout:
      return "request body timeout";
    case Failure::BadBody:
      return "invalid chunked body";
    case Failure::BodyTooLarge:
      return "request body too large";
  }
  return "upstream failed";
}

// Reads the response head into up.buf, skipping interim 1xx responses (but not 101). `timeout`
// covers the whole head: interim responses trickled by the upstream do not extend it.
Task<Failure> read_response_head(UpstreamSide& up, Exchange& x, double timeout) {
  IoBuffer& ub = up.buf;
  const int64_t until = steady_now_ms() + static_cast<int64_t>(timeout * 1000);
  while (true) {
    ParseResult r = parse_response(ub.view(), kMaxUpstreamHead, x.resp);
    if (r.status == ParseStatus::Error) co_return Failure::BadResponse;
    if (r.status == ParseStatus::Done) {
      if (x.resp.status >= 200 || x.resp.status == 101) co_return Failure::None;
      ub.consume(x.resp.head_size);
      continue;
    }
    if (ub.writable() == 0) {
      ub.compact();
      if (ub.writable() == 0) ub.grow(kMaxUpstreamHead);
    }
    const double left = static_cast<double>(until - steady_now_ms()) / 1000;
    if (left <= 0) co_return Failure::ReadTimeout;
    IoStatus s = read_done(co_await async_read(up.stream, ub, up.deadline, left), ub, up.deadline);
    if (s == IoStatus::Timeout) co_return Failure::ReadTimeout;
    if (s != IoStatus::Ok) co_return Failure::ReadFailed;
  }
}

// The server name for TLS to an https upstream: the Host the request goes with (pass_host
// decides it, as for APISIX's upstream SNI), without its port.
std::string tls_server_name(const std::string& upstream_head) {
  static constexpr std::string_view kHost = "\r\nHost: ";
  size_t at = upstream_head.find(kHost);
  if (at == std::string::npos) return {};
  at += kHost.size();
  std::string_view host(upstream_head.data() + at, upstream_head.find("\r\n", at) - at);
  if (host.starts_with('[')) return std::string(host.substr(1, host.find(']') - 1));  // IPv6
  std::string name(host.substr(0, host.find(':')));
  for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return name;  // (lower case: one pooled TLS session per name, whatever the client's case)
}

// Gets a connection to up.node: a pooled one when `allow_pooled`, else a new one. A request
// that cannot be sent twice (`replayable` false) only gets pooled connections checked with a
// peek, since the stale-connection retry is not possible for it. `server_name`:
// https upstreams, the TLS server name. `client`: a handshake it cancelled is not logged.
Task<Failure> connect(UpstreamSide& up, const config::Upstream& spec, bool allow_pooled,
                      bool replayable, const std::string& server_name, const PeerWatch& client) {
  Worker& w = up.worker;
  up.close();
  up.reused = false;
  const bool https = spec.scheme == "https";
  // A TLS session is good only for the name and verification it was made with.
  // A TLS session is good only for the name and verification it was made with, and the client
  // certificate it showed.
  std::string identity = https ? (spec.tls_verify ? "verify " : "any ") + server_name : "";
  if (https && spec.tls_client) identity += " cert " + spec.tls_client->digest;
  if (allow_pooled) {
    if (auto pooled = w.pool().take(up.node->endpoint, identity, !replayable)) {
      up.socket = std::move(pooled->socket);
      up.stream.use_tls(std::move(pooled->tls));
      up.tls_identity = std::move(pooled->tls_identity);
      up.requests = pooled->requests;
      up.reused = true;
      co_return Failure::None;
    }
  }
  up.socket = Socket(w.executor());
  up.requests = 0;
  // timeout.connect covers the TLS handshake too.
  const int64_t connect_until = steady_now_ms() + static_cast<int64_t>(spec.connect_timeout * 1000);
  up.deadline.arm(spec.connect_timeout, &up.socket);
  auto [ec] = co_await up.socket.async_connect(up.node->endpoint, await_ec);
  bool timed_out = up.deadline.fired();
  up.deadline.disarm();
  if (ec) co_return timed_out ? Failure::ConnectTimeout : Failure::ConnectRefused;
  up.socket.set_option(asio::ip::tcp::no_delay(true), ec);
  up.socket.non_blocking(true, ec);  // for write_now()
  if (!https) co_return Failure::None;
  const std::string ip = up.node->endpoint.address().to_string();
  const double left = std::max(0.001, static_cast<double>(connect_until - steady_now_ms()) / 1000);
  tls::Connected tls = co_await tls::connect(up.socket, server_name, ip, spec.tls_verify,
                                             up.deadline, left, spec.tls_client.get());
  if (!tls.stream) {
    if (!client.gone())
      log::warn("TLS handshake with upstream " + up.node->address +
                (server_name.empty() ? "" : " (" + server_name + ")") + " failed: " + tls.error);
    up.close();
    co_return tls.timed_out ? Failure::ConnectTimeout : Failure::TlsFailed;
  }
  up.stream.use_tls(std::move(tls.stream));
  up.tls_identity = std::move(identity);
  co_return Failure::None;
}

Task<bool> send_100_continue(ClientConnection& c, const HttpLimits& limits) {
  static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
  co_return write_done(
      co_await async_write_all(c.stream, asio::buffer(k100), c.io_deadline, limits.send_timeout),
      c.io_deadline) == IoStatus::Ok;
}

// Reads until the read buffer holds `total` bytes (request head and whole body).
Task<Failure> read_whole_body(ClientConnection& c, size_t total, const HttpLimits& limits) {
  while (c.in.size() < total) {
    IoStatus s = read_done(co_await async_read(c.stream, c.in, c.io_deadline,
                                               limits.client_body_timeout, total - c.in.size()),
                           c.in, c.io_deadline);
    if (s == IoStatus::Timeout) co_return Failure::ClientTimeout;
    if (s != IoStatus::Ok) co_return Failure::ClientGone;
  }
  co_return Failure::None;
}

bool retries_on(const config::Upstream& spec, int status) {
  return std::find(spec.retry_on_statuses.begin(), spec.retry_on_statuses.end(), status) !=
         spec.retry_on_statuses.end();
}

// How a failed attempt counts for passive health checks (lua-resty-healthcheck's kinds).
upstream::Outcome health_outcome(Failure f) {
  switch (f) {
    case Failure::ConnectTimeout:
    case Failure::SendTimeout:
    case Failure::ReadTimeout:
      return upstream::Outcome::Timeout;
    default:
      return upstream::Outcome::TcpFailure;
  }
}

// Tells the balancer when a node starts and stops serving this request: it counts as busy
// until the request is over (least_conn), and its latency is measured to the response head, or
// to the failure (ewma).
class NodeUse {
 public:
  NodeUse(const upstream::UpstreamTarget& target, int worker) : target_(target), worker_(worker) {}
  ~NodeUse() {
    release();
    if (session_node_ >= 0) target_.session_closed(session_node_);
  }
  NodeUse(const NodeUse&) = delete;
  NodeUse& operator=(const NodeUse&) = delete;

  void start(int node) {
    release();
    node_ = node;
    started_us_ = now_us();
    target_.started(worker_, node);
  }
  void answered(bool failed) {
    if (node_ < 0) return;
    latency_us_ = last_latency_us_ = now_us() - started_us_;
    failed_ = failed;
    if (failed) release();
  }
  // A 5xx answer: the node serves this request to its end (least_conn), but for ewma it is a
  // failure, or a node that answers 503 at once would look fastest and draw all the traffic.
  void answered_with_server_error() {
    answered(false);
    failed_ = node_ >= 0;
  }
  // The client failed or left while the node worked: the time so far is not the node's
  // latency (a hung node would look as fast as its clients are impatient).
  void abandon() {
    if (node_ < 0) return;
    target_.abandoned(worker_, node_, now_us() - started_us_, now_us());
    forget();
  }
  // The request became a WebSocket relay (after its 101): a long session from now on, counted
  // as such until this ends (UpstreamTarget::session_opened).
  void become_session() {
    if (node_ < 0) return;
    const int node = node_;
    release();
    target_.session_opened(node);
    session_node_ = node;
  }
  int64_t latency_us() const { return latency_us_; }
  int64_t last_latency_us() const { return last_latency_us_; }

 private:
  void release() {
    if (node_ < 0) return;
    int64_t now = now_us();
    target_.finished(worker_, node_, latency_us_ >= 0 ? latency_us_ : now - started_us_, failed_,
                     now);
    forget();
  }
  void forget() {
    node_ = -1;
    latency_us_ = -1;
    failed_ = false;
  }

  const upstream::UpstreamTarget& target_;
  int worker_;
  int node_ = -1;
  int64_t started_us_ = 0;
  int64_t latency_us_ = -1;
  int64_t last_latency_us_ = 0;  // survives release(), for the quality figures
  bool failed_ = false;
  int session_node_ = -1;
};

// A request in flight on an upstream, for its retry budget: sending it again (after it was sent
// once) takes a slot of the budget, held until the request ends.
class BudgetedRequest {
 public:
  BudgetedRequest(const upstream::UpstreamTarget& target, int worker)
      : target_(target), worker_(worker) {
    target_.request_started(worker_);
  }
  ~BudgetedRequest() { finish(); }
  BudgetedRequest(const BudgetedRequest&) = delete;
  BudgetedRequest& operator=(const BudgetedRequest&) = delete;

  bool may_resend() {
    if (!resending_) resending_ = target_.may_resend(worker_);
    return resending_;
  }
  // The attempts are over: what follows (the response body, a WebSocket relay for hours) is no
  // longer a request the budget counts.
  void finish() {
    if (finished_) return;
    finished_ = true;
    target_.request_finished(worker_, resending_);
  }

 private:
  const upstream::UpstreamTarget& target_;
  int worker_;
  bool resending_ = false;
  bool finished_ = false;
};

}  // namespace

namespace {

// Writes x.response_head, a whole answer made by the gateway, and logs the exchange.
Task<bool> send_answer(ClientConnection& c, Exchange& x, bool keep, const HttpLimits& limits) {
  auto out = asio::buffer(x.response_head);
  IoStatus s = write_now(c.stream, out, x.unsent)
                   ? x.unsent.status
                   : co_await write_rest(c.stream, x.unsent, c.io_deadline, limits.send_timeout);
  x.bytes_out += x.response_head.size();
  record_exchange(c, x);
  if (!keep) c.needs_lingering_close = true;
  co_return keep && (s == IoStatus::Ok);
}

// Sends x.ctx.reply (a plugin's answer, or a gateway error on a route with plugins) after the
// header_filter phase, so plugins' headers (request id, CORS) reach every answer.
Task<bool> write_local_reply(ClientConnection& c, Exchange& x, bool keep,
                             const HttpLimits& limits) {
  plugins::Context& ctx = x.ctx;
  ctx.status = ctx.reply.status;
  plugins::run_header_filter(ctx);
  int status = ctx.response_status.value_or(ctx.reply.status);
  build_local_response(x.response_head, status, ctx.reply.content_type,
                       ctx.response_body ? *ctx.response_body : ctx.reply.body,
                       ctx.response_headers, keep, x.method == "HEAD");
  x.status = status;
  co_return co_await send_answer(c, x, keep, limits);
}

bool may_keep_alive(const ClientConnection& c, const Exchange& x, const HttpLimits& limits) {
  return x.req.keep_alive && !c.worker.draining() &&
         c.requests < static_cast<uint32_t>(limits.keepalive_requests) &&
         limits.keepalive_timeout > 0;
}

}  // namespace

Task<bool> respond_error(ClientConnection& c, Exchange& x, int status, std::string_view message,
                         bool keep_alive, const HttpLimits& limits) {
  bool keep = keep_alive && may_keep_alive(c, x, limits);
  if (x.with_plugins) {
    x.ctx.respond_error(status, message);
    co_return co_await write_local_reply(c, x, keep, limits);
  }
  build_error_response(x.response_head, status, message, keep, x.method == "HEAD");
  x.status = status;
  co_return co_await send_answer(c, x, keep, limits);
}

Task<bool> respond_plugin_reply(ClientConnection& c, Exchange& x, const HttpLimits& limits) {
  // An unread body forces a close; a bodyless request's head is done with.
  bool bodyless = !x.req.has_body();
  if (bodyless) c.in.consume(x.req.head_size);
  co_return co_await write_local_reply(c, x, bodyless && may_keep_alive(c, x, limits), limits);
}

namespace {

// A plugin serves the request (tlv-bridge: a WebSocket session, or one RPC over HTTP) with the
// whole request in hand. Its HTTP answer goes out like any plugin's; a session that used the
// connection up was logged when it answered (it may last hours).
Task<bool> take_over_request(ClientConnection& c, Exchange& x, const config::CompiledRoute& route,
                             std::shared_ptr<const config::Snapshot>& snapshot, size_t body_bytes,
                             const HttpLimits& limits) {
  const bool whole = body_bytes == static_cast<size_t>(std::max<int64_t>(x.req.content_length, 0));
  if (!whole || x.req.chunked)  // the plugin's body_limit() refused such requests in access
    co_return co_await respond_error(c, x, 413, "request body too large", false, limits);
  const char* head_base = c.in.data();  // intact until the session reads (pin_session)
  std::string_view body(c.in.data() + x.req.head_size, body_bytes);
  c.in.consume(x.req.head_size + body_bytes);
  // An upgraded session lets go of the snapshot: what it still uses is held here instead (the
  // route's upstream; the plugins whose log phase runs when it ends, pinned at the upgrade).
  std::shared_ptr<const upstream::UpstreamTarget> target = route.target_for(x.ctx.upstream_choice);
  SessionPins pins;
  LogPhaseOnThrow log_on_throw(x);  // (after pins: the pinned session's Context points into them)
  bool upgraded = false;
  plugins::Takeover io{c.worker,
                       c.stream,
                       c.in,
                       body,
                       *target,
                       snapshot->protos,
                       limits.send_timeout,
                       [&](int status) {
                         x.status = status;
                         record_exchange(c, x, /*log_phase=*/false);
                         upgraded = true;
                         pin_session(pins, *snapshot, route, head_base, x);
                         x.route_id = nullptr;
                         snapshot.reset();  // `route`, `limits`, io.protos are gone from here on
                       },
                       target};
  if (!co_await x.ctx.takeover->take_over(x.ctx, io)) {
    // The session is over: now the log phase (limit-conn counted it until here).
    if (upgraded && x.with_plugins) {
      x.ctx.status = x.status;
      fill_log_facts(x);
      plugins::run_log(x.ctx);
    }
    co_return false;
  }
  co_return co_await write_local_reply(c, x, may_keep_alive(c, x, limits), limits);
}

}  // namespace

Task<bool> proxy_request(ClientConnection& c, Exchange& x, const config::CompiledRoute& route,
                         std::shared_ptr<const config::Snapshot>& snapshot,
                         const HttpLimits& limits) {
  Worker& w = c.worker;
  // The route's upstream, or the one a plugin chose (traffic-split).
  const std::shared_ptr<const upstream::UpstreamTarget>& chosen =
      route.target_for(x.with_plugins ? x.ctx.upstream_choice : -1);
  const upstream::UpstreamTarget& target = *chosen;
  // A WebSocket relay lets go of the snapshot once upgraded (relay_websocket): the upstream it
  // uses (balancer state, NodeUse below) is held here instead.
  std::shared_ptr<const upstream::UpstreamTarget> relay_target;
  const config::Upstream& spec = target.spec();
  const RequestHead& req = x.req;
  const bool websocket = route.websocket && req.upgrade_websocket;
  // An upgrade is a GET without a body (RFC 6455 4.1); with one, the bytes after the head
  // would be both the body and the first frames (nginx refuses these too).
  if (websocket && (req.chunked || req.content_length > 0))
    co_return co_await respond_error(c, x, 400, "a WebSocket upgrade request has no body", false,
                                     limits);
  if (websocket) relay_target = chosen;
  size_t head = req.head_size;
  size_t buffered = 0;  // body bytes that arrived with the head
  BodyPlan plan = BodyPlan::None;
  if (req.chunked) {
    plan = BodyPlan::Chunked;
  } else if (req.content_length > 0) {
    buffered = std::min<size_t>(c.in.size() - head, static_cast<size_t>(req.content_length));
    plan =
        buffered == static_cast<size_t>(req.content_length) ? BodyPlan::InBuffer : BodyPlan::Stream;
  }
  // A body that fits the read buffer is read whole before any upstream is involved (as nginx
  // buffers request bodies): the request stays replayable for retries, and a slow client holds
  // no upstream connection. A plugin that inspects bodies (WAF) gets its first bytes read too.
  const size_t scan = x.with_plugins ? plugins::body_limit(x.ctx) : 0;
  size_t want = 0;  // head and body bytes to hold before going upstream
  if (plan == BodyPlan::Stream) {
    size_t total = head + static_cast<size_t>(req.content_length);
    if (total <= c.in.capacity())
      want = total;
    else if (scan > 0)
      want = head + std::min<size_t>(scan, static_cast<size_t>(req.content_length));
  }
  if (want > 0) {
    if (req.expect_continue && buffered == 0 && !co_await send_100_continue(c, limits))
      co_return false;
    if (c.in.size() + c.in.writable() < want) {
      // Moving the bytes in the buffer moves what x.req points into: parse again.
      const char* old_base = c.in.data();
      c.in.compact();
      if (c.in.capacity() < want) c.in.grow(want);
      parse_moved_head(c.in.view().substr(0, head), old_base, x);
    }
    Failure f = co_await read_whole_body(c, want, limits);
    if (f != Failure::None) {
      if (f == Failure::ClientGone) co_return false;
      co_return co_await respond_error(c, x, failure_status(f), failure_text(f), false, limits);
    }
    buffered = want - head;
    if (buffered == static_cast<size_t>(req.content_length)) plan = BodyPlan::InBuffer;
  }
  if (scan > 0 && plan == BodyPlan::Chunked && plugins::body_length_required(x.ctx)) {
    // Chunk framing would let a pattern hide across chunks: bodies that must be inspected
    // need a length (curl, browsers and mobile SDKs send one for API bodies).
    co_return co_await respond_error(c, x, 411, "a Content-Length is required on this route", false,
                                     limits);
  }
  if (scan > 0 && buffered > 0 && plan != BodyPlan::Chunked &&
      plugins::run_body_phase(x.ctx, std::string_view(c.in.data() + head, buffered)) ==
          plugins::Step::Respond)
    co_return co_await respond_plugin_reply(c, x, limits);
  if (x.with_plugins && plugins::run_before_proxy(x.ctx) == plugins::Step::Respond)
    co_return co_await respond_plugin_reply(c, x, limits);
  if (x.with_plugins && x.ctx.takeover)
    co_return co_await take_over_request(c, x, route, snapshot, buffered, limits);
  const bool streamed_body = plan == BodyPlan::Stream || plan == BodyPlan::Chunked;
  const bool retry_after_send =
      !streamed_body && (is_idempotent(req.method) || spec.retry_non_idempotent);
  bool body_sent = false;           // a streamed body cannot be sent twice
  bool body_done = !streamed_body;  // the client's body was read to its end

  if (req.expect_continue && streamed_body && c.in.size() == head &&
      !co_await send_100_continue(c, limits))
    co_return false;

  UpstreamSide up(w);
  upstream::TriedNodes tried;
  const int max_attempts = target.max_attempts();
  const int64_t retry_until =
      spec.retry_timeout > 0 ? steady_now_ms() + static_cast<int64_t>(spec.retry_timeout * 1000)
                             : 0;
  Failure failure = Failure::None;
  const int64_t up_start = now_us();
  const std::string_view client_ip = x.with_plugins ? x.ctx.client_ip : c.remote_ip;
  const ClientFacts facts{client_ip, c.local_port, c.remote_ip, c.stream.secure()};
  const plugins::RequestEdits* edits =
      x.with_plugins && !x.ctx.upstream.empty() ? &x.ctx.upstream : nullptr;
  // Copied now: the head's bytes may be reused by the time a retry picks again.
  const std::string hash_key =
      spec.type == "chash" ? balancer_key(spec, req, client_ip, c.local_port) : std::string();
  // The node serving the request is counted as busy until this function returns (least_conn);
  // each attempt's latency or failure teaches the ewma balancer.
  NodeUse use(target, w.index());
  BudgetedRequest budget(target, w.index());
  int next_idx = upstream::UpstreamTarget::kNone;  // already picked for a status retry
  // A client that gives up while the gateway waits on a node for it (connect, send, response
  // head) cancels the attempt, and nothing more is tried for it (499). A streamed body is read
  // from the client meanwhile: its end shows there, and the watch starts after it.
  PeerWatch client_watch;
  w.peer_watches().add(client_watch);
  if (!streamed_body) client_watch.start(c.socket, up.socket);
  auto client_left = [&] {
    if (client_watch.gone()) failure = Failure::ClientGone;
    return client_watch.gone();
  };

  while (x.attempts < max_attempts) {
    if (client_left()) break;
    if (x.attempts > 0 && retry_until && steady_now_ms() >= retry_until) break;
    int idx = next_idx != upstream::UpstreamTarget::kNone
                  ? next_idx
                  : target.pick(w.index(), tried, hash_key, now_us());
    next_idx = upstream::UpstreamTarget::kNone;
    if (idx == upstream::UpstreamTarget::kNone) break;
    tried.add(static_cast<size_t>(idx));
    use.start(idx);
    ++x.attempts;
    up.node = &target.nodes()[static_cast<size_t>(idx)];
    if (!x.upstream_addrs.empty()) x.upstream_addrs += ", ";
    x.upstream_addrs += up.node->address;
    build_upstream_head(x.upstream_head, req, facts, *up.node, spec, websocket, edits);
    // (A named local: GCC 12 mishandles class-type temporaries of ?: in co_await arguments.)
    const std::string server_name =
        spec.scheme == "https" ? tls_server_name(x.upstream_head) : std::string();

    // A pooled connection may have been closed by the node meanwhile: then one fresh try on the
    // same node. Only for requests that may be sent twice: a node may close a connection after
    // acting on a POST it never answered (nginx does not resend those either). Others get only
    // pooled connections that look open (connect()).
    for (int fresh = 0; fresh < 2; ++fresh) {
      failure = co_await connect(up, spec, fresh == 0, retry_after_send, server_name, client_watch);
      if (failure != Failure::None) {
        client_left();
        break;
      }
      std::array<asio::const_buffer, 2> bufs{asio::buffer(x.upstream_head),
                                             asio::buffer(c.in.data() + head, buffered)};
      IoStatus s = write_now(up.stream, bufs, x.unsent)
                       ? x.unsent.status
                       : co_await write_rest(up.stream, x.unsent, up.deadline, spec.send_timeout);
      if (s != IoStatus::Ok) {
        if (client_left()) break;
        if (up.reused && retry_after_send) continue;
        failure = s == IoStatus::Timeout ? Failure::SendTimeout : Failure::SendFailed;
        break;
      }
      if (streamed_body) {
        body_sent = true;
        uint64_t remaining =
            plan == BodyPlan::Stream ? static_cast<uint64_t>(req.content_length) - buffered : 0;
        x.bytes_in += buffered;
        if (x.with_plugins) {  // the body is read over the head: plugins read it later
          x.kept_head.assign(c.in.data(), head);
          parse_moved_head(x.kept_head, c.in.data(), x);
        }
        c.in.consume(head + buffered);
        head = buffered = 0;
        failure = co_await stream_request_body(c, x, plan == BodyPlan::Chunked, remaining, up, spec,
                                               limits);
        if (failure != Failure::None) break;
        body_done = true;
        client_watch.start(c.socket, up.socket);
      }
      up.buf.clear();
      failure = co_await read_response_head(up, x, spec.read_timeout);
      if (failure == Failure::None || client_left()) break;
      if (up.reused && retry_after_send && failure == Failure::ReadFailed && up.buf.empty())
        continue;
      break;
    }
    if (failure == Failure::None || is_client_failure(failure)) {
      if (failure != Failure::None) {
        use.abandon();  // a client that went away says nothing about the node
        break;
      }
      if (x.resp.status >= 500)
        use.answered_with_server_error();
      else
        use.answered(false);
      target.report(idx, upstream::Outcome::Success, x.resp.status);
      target.observe(idx, upstream::Outcome::Success, x.resp.status, use.latency_us());
      // retry_on_statuses (Portico): an answer like 502/503 from one node is retried on the
      // next when the request may be sent again, and only when there is a next node: otherwise
      // the client gets this answer rather than a made-up one.
      if (!retry_after_send || !retries_on(spec, x.resp.status) || x.attempts >= max_attempts ||
          (retry_until && steady_now_ms() >= retry_until))
        break;
      next_idx = target.pick(w.index(), tried, hash_key, now_us());
      if (next_idx == upstream::UpstreamTarget::kNone || !budget.may_resend()) break;
      x.upstream_addrs += " (" + std::to_string(x.resp.status) + ")";
      up.close();
      continue;
    }
    use.answered(true);
    // A handshake that failed for a server name the client chose (its Host, pass_host: pass)
    // says nothing about the node: it neither counts against it nor moves on to the others
    // (one request with a made-up Host must not eject every node).
    const bool client_named = failure == Failure::TlsFailed &&
                              spec.pass_host == config::PassHost::Pass && !(edits && edits->host);
    if (!client_named) {
      target.report(idx, health_outcome(failure), 0);
      target.observe(idx, health_outcome(failure), 0, use.last_latency_us());
    }
    up.close();
    log::warn("upstream " + up.node->address + " failed for route " + route.id + ": " +
              failure_text(failure));
    bool retry = !client_named && (is_connect_failure(failure) ||
                                   (retry_after_send && failure != Failure::BadResponse));
    if (!retry) break;
    // Nothing reached the node after a connect failure: always retried. A request sent already
    // is sent again only within the retry budget (a slow node under load must not get every
    // request twice), asked only when a next attempt can be made.
    if (!is_connect_failure(failure)) {
      if (x.attempts >= max_attempts || (retry_until && steady_now_ms() >= retry_until)) break;
      next_idx = target.pick(w.index(), tried, hash_key, now_us());
      if (next_idx == upstream::UpstreamTarget::kNone || !budget.may_resend()) break;
    }
  }
  client_watch.stop();
  budget.finish();
  x.upstream_us = x.attempts > 0 ? now_us() - up_start : 0;

  if (failure == Failure::ClientGone) {
    x.status = 499;
    record_exchange(c, x);
    co_return false;
  }
  if (failure != Failure::None || x.attempts == 0) {
    up.close();
    if (!streamed_body) {  // head and body were whole in the buffer: skip them cleanly
      x.bytes_in += buffered;
      c.in.consume(head + buffered);
    }
    co_return co_await respond_error(c, x, failure_status(failure), failure_text(failure),
                                     body_done, limits);
  }

  x.upstream_status = x.resp.status;
  if (!body_sent) x.bytes_in += buffered;
  if (x.resp.status == 101) {
    if (!websocket) {
      up.close();
      co_return co_await respond_error(c, x, 502, "unexpected 101 from upstream", false, limits);
    }
    use.become_session();
    co_return co_await relay_websocket(c, x, up, route, snapshot, limits);
  }
  if (!body_sent) c.in.consume(head + buffered);  // the request's views are not used past here
  co_return co_await forward_response(c, x, up, spec, limits);
}

}  // namespace portico::http
