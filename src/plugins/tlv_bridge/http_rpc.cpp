#include "plugins/tlv_bridge/http_rpc.hpp"

#include <boost/asio/write.hpp>

#include "bridge/tlv_envelope.hpp"
#include "core/byte_stream.hpp"
#include "core/deadline.hpp"
#include "core/edge_read.hpp"
#include "core/io_buffer.hpp"
#include "core/worker.hpp"
#include "plugins/context.hpp"
#include "plugins/tlv_bridge/backend_link.hpp"
#include "plugins/tlv_bridge/frame_policy.hpp"
#include "plugins/tlv_bridge/websocket_session.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::plugins {
namespace {

constexpr const char* kJson = "application/json";

// Reads frames until the reply to `request` (cmd + 1, the same seq). Frames that are not it
// (pushes to this connection) are skipped. Null on EOF, error, timeout or a corrupt frame.
Task<bool> await_reply(Socket& backend, IoBuffer& buf, const stream::TlvDecoder& decoder,
                       const stream::TlvHeader& request, stream::TlvFrame& reply) {
  // cmd + 1 as the header's cmd field holds it (0xFFFF + 1 wraps to 0 in two bytes).
  const stream::TlvField& field = decoder.framing().cmd;
  const uint32_t reply_cmd = field.width >= 4
                                 ? request.cmd + 1
                                 : (request.cmd + 1) & ((uint32_t{1} << (8 * field.width)) - 1);
  while (true) {
    while (true) {
      stream::TlvDecodeResult r = decoder.decode(buf.view());
      if (r.status == stream::TlvDecodeResult::Status::Error) co_return false;
      if (r.status == stream::TlvDecodeResult::Status::NeedMore) {
        if (buf.size() + r.need > buf.capacity()) {
          buf.compact();
          if (buf.size() + r.need > buf.capacity()) buf.grow(buf.size() + r.need);
        }
        break;
      }
      if (r.frame.header.seq == request.seq && r.frame.header.cmd == reply_cmd) {
        reply = r.frame;  // points into buf, which is not touched again
        co_return true;
      }
      buf.consume(r.frame.bytes.size());
    }
    if (buf.writable() == 0) buf.compact();
    auto [ec, n] =
        co_await async_read_edge(backend, asio::buffer(buf.write_ptr(), buf.writable()), await_ec);
    if (ec) co_return false;
    buf.commit(n);
  }
}

}  // namespace

Task<> run_tlv_rpc(const TlvBridgeConfig& config, Takeover& io, Context& ctx) {
  TlvBridgeCounters& counters = tlv_bridge_counters();
  bridge::CmdTypes types;
  if (!bind_types(config, io, types, ctx)) co_return;
  std::string frame;
  if (config.send_proxy_protocol) frame = proxy_header_for(ctx, io.client.socket());
  size_t header_bytes = frame.size();
  bridge::EnvelopeError error;
  if (!bridge::envelope_to_tlv(io.body, config.framing, types, frame, error)) {
    counters.refused.fetch_add(1, std::memory_order_relaxed);
    ctx.respond(400, bridge::error_envelope(error, config.error_status), kJson);
    co_return;
  }
  stream::TlvDecoder decoder(config.framing);
  stream::TlvFrame request_frame =
      decoder.decode(std::string_view(frame).substr(header_bytes)).frame;
  stream::TlvHeader request = request_frame.header;
  // The route's command and rate rules, in the order frames of a session meet them; an RPC has
  // no connection of its own, so the per-connection rate is kept per client address.
  BucketState unused;
  stream::SharedConnectionRate per_client{config.rpc_client_buckets.get(), ctx.client_ip};
  std::optional<FrameRefusal> refusal = judge_bridge_frame(
      config, request_frame, unused, config.rpc_client_buckets ? &per_client : nullptr);
  if (refusal) {
    int status = refusal->rate_limited ? 429 : 403;
    if (refusal->reply)
      ctx.respond(status, bridge::tlv_to_envelope(decoder.decode(refusal->answer).frame, types),
                  kJson);
    else
      ctx.respond_error(status, refusal->rate_limited ? "tlv-bridge: rate limited"
                                                      : "tlv-bridge: command not allowed");
    co_return;
  }

  Socket backend(io.worker.executor());
  Deadline deadline;
  io.worker.deadlines().add(deadline);
  uint32_t calls = 0;
  const int node =
      co_await connect_tlv_backend(io, backend, deadline, config.rpc_keepalive, &calls);
  if (node < 0) {
    counters.connect_failures.fetch_add(1, std::memory_order_relaxed);
    ctx.respond_error(502, "tlv-bridge: no TLV backend accepts connections");
    co_return;
  }
  // One deadline for the whole exchange: the send and the wait for the reply. A client that
  // leaves meanwhile ends the wait (PeerWatch), and says nothing about the node.
  deadline.arm(config.rpc_timeout, &backend);
  PeerWatch client_watch;
  io.worker.peer_watches().add(client_watch);
  client_watch.start(io.client.socket(), backend);
  auto [wec, wn] = co_await asio::async_write(backend, asio::buffer(frame), await_ec);
  IoBuffer buf = io.worker.buffers().acquire();
  stream::TlvFrame reply;
  bool answered = !wec && co_await await_reply(backend, buf, decoder, request, reply);
  deadline.disarm();
  client_watch.stop();
  if (client_watch.gone()) {
    ctx.respond_error(499, "tlv-bridge: the client closed the connection");
  } else if (answered) {
    io.upstream.report(node, upstream::Outcome::Success, 200);  // (the connect was not one)
    if (calls > 0)  // a reused connection: no connect was observed for it
      io.upstream.observe(node, upstream::Outcome::Success, 200, 0);
    counters.frames_up.fetch_add(1, std::memory_order_relaxed);
    counters.frames_down.fetch_add(1, std::memory_order_relaxed);
    counters.rpc_replies.fetch_add(1, std::memory_order_relaxed);
    ctx.respond(200, bridge::tlv_to_envelope(reply, types), kJson);
  } else if (deadline.fired()) {
    counters.rpc_timeouts.fetch_add(1, std::memory_order_relaxed);
    // A node that accepts connections but never answers is failing, and passive checks hear of
    // it; but only for a cmd the route declares a reply type for (cmd + 1): the client picks the
    // cmd, and one the backend never answers by design (a receipt) must not let any client
    // eject healthy nodes.
    if (types.find(request.cmd + 1)) io.upstream.report(node, upstream::Outcome::Timeout, 0);
    io.upstream.observe(node, upstream::Outcome::Timeout, 0, 0);
    ctx.respond_error(504, "tlv-bridge: no reply from the backend in time");
  } else {
    ctx.respond_error(502, "tlv-bridge: the backend closed the connection before replying");
  }
  // Pooled only after a clean exchange with nothing behind the reply (a push that came with
  // it, or a partial frame, would reach the next call).
  const bool clean = answered && buf.size() == reply.bytes.size();
  io.worker.buffers().release(buf);
  if (config.rpc_keepalive && clean) {
    keep_tlv_backend(io, node, std::move(backend), calls + 1);
  } else {
    error_code ignored;
    backend.close(ignored);
  }
}

}  // namespace portico::plugins
