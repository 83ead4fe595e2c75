#include "plugins/tlv_bridge/backend_link.hpp"

#include "core/deadline.hpp"
#include "core/worker.hpp"
#include "stream/proxy_address.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::plugins {

namespace {
// Pool identity of TLV connections: never handed to an HTTP request, nor HTTP ones to RPCs.
constexpr std::string_view kTlvPool = "tlv";
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
      // A TCP handshake is a stream's "answer": a success (200) for passive checks.
      target.report(node, upstream::Outcome::Success, 200);
      target.observe(node, upstream::Outcome::Success, 200, 0);
      backend.set_option(asio::ip::tcp::no_delay(true), ec);
      // Sessions may idle for long: a backend host that dies silently is noticed by the kernel.
      backend.set_option(asio::socket_base::keep_alive(true), ec);
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
