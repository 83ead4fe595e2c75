#include "plugins/tlv_bridge/backend_link.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "core/deadline.hpp"
#include "core/worker.hpp"
#include "stream/proxy_address.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::plugins {

namespace {
// Pool identity of TLV connections: never handed to an HTTP request, nor HTTP ones to RPCs.
constexpr std::string_view kTlvPool = "tlv";

// Sessions may idle for long, and a backend host that dies without a FIN or RST (a crash, a
// partition, a NAT that forgot the flow) would leave them "connected": the clients' heartbeats
// sit in the kernel's send queue for ~15 minutes of retransmissions, an idle session for over
// two hours of default keepalive. Here: keepalive probes after 30 s of silence, and a
// connection whose sent data or probes go unacknowledged for 60 s is dropped by the kernel.
void notice_silent_death(Socket& backend) {
  const int fd = backend.native_handle();
  const int on = 1, idle_s = 30, interval_s = 10, probes = 3, unacked_ms = 60000;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof(interval_s));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &unacked_ms, sizeof(unacked_ms));
}
}  // namespace

Task<int> connect_tlv_backend(Takeover& io, Socket& backend, Deadline& deadline, bool reuse,
                              uint32_t* calls) {
  if (calls) *calls = 0;
  const upstream::UpstreamTarget& target = io.upstream;
  upstream::TriedNodes tried;
  for (int attempt = 0; attempt < target.max_attempts(); ++attempt) {
    int node = target.pick(io.worker.index(), tried, {}, steady_now_us());
    if (node == upstream::UpstreamTarget::kNone) break;
    tried.add(static_cast<size_t>(node));
    const Endpoint& endpoint = target.nodes()[static_cast<size_t>(node)].endpoint;
    // A call cannot be sent twice (it may have been acted on): only a connection the node
    // has not closed, with nothing unread on it, is used (checked with a peek).
    if (auto pooled = reuse ? io.worker.pool().take(endpoint, kTlvPool, true) : std::nullopt) {
      backend = std::move(pooled->socket);
      if (calls) *calls = pooled->requests;
      co_return node;
    }
    deadline.arm(target.spec().connect_timeout, &backend);
    auto [ec] = co_await backend.async_connect(target.nodes()[static_cast<size_t>(node)].endpoint,
                                               await_ec);
    deadline.disarm();
    if (!ec) {
      // Not yet a success for passive checks: a node that accepts and then drops every
      // session would never reach its failure count. Sessions report their first frame
      // (BackendWatch), RPCs their reply.
      target.observe(node, upstream::Outcome::Success, 200, 0);
      backend.set_option(asio::ip::tcp::no_delay(true), ec);
      notice_silent_death(backend);
      backend.non_blocking(true, ec);
      co_return node;
    }
    auto outcome = deadline.fired() ? upstream::Outcome::Timeout : upstream::Outcome::TcpFailure;
    target.report(node, outcome, 0);
    target.observe(node, outcome, 0, 0);
    error_code ignored;
    backend.close(ignored);
  }
  co_return upstream::UpstreamTarget::kNone;
}

void BackendWatch::connected(const upstream::UpstreamTarget* target, int node) {
  target_ = target;
  node_ = node;
  connected_ms_ = steady_now_ms();
  framed_ = false;
  prompted_ = false;
}

void BackendWatch::frame() {
  if (framed_) return;
  framed_ = true;
  if (target_) target_->report(node_, upstream::Outcome::Success, 200);
}

void BackendWatch::client_sent(Socket& backend) {
  if (prompted_) return;
  char byte;
  if (::recv(backend.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) return;
  prompted_ = true;
}

void BackendWatch::closed_by_backend() {
  constexpr int64_t kSoonMs = 2000;
  if (target_ && !framed_ && !prompted_ && steady_now_ms() - connected_ms_ < kSoonMs)
    target_->report(node_, upstream::Outcome::TcpFailure, 0);
  target_ = nullptr;
}

void BackendWatch::corrupt() {
  if (target_) target_->report(node_, upstream::Outcome::TcpFailure, 0);
  target_ = nullptr;
}

void keep_tlv_backend(Takeover& io, int node, Socket&& backend, uint32_t calls) {
  const config::Upstream& spec = io.upstream.spec();
  if (calls >= static_cast<uint32_t>(spec.keepalive_requests)) {
    error_code ignored;
    backend.close(ignored);
    return;
  }
  upstream::PooledConnection c{std::move(backend), nullptr, std::string(kTlvPool), calls, 0};
  io.worker.pool().put(io.upstream.nodes()[static_cast<size_t>(node)].endpoint, std::move(c),
                       spec.keepalive_idle_timeout, static_cast<size_t>(spec.keepalive_size));
}

std::string proxy_header_for(const Context& ctx, const Socket& client) {
  error_code ec;
  return stream::build_proxy_v2({stream::ProxyAddress{ctx.client_bytes, ctx.client_port},
                                 stream::proxy_address(client.local_endpoint(ec))});
}

}  // namespace portico::plugins
