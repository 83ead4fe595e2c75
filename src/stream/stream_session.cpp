#include "stream/stream_session.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/co_spawn.hpp>

#include "core/log.hpp"
#include "core/worker.hpp"
#include "http/socket_io.hpp"
#include "stream/proxy_address.hpp"
#include "stream/proxy_protocol.hpp"
#include "stream/stream_route.hpp"
#include "stream/tlv_filter.hpp"
#include "tls/stream.hpp"

namespace portico::stream {
namespace {

using metrics::StreamClose;
using metrics::StreamDirection;

// A busy direction keeps its read buffer (the next read needs no extra system call); after this
// long without bytes it is parked: no buffer, just a readiness wait (see http/client_session).
constexpr double kBufferedIdleSeconds = 2.0;
constexpr double kProxyHeaderTimeout = 10.0;
constexpr double kTlsHandshakeTimeout = 10.0;  // from the connection to a finished handshake
constexpr double kTlsCloseSeconds = 2.0;       // waiting for the client's close_notify after ours
constexpr size_t kMaxLinks = 16;  // upstream connections one client connection may open
// A sub-route whose upstream accepts no connection: its frames are answered at the edge with
// this status (cmd + 1, same seq) for this long, then connecting is tried again.
constexpr uint32_t kUpstreamUnavailableStatus = 503;
constexpr int64_t kUnavailableRetryMs = 1000;

StreamClose close_reason(TlvError e) {
  switch (e) {
    case TlvError::BadStartMarker:
      return StreamClose::BadStartMarker;
    case TlvError::BadEndMarker:
      return StreamClose::BadEndMarker;
    case TlvError::BadLength:
      return StreamClose::BadLength;
    case TlvError::Oversize:
      return StreamClose::Oversize;
    default:
      return StreamClose::Truncated;
  }
}

// Makes room for `need` more bytes after the unread ones (a frame larger than one pool buffer
// gets a buffer of its own; the framing's max_body bounds it).
void reserve(IoBuffer& b, size_t need) {
  if (b.writable() >= need) return;
  b.compact();
  if (b.writable() < need) b.grow(b.size() + need);
}

// Bytes a socket would not take at once. Holds a buffer only while it has some.
struct Output {
  IoBuffer pending;
  Deadline deadline;  // send timeout while waiting; closes the socket
  bool waiting = false;
  bool shutdown_after = false;  // half-close once flushed
  bool writing = false;         // TLS: a write is in progress (pending collects what follows)
  bool busy() const { return writing || !pending.empty(); }
};

// One upstream connection of a client connection: the route's own upstream, or a sub-route's
// (one per node with hash_on: to).
struct Link {
  explicit Link(Worker& w) : socket(w.executor()) {
    w.deadlines().add(read_deadline);
    w.deadlines().add(out.deadline);
  }
  int sub_route = -1;
  const upstream::UpstreamTarget* target = nullptr;
  bool hashed = false;
  uint64_t hash_to = 0;
  int node = -1;
  Socket socket;
  IoBuffer in;
  Deadline read_deadline;  // connect timeout, then the parking timer
  Output out;
  upstream::TriedNodes tried;
  int attempts = 0;
  bool connected = false;
  bool counted = false;  // started() on its node: released when the session ends (least_conn)
  bool reading = false;
  bool eof = false;
  int64_t failed_until_ms = 0;  // a sub-route link that could not connect (0: not failed)
  // TLV: how long the link has been read while `in` holds part of a frame, since a frame last
  // completed. Only time spent reading counts: while the client holds the link back, the
  // backend is not late.
  int64_t read_started_ms = 0;
  int64_t stalled_ms = 0;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Worker& w, Socket&& s, const config::ListenAddress& listener)
      : w_(w), client_(std::move(s)), listener_(listener) {
    w_.deadlines().add(client_deadline_);
    w_.deadlines().add(client_out_.deadline);
    w_.connections.fetch_add(1, std::memory_order_relaxed);
    w_.stream_metrics.opened();
  }
  ~Session() {
    if (holds_conn_slot_) route_->plugins->counts->add(conn_key_, -1);
    BufferPool& pool = w_.buffers();
    pool.release(in_);
    pool.release(client_out_.pending);
    for (auto& l : links_) {
      pool.release(l->in);
      pool.release(l->out.pending);
      if (l->counted) l->target->session_closed(l->node);
    }
    if (!closed_) w_.stream_metrics.closed(StreamClose::Shutdown);
    w_.connections.fetch_sub(1, std::memory_order_relaxed);
  }

  void start() {
    error_code ec;
    client_.non_blocking(true, ec);
    auto remote = client_.remote_endpoint(ec);
    if (ec) return close(StreamClose::ClientError);
    auto local = client_.local_endpoint(ec);
    endpoints_ = {proxy_address(remote), proxy_address(local)};
    last_client_ms_ = steady_now_ms();  // TLS: the handshake's budget runs from here
    local_bytes_ = endpoints_.destination.bytes;
    if (listener_.proxy_protocol) {
      if (!listener_.trusts(endpoints_.source.bytes)) return close(StreamClose::ProxyHeader);
      in_ = w_.buffers().acquire();
      client_deadline_.arm(kProxyHeaderTimeout, &client_);
      return read_proxy_header();
    }
    after_proxy_header();
  }

 private:
  const TlvFraming& framing() const { return route_->tlv->framing; }
  bool tlv() const { return route_->tlv != nullptr; }
  metrics::StreamCounters& counters() { return w_.stream_metrics; }
  bool named(uint32_t cmd) const {
    const auto& n = route_->tlv->named_cmds;
    return std::binary_search(n.begin(), n.end(), cmd);
  }
  // Closed, or telling the TLS client so: nothing more is read or written for the connection.
  bool ending() const { return closed_ || tls_closing_; }
  double idle_timeout() const {
    return tlv() ? route_->tlv->idle_timeout : route_->upstream->spec().read_timeout;
  }
  // Seconds until the connection has been quiet for idle_timeout (<= 0: it has). Client bytes
  // count, and for plain TCP upstream bytes too (traffic either way keeps it open).
  double idle_left(int64_t now) const {
    return static_cast<double>(last_client_ms_ - now) / 1000.0 + idle_timeout();
  }

  // ---- PROXY header (stream listeners with proxy_protocol) ------------------------------
  void read_proxy_header() {
    client_.async_read_some(asio::buffer(in_.write_ptr(), in_.writable()),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              self->on_proxy_header_bytes(ec, n);
                            });
  }
  void on_proxy_header_bytes(error_code ec, size_t n) {
    if (closed_) return;
    if (ec) {
      client_deadline_.disarm();
      w_.proxy_protocol_rejections.truncated.fetch_add(1, std::memory_order_relaxed);
      return close(StreamClose::ProxyHeader);
    }
    in_.commit(n);
    ProxyParseResult r = parse_proxy_header(in_.view());
    if (r.status == ProxyParseStatus::NeedMore && in_.writable() > 0) return read_proxy_header();
    client_deadline_.disarm();
    if (r.status != ProxyParseStatus::Done) {
      w_.proxy_protocol_rejections.invalid.fetch_add(1, std::memory_order_relaxed);
      return close(StreamClose::ProxyHeader);
    }
    if (r.header.endpoints) endpoints_.source = r.header.endpoints->source;
    in_.consume(r.header.length);
    after_proxy_header();
  }

  void after_proxy_header() {
    if (!listener_.ssl) return choose_route();
    if (!in_.allocated()) in_ = w_.buffers().acquire();
    client_deadline_.arm(handshake_time_left(), &client_);
    if (!in_.empty()) return handshake();  // bytes that came behind the PROXY header
    client_.async_read_some(asio::buffer(in_.write_ptr(), in_.writable()),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              if (self->closed_) return;
                              if (ec) {
                                self->client_deadline_.disarm();
                                tls::count_handshake(self->client_deadline_.fired()
                                                         ? tls::HandshakeResult::Timeout
                                                         : tls::HandshakeResult::Closed);
                                return self->close(StreamClose::TlsHandshake);
                              }
                              self->in_.commit(n);
                              self->handshake();
                            });
  }

  // ---- TLS (stream listeners with ssl) ------------------------------------------------------
  // One budget from the connection to a finished handshake, however slowly the PROXY header
  // and the hello come.
  double handshake_time_left() const {
    double spent = static_cast<double>(steady_now_ms() - last_client_ms_) / 1000.0;
    return std::max(kTlsHandshakeTimeout - spent, 0.001);
  }

  void handshake() {
    // The certificates of the running config, held for the handshake only.
    certificates_ = w_.snapshot()->certificates;
    asio::co_spawn(w_.executor(),
                   tls::accept(client_, in_.view(), *certificates_, listener_.fallback_sni,
                               client_deadline_, handshake_time_left(), false),
                   [self = shared_from_this()](std::exception_ptr e, tls::Handshake h) {
                     self->on_handshake(e, std::move(h));
                   });
  }

  void on_handshake(std::exception_ptr e, tls::Handshake h) {
    client_deadline_.disarm();
    certificates_.reset();
    if (e) tls::count_handshake(tls::HandshakeResult::Failed);  // accept() counts the rest
    if (closed_) return;
    if (e || h.result != tls::HandshakeResult::Ok) return close(StreamClose::TlsHandshake);
    // mTLS: a stream has no paths for skip_mtls_uri_regex to let through.
    if (h.client && !h.client->verified) return close(StreamClose::TlsHandshake);
    tls_ = std::move(h.stream);
    server_name_ = std::move(h.server_name);
    in_.clear();
    choose_route();
  }

  // Reads the client over TLS into in_ (completes in on_client_read).
  void read_tls(double timeout) {
    client_deadline_.arm(timeout, &client_);
    asio::co_spawn(w_.executor(),
                   tls::read_some(*tls_, asio::buffer(in_.write_ptr(), in_.writable())),
                   [self = shared_from_this()](std::exception_ptr e, IoResult r) {
                     auto [ec, n] = r;
                     if (e) ec = asio::error::connection_aborted;
                     self->on_client_read(ec, n);
                   });
  }

  // Starts writing client_out_'s bytes over TLS; more bytes queue in `pending` meanwhile.
  void write_tls() {
    Output& o = client_out_;
    tls_sending_.assign(o.pending.view());
    w_.buffers().release(o.pending);
    o.writing = true;
    write_tls_rest();
  }

  void write_tls_rest() {
    Output& o = client_out_;
    o.deadline.arm(idle_timeout(), &client_, nullptr, true);
    asio::co_spawn(w_.executor(), tls::write_all(*tls_, asio::buffer(tls_sending_)),
                   [self = shared_from_this()](std::exception_ptr e, IoResult r) {
                     self->on_tls_written(e, r);
                   });
  }

  void on_tls_written(std::exception_ptr e, IoResult r) {
    Output& o = client_out_;
    auto [ec, n] = r;
    if (ending()) return;
    if (!e && ec == asio::error::operation_aborted && !o.deadline.fired() && client_.is_open()) {
      // A read deadline cancelled it: OpenSSL keeps the record it was sending; write on.
      tls_sending_.erase(0, n);
      return write_tls_rest();
    }
    o.deadline.disarm();
    o.writing = false;
    if (e || ec) return close(StreamClose::ClientError);
    std::string().swap(tls_sending_);  // an idle connection keeps no buffer (memory per client)
    if (!o.pending.empty()) return write_tls();
    wake();
  }

  // ---- route and upstream connections ----------------------------------------------------
  void choose_route() {
    // Only the route is kept, not the snapshot: a long-lived connection pins its route alone.
    const auto& snapshot = w_.snapshot();
    const StreamRoutePtr* m =
        match_stream_route(snapshot->stream_routes, listener_.port, endpoints_.source.bytes,
                           local_bytes_, server_name_);
    if (!m) return close(StreamClose::NoRoute);
    route_ = *m;
    if (const StreamPlugins* p = route_->plugins.get()) {
      if (!p->admits(endpoints_.source.bytes)) return close(StreamClose::IpRefused);
      if (p->limit_conn) {
        conn_key_ = p->key_is_server_addr ? endpoints_.destination.ip_string()
                                          : endpoints_.source.ip_string();
        int64_t n = p->counts->add(conn_key_, 1);
        if (n > p->conn + p->burst) {
          p->counts->add(conn_key_, -1);
          return close(StreamClose::ConnLimited);
        }
        holds_conn_slot_ = true;
        if (double delay = p->conn_delay(n); delay > 0) {
          // Over conn, within burst: nothing is read or connected until the delay is over.
          delay_timer_ = std::make_unique<Timer>(w_.executor());
          delay_timer_->expires_after(std::chrono::microseconds(static_cast<int64_t>(delay * 1e6)));
          delay_timer_->async_wait([self = shared_from_this()](error_code) {
            self->delay_timer_.reset();
            if (!self->closed_) self->start_upstream();
          });
          return;
        }
      }
    }
    start_upstream();
  }

  void start_upstream() {
    last_client_ms_ = steady_now_ms();
    // The route's own upstream is connected at once: backends push to the client over it.
    open_link(-1, route_->upstream.get(), false, 0);
  }

  Link& open_link(int sub_route, const upstream::UpstreamTarget* target, bool hashed, uint64_t to) {
    links_.push_back(std::make_unique<Link>(w_));
    Link& l = *links_.back();
    l.sub_route = sub_route;
    l.target = target;
    l.hashed = hashed;
    l.hash_to = to;
    connect(l);
    return l;
  }

  // The link that carries a frame for `sub_route`, opened on first use; null when too many.
  Link* link_for(int sub_route, const TlvHeader& h) {
    bool hashed = sub_route >= 0 && route_->sub_routes[static_cast<size_t>(sub_route)].hash_on_to;
    for (auto& l : links_)
      if (l->sub_route == sub_route && (!hashed || l->hash_to == h.to)) return l.get();
    if (hashed) {  // another user id may hash to a node a link already goes to
      const auto* target = route_->sub_routes[static_cast<size_t>(sub_route)].target.get();
      char key[24];
      auto end = std::to_chars(key, key + sizeof(key), h.to).ptr;
      int node = target->pick(w_.index(), upstream::TriedNodes{}, std::string_view(key, end - key),
                              steady_now_us());
      for (auto& l : links_)
        if (l->sub_route == sub_route && l->node == node && l->connected) return l.get();
    }
    if (links_.size() >= kMaxLinks) return nullptr;
    const auto* target = sub_route < 0
                             ? route_->upstream.get()
                             : route_->sub_routes[static_cast<size_t>(sub_route)].target.get();
    return &open_link(sub_route, target, hashed, h.to);
  }

  // `resume`: called from a completion (not from inside process_client), so a sub-route that
  // turns out unreachable lets the waiting frames be answered now.
  void connect(Link& l, bool resume = false) {
    char key[24];
    std::string_view hash_key;
    if (l.hashed)
      hash_key = {key, static_cast<size_t>(std::to_chars(key, key + 24, l.hash_to).ptr - key)};
    int node = l.attempts < l.target->max_attempts()
                   ? l.target->pick(w_.index(), l.tried, hash_key, steady_now_us())
                   : upstream::UpstreamTarget::kNone;
    if (node == upstream::UpstreamTarget::kNone) {
      // The route's own upstream carries pushes: without it the connection is useless. A
      // sub-route's frames are answered at the edge instead (process_client).
      if (l.sub_route < 0) return close(StreamClose::ConnectFailed);
      l.failed_until_ms = steady_now_ms() + kUnavailableRetryMs;
      if (resume) client_step();
      return;
    }
    l.node = node;
    ++l.attempts;
    l.read_deadline.arm(l.target->spec().connect_timeout, &l.socket);
    l.socket.async_connect(
        l.target->nodes()[static_cast<size_t>(node)].endpoint,
        [self = shared_from_this(), &l](error_code ec) { self->on_connected(l, ec); });
  }

  void on_connected(Link& l, error_code ec) {
    l.read_deadline.disarm();
    if (ending()) return;
    if (ec) {
      bool timed_out = l.read_deadline.fired();
      auto outcome = timed_out ? upstream::Outcome::Timeout : upstream::Outcome::TcpFailure;
      l.target->report(l.node, outcome, 0);
      l.target->observe(l.node, outcome, 0, 0);
      counters().connect_failed();
      l.tried.add(static_cast<size_t>(l.node));
      error_code ignored;
      l.socket.close(ignored);
      return connect(l, true);  // the next node, while attempts are left
    }
    // A TCP handshake is the stream's "answer": it counts as a success (200) for passive checks.
    l.target->report(l.node, upstream::Outcome::Success, 200);
    l.target->observe(l.node, upstream::Outcome::Success, 200, 0);
    l.socket.set_option(asio::ip::tcp::no_delay(true), ec);
    l.socket.non_blocking(true, ec);
    l.connected = true;
    // Connections last hours: least_conn balances by how many are open on each node.
    l.target->session_opened(l.node);
    l.counted = true;
    if (tlv() && route_->tlv->send_proxy_protocol) {
      std::string header = build_proxy_v2(endpoints_);
      if (!send(l.out, l.socket, asio::buffer(header), false))
        return close(StreamClose::UpstreamError);
    }
    if (client_eof_) shutdown(l.out, l.socket);
    read_link(l);
    client_step();
  }

  // ---- writing -------------------------------------------------------------------------
  // Writes now what the socket takes; the rest waits in `o` (and stops the readers feeding it).
  template <class Buffers>
  bool send(Output& o, Socket& s, const Buffers& buffers, bool to_client) {
    thread_local http::WriteRest rest;
    if (tls_ && &o == &client_out_) {
      if (!o.pending.allocated()) o.pending = w_.buffers().acquire();
      for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
           ++it) {
        asio::const_buffer b(*it);
        reserve(o.pending, b.size());
        std::memcpy(o.pending.write_ptr(), b.data(), b.size());
        o.pending.commit(b.size());
      }
      if (!o.writing) write_tls();
      return true;
    }
    if (o.busy()) {
      for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
           ++it) {
        asio::const_buffer b(*it);
        reserve(o.pending, b.size());
        std::memcpy(o.pending.write_ptr(), b.data(), b.size());
        o.pending.commit(b.size());
      }
      return true;
    }
    if (http::write_now(s, buffers, rest)) return rest.status == http::IoStatus::Ok;
    if (!o.pending.allocated()) o.pending = w_.buffers().acquire();
    for (const auto& b : rest.buffers) {
      reserve(o.pending, b.size());
      std::memcpy(o.pending.write_ptr(), b.data(), b.size());
      o.pending.commit(b.size());
    }
    wait_writable(o, s, to_client);
    return true;
  }

  void wait_writable(Output& o, Socket& s, bool to_client) {
    o.waiting = true;
    double timeout = to_client ? idle_timeout() : link_of(o).target->spec().send_timeout;
    o.deadline.arm(timeout, &s, nullptr, true);
    s.async_wait(Socket::wait_write, [self = shared_from_this(), &o, &s, to_client](error_code ec) {
      self->on_writable(o, s, to_client, ec);
    });
  }

  void on_writable(Output& o, Socket& s, bool to_client, error_code ec) {
    o.waiting = false;
    if (ending()) return;
    auto failed = to_client ? StreamClose::ClientError : StreamClose::UpstreamError;
    if (ec) {
      // A read timer cancels every operation of the socket: just wait again.
      if (ec == asio::error::operation_aborted && !o.deadline.fired() && s.is_open())
        return wait_writable(o, s, to_client);
      return close(failed);
    }
    size_t n = s.write_some(asio::buffer(o.pending.view()), ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) return close(failed);
    o.pending.consume(n);
    if (o.busy()) return wait_writable(o, s, to_client);
    o.deadline.disarm();
    w_.buffers().release(o.pending);
    if (o.shutdown_after) shutdown(o, s);
    wake();
  }

  void shutdown(Output& o, Socket& s) {
    if (o.busy()) {
      o.shutdown_after = true;
      return;
    }
    error_code ignored;
    s.shutdown(Socket::shutdown_send, ignored);
  }

  bool outputs_busy() const {
    if (client_out_.busy()) return true;
    for (const auto& l : links_)
      if (l->out.busy()) return true;
    return false;
  }

  // An output drained: readers it held back go on, or a pending close happens.
  void wake() {
    if (closing_ != StreamClose::Shutdown) {
      if (!outputs_busy()) close(closing_);
      return;
    }
    client_step();
    for (auto& l : links_) read_link(*l);
  }

  // Closes once everything already accepted has been written (bounded by the send timeouts).
  void finish(StreamClose why) {
    closing_ = why;
    if (!outputs_busy()) close(why);
  }

  // ---- client -> upstream ----------------------------------------------------------------
  bool client_blocked() const {
    if (client_out_.busy()) return true;
    for (const auto& l : links_)  // a failed sub-route link blocks nothing: it is answered
      if ((!l->connected && l->failed_until_ms == 0) || l->out.busy()) return true;
    return false;
  }

  void client_step() {
    if (closed_ || client_eof_ || client_reading_ || closing_ != StreamClose::Shutdown) return;
    if (client_blocked()) {
      held_back_ = true;
      return;
    }
    if (!in_.empty() && !process_client()) return;
    if (closed_ || client_blocked()) return;
    read_client();
  }

  void read_client() {
    client_reading_ = true;
    int64_t now = steady_now_ms();
    double idle = idle_left(now);
    // A partial frame's stall clock does not run while the gateway itself held the client back.
    if (held_back_ && frame_started_ms_ != 0) frame_started_ms_ = now;
    held_back_ = false;
    if (!in_.allocated() && tls_ && tls::holds_input(*tls_))
      in_ = w_.buffers().acquire();  // OpenSSL holds bytes already: no readiness to wait for
    if (!in_.allocated()) {          // parked: no buffer until the client sends again
      client_deadline_.arm(idle, &client_);
      client_.async_wait(Socket::wait_read,
                         [self = shared_from_this()](error_code ec) { self->on_client_ready(ec); });
      return;
    }
    if (in_.writable() == 0) in_.compact();
    double left = frame_started_ms_ != 0 ? static_cast<double>(frame_started_ms_ - now) / 1000.0 +
                                               route_->tlv->stall_timeout
                                         : std::min(kBufferedIdleSeconds, idle);
    if (tls_) return read_tls(left);
    client_deadline_.arm(left, &client_);
    async_read_edge(
        client_, asio::buffer(in_.write_ptr(), in_.writable()),
        [self = shared_from_this()](error_code ec, size_t n) { self->on_client_read(ec, n); });
  }

  void on_client_ready(error_code ec) {
    client_reading_ = false;
    if (ending()) return;  // (the deadline belongs to the TLS close now)
    client_deadline_.disarm();
    if (ec) {
      if (!client_deadline_.fired()) return close(StreamClose::ClientError);
      // Upstream bytes kept a plain TCP connection busy while the client was quiet.
      if (idle_left(steady_now_ms()) > 0) return client_step();
      return close(StreamClose::IdleTimeout);
    }
    in_ = w_.buffers().acquire();
    if (tls_) return client_step();  // the read goes through OpenSSL
    size_t n = client_.read_some(asio::buffer(in_.write_ptr(), in_.writable()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      w_.buffers().release(in_);
      return client_step();
    }
    on_client_read(ec, n);
  }

  void on_client_read(error_code ec, size_t n) {
    client_reading_ = false;
    if (ending()) return;  // (the deadline belongs to the TLS close now)
    client_deadline_.disarm();
    if (ec == asio::error::eof) return on_client_eof();
    if (ec) {
      if (!client_deadline_.fired()) return close(StreamClose::ClientError);
      if (frame_started_ms_ != 0) return close(StreamClose::Stalled);
      if (idle_left(steady_now_ms()) <= 0) return close(StreamClose::IdleTimeout);
      w_.buffers().release(in_);  // quiet for a while: park
      if (tls_) tls::release_buffers(*tls_);
      return client_step();
    }
    in_.commit(n);
    last_client_ms_ = steady_now_ms();
    counters().bytes(StreamDirection::ToUpstream, n);
    if (!process_client()) return;
    client_step();
  }

  void on_client_eof() {
    if (tlv() && !in_.empty()) return close(StreamClose::Truncated);
    client_eof_ = true;
    bool open = false;
    double idle = idle_left(steady_now_ms());
    for (auto& l : links_)
      if (!l->eof) {
        open = true;
        if (l->connected) shutdown(l->out, l->socket);
        // A read already waiting has no deadline (the client's did that job): give it one.
        if (l->reading) l->read_deadline.arm(std::min(kBufferedIdleSeconds, idle), &l->socket);
      }
    if (!open) finish(StreamClose::ClientClosed);
  }

  // Forwards what the client sent. Returns false when the connection closed or must wait
  // (a link still connecting).
  bool process_client() {
    if (!tlv()) {
      if (!send(links_.front()->out, links_.front()->socket, asio::buffer(in_.view()), false)) {
        close(StreamClose::UpstreamError);
        return false;
      }
      in_.clear();
      return true;
    }
    thread_local std::vector<std::vector<asio::const_buffer>> gathers(kMaxLinks);
    thread_local std::string replies;
    replies.clear();
    const TlvFraming& f = framing();
    TlvDecoder decoder(f);
    int64_t now = steady_now_ms();
    Bytes all = as_bytes(in_.view());
    size_t consumed = 0, need = 0;
    TlvError error = TlvError::None;
    bool waiting = false;
    while (consumed < all.size()) {
      TlvDecodeResult r = decoder.decode(all.subspan(consumed));
      if (r.status == TlvDecodeResult::Status::NeedMore) {
        need = r.need;
        break;
      }
      if (r.status == TlvDecodeResult::Status::Error) {
        error = r.error;
        break;
      }
      const TlvFrame& frame = r.frame;
      // The frame that waited for its link was judged (and charged to the rate) already.
      FrameVerdict v = consumed == 0 && waiting_verdict_
                           ? *waiting_verdict_
                           : judge_frame(*route_, frame.header, conn_bucket_, now);
      waiting_verdict_.reset();
      if (v.action == FrameVerdict::Action::Forward) {
        Link* l = link_for(v.sub_route, frame.header);
        if (!l) {
          flush(gathers, replies);
          close(StreamClose::UpstreamError);
          return false;
        }
        if (l->failed_until_ms != 0 && now >= l->failed_until_ms) {  // try again
          l->failed_until_ms = 0;
          l->attempts = 0;
          l->tried = upstream::TriedNodes{};
          connect(*l);
        }
        if (l->failed_until_ms != 0) {
          append_tlv_reply(f, frame, kUpstreamUnavailableStatus, {}, replies);
          counters().frame(StreamDirection::ToClient, frame.header.cmd + 1,
                           named(frame.header.cmd + 1), tlv_frame_size(f, 0));
          consumed += frame.bytes.size();
          continue;
        }
        if (!l->connected) {  // resumes in on_connected, with this frame first
          waiting = true;
          waiting_verdict_ = v;
          break;
        }
        auto& g = gathers[index_of(l)];
        const auto* p = frame.bytes.data();
        if (!g.empty() && static_cast<const uint8_t*>(g.back().data()) + g.back().size() == p)
          g.back() = asio::const_buffer(g.back().data(), g.back().size() + frame.bytes.size());
        else
          g.emplace_back(p, frame.bytes.size());
        counters().frame(StreamDirection::ToUpstream, frame.header.cmd, named(frame.header.cmd),
                         frame.bytes.size());
      } else {
        if (v.refused) counters().refused(v.why, v.action == FrameVerdict::Action::Reply);
        if (v.heartbeat) counters().heartbeat_answered();
        if (v.action == FrameVerdict::Action::Reply) {
          append_tlv_reply(f, frame, v.status, {}, replies);
          counters().frame(StreamDirection::ToClient, frame.header.cmd + 1,
                           named(frame.header.cmd + 1), tlv_frame_size(f, 0));
        }
      }
      consumed += frame.bytes.size();
    }
    bool ok = flush(gathers, replies);
    in_.consume(consumed);
    if (!ok) return false;
    if (error != TlvError::None) {
      finish(close_reason(error));
      return false;
    }
    if (in_.empty() || waiting) {
      frame_started_ms_ = 0;  // (a whole frame held for its link is not the client stalling)
    } else {
      // A partial frame: its stall clock starts when it began, not at an earlier frame's start.
      if (consumed > 0 || frame_started_ms_ == 0) frame_started_ms_ = now;
      reserve(in_, need);
    }
    return !waiting;
  }

  const Link& link_of(const Output& o) const {
    for (const auto& l : links_)
      if (&l->out == &o) return *l;
    return *links_.front();
  }

  size_t index_of(const Link* l) const {
    for (size_t i = 0; i < links_.size(); ++i)
      if (links_[i].get() == l) return i;
    return 0;
  }

  bool flush(std::vector<std::vector<asio::const_buffer>>& gathers, std::string& replies) {
    bool ok = true;
    for (size_t i = 0; i < links_.size(); ++i) {
      auto& g = gathers[i];
      if (g.empty()) continue;
      if (ok && !send(links_[i]->out, links_[i]->socket, g, false)) ok = false;
      g.clear();
    }
    if (!ok) {
      close(StreamClose::UpstreamError);
      return false;
    }
    if (!replies.empty() && !send(client_out_, client_, asio::buffer(replies), true)) {
      close(StreamClose::ClientError);
      return false;
    }
    return true;
  }

  // ---- upstream -> client ----------------------------------------------------------------
  void read_link(Link& l) {
    if (closed_ || l.reading || l.eof || !l.connected || client_out_.busy() ||
        closing_ != StreamClose::Shutdown)
      return;
    l.reading = true;
    // After the client's FIN nothing reads the client, whose deadline ended idle connections:
    // the links' reads carry it instead, or a backend that never closes would hold the session
    // (and its sockets and limit-conn slot) forever.
    double idle = client_eof_ ? idle_left(steady_now_ms()) : 0;
    if (!l.in.allocated()) {
      if (client_eof_) l.read_deadline.arm(idle, &l.socket);
      l.socket.async_wait(Socket::wait_read, [self = shared_from_this(), &l](error_code ec) {
        self->on_link_ready(l, ec);
      });
      return;
    }
    if (l.in.writable() == 0) l.in.compact();
    double wait = client_eof_ ? std::min(kBufferedIdleSeconds, idle) : kBufferedIdleSeconds;
    if (tlv() && !l.in.empty())  // part of a frame: the backend has stall_timeout to finish it
      wait = std::min(wait, std::max(0.001, route_->tlv->stall_timeout -
                                                static_cast<double>(l.stalled_ms) / 1000));
    l.read_started_ms = steady_now_ms();
    l.read_deadline.arm(wait, &l.socket);
    async_read_edge(
        l.socket, asio::buffer(l.in.write_ptr(), l.in.writable()),
        [self = shared_from_this(), &l](error_code ec, size_t n) { self->on_link_read(l, ec, n); });
  }

  // A link's read deadline fired after the client's FIN, with nothing moving since.
  bool idle_after_client_eof(const Link& l) const {
    return client_eof_ && l.read_deadline.fired() && idle_left(steady_now_ms()) <= 0;
  }

  void on_link_ready(Link& l, error_code ec) {
    l.reading = false;
    l.read_deadline.disarm();
    if (ending()) return;
    if (ec == asio::error::operation_aborted && l.socket.is_open()) {
      if (idle_after_client_eof(l)) return close(StreamClose::IdleTimeout);
      return read_link(l);
    }
    if (ec) return close(StreamClose::UpstreamError);
    l.in = w_.buffers().acquire();
    size_t n = l.socket.read_some(asio::buffer(l.in.write_ptr(), l.in.writable()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      w_.buffers().release(l.in);
      return read_link(l);
    }
    on_link_read(l, ec, n);
  }

  // A TLV link whose current frame has taken the route's stall_timeout of reading.
  bool upstream_stalled(const Link& l) const {
    return l.stalled_ms >= static_cast<int64_t>(route_->tlv->stall_timeout * 1000);
  }

  void on_link_read(Link& l, error_code ec, size_t n) {
    l.reading = false;
    l.read_deadline.disarm();
    if (ending()) return;
    if (ec == asio::error::eof) return on_link_eof(l);
    if (ec == asio::error::operation_aborted && l.socket.is_open()) {
      if (idle_after_client_eof(l)) return close(StreamClose::IdleTimeout);
      if (l.read_deadline.fired() && tlv() && !l.in.empty()) {
        l.stalled_ms += steady_now_ms() - l.read_started_ms;
        if (upstream_stalled(l)) return finish(StreamClose::UpstreamStalled);
      }
      if (l.read_deadline.fired() && l.in.empty()) w_.buffers().release(l.in);  // park
      return read_link(l);
    }
    if (ec) return close(StreamClose::UpstreamError);
    // Bytes that do not finish the frame do not restart its clock: a backend trickling one byte
    // at a time is as stuck as a silent one.
    if (tlv() && !l.in.empty()) l.stalled_ms += steady_now_ms() - l.read_started_ms;
    l.in.commit(n);
    counters().bytes(StreamDirection::ToClient, n);
    size_t whole = l.in.size();
    size_t need = 0;
    bool bad = false;
    if (tlv()) {
      if (!route_->tlv) return;
      TlvDecoder decoder(framing());
      Bytes all = as_bytes(l.in.view());
      whole = 0;
      while (whole < all.size()) {
        TlvDecodeResult r = decoder.decode(all.subspan(whole));
        if (r.status == TlvDecodeResult::Status::NeedMore) {
          need = r.need;
          break;
        }
        if (r.status == TlvDecodeResult::Status::Error) {
          bad = true;
          break;
        }
        counters().frame(StreamDirection::ToClient, r.frame.header.cmd, named(r.frame.header.cmd),
                         r.frame.bytes.size());
        whole += r.frame.bytes.size();
      }
    } else {
      last_client_ms_ = steady_now_ms();  // plain TCP: traffic either way keeps it open
    }
    if (whole > 0 && !send(client_out_, client_, asio::buffer(l.in.data(), whole), true))
      return close(StreamClose::ClientError);
    l.in.consume(whole);
    if (bad) return finish(StreamClose::BadUpstreamFrame);
    if (whole > 0 || l.in.empty()) {
      l.stalled_ms = 0;  // a frame completed: the next one has the whole stall_timeout
    } else if (tlv() && upstream_stalled(l)) {
      return finish(StreamClose::UpstreamStalled);
    }
    if (!l.in.empty()) reserve(l.in, need);
    read_link(l);
  }

  void on_link_eof(Link& l) {
    l.eof = true;
    if (!tlv() && !client_eof_ && !tls_) {  // plain TCP half-close: the client may still send
      shutdown(client_out_, client_);
      return;
    }
    if (!client_eof_) return finish(StreamClose::UpstreamClosed);
    for (auto& other : links_)
      if (!other->eof) return;
    finish(StreamClose::ClientClosed);
  }

  void close(StreamClose why) {
    if (closed_) return;
    if (tls_ && !tls_closing_ &&
        (why == StreamClose::UpstreamClosed || why == StreamClose::ClientClosed)) {
      // A clean end is told with close_notify, so a TLS client can tell it from a cut (a raw TCP
      // route's data has no framing of its own); the client's is awaited for a moment.
      tls_closing_ = true;
      // A read of the client may be pending: it ends now (its handler sees tls_closing_), so
      // only the shutdown uses the stream and the deadline from here on.
      error_code ignored;
      if (client_reading_) client_.cancel(ignored);
      client_deadline_.arm(kTlsCloseSeconds, &client_);
      asio::co_spawn(w_.executor(), tls::shutdown(*tls_),
                     [self = shared_from_this(), why](std::exception_ptr) {
                       self->client_deadline_.disarm();
                       self->close(why);
                     });
      return;
    }
    closed_ = true;
    counters().closed(why);
    if (holds_conn_slot_) {  // limit-conn: this connection's slot is free again
      route_->plugins->counts->add(conn_key_, -1);
      holds_conn_slot_ = false;
    }
    if (log::enabled(log::Level::Debug))
      log::debug("stream connection from " + endpoints_.source.ip_string() +
                 " closed: " + std::string(metrics::to_string(why)));
    error_code ignored;
    client_deadline_.disarm();
    client_out_.deadline.disarm();
    client_.close(ignored);
    for (auto& l : links_) {
      l->read_deadline.disarm();
      l->out.deadline.disarm();
      l->socket.close(ignored);
    }
    if (delay_timer_) delay_timer_->cancel();
  }

  Worker& w_;
  Socket client_;
  tls::StreamPtr tls_;       // ssl listeners, once the handshake is done
  std::string server_name_;  // TLS: what the client asked for (SNI), lower case
  std::shared_ptr<const tls::CertificateTable> certificates_;  // during the handshake
  std::string tls_sending_;   // TLS: the bytes being written to the client
  bool tls_closing_ = false;  // close_notify sent or being sent
  const config::ListenAddress& listener_;
  StreamRoutePtr route_;
  std::string conn_key_;  // limit-conn key while holds_conn_slot_
  bool holds_conn_slot_ = false;
  std::unique_ptr<Timer> delay_timer_;  // limit-conn's delay, while it runs
  ProxyEndpoints endpoints_;
  std::array<uint8_t, 16> local_bytes_{};
  IoBuffer in_;
  Deadline client_deadline_;
  Output client_out_;
  std::vector<std::unique_ptr<Link>> links_;
  plugins::BucketState conn_bucket_;
  int64_t last_client_ms_ = 0;
  int64_t frame_started_ms_ = 0;                 // a partial frame waits in in_ since then
  std::optional<FrameVerdict> waiting_verdict_;  // the head frame's, while it waits for a link
  bool held_back_ = false;                       // the client was not read: outputs were full
  StreamClose closing_ = StreamClose::Shutdown;  // Shutdown: not closing
  bool client_reading_ = false;
  bool client_eof_ = false;
  bool closed_ = false;
};

}  // namespace

void start_stream_session(Worker& worker, Socket&& socket, const config::ListenAddress& listener) {
  std::make_shared<Session>(worker, std::move(socket), listener)->start();
}

}  // namespace portico::stream
