#include "plugins/tlv_bridge/websocket_session.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>
#include <chrono>

#include "bridge/websocket_frames.hpp"
#include "core/deadline.hpp"
#include "core/edge_read.hpp"
#include "core/io_buffer.hpp"
#include "core/log.hpp"
#include "core/worker.hpp"
#include "plugins/context.hpp"
#include "plugins/tlv_bridge/backend_link.hpp"

namespace portico::plugins {
namespace {

using bridge::WsOpcode;

// Bytes queued for a slow client before the backend is read again (backpressure).
constexpr size_t kClientHighWater = 1024 * 1024;

class Session {
 public:
  Session(const TlvBridgeConfig& config, Takeover& io)
      : config_(config),
        io_(io),
        backend_(io.worker.executor()),
        decoder_(config.framing),
        drained_(io.worker.executor()) {
    for (Deadline* d : {&client_read_, &client_write_, &backend_io_}) io.worker.deadlines().add(*d);
  }

  // False after an HTTP answer in ctx.reply (no upgrade); true once the session has run.
  Task<bool> run(std::string key, Context& ctx) {
    if (!bind_types(config_, io_, types_, ctx)) co_return false;
    if (!co_await connect_tlv_backend(io_, backend_, backend_io_)) {
      counters().connect_failures.fetch_add(1, std::memory_order_relaxed);
      ctx.respond_error(502, "tlv-bridge: no TLV backend accepts connections");
      co_return false;
    }
    if (config_.send_proxy_protocol) to_backend_ = proxy_header_for(ctx, io_.client);
    pending_ =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        bridge::ws_accept_key(key) + "\r\n\r\n";
    co_await flush_client();
    io_.answered(101);
    if (client_broken_) co_return true;
    counters().sessions.fetch_add(1, std::memory_order_relaxed);
    counters().active.fetch_add(1, std::memory_order_relaxed);
    backend_in_ = io_.worker.buffers().acquire();
    using namespace asio::experimental::awaitable_operators;
    co_await (client_loop() && backend_loop());
    io_.worker.buffers().release(backend_in_);
    counters().active.fetch_sub(1, std::memory_order_relaxed);
    co_return true;
  }

 private:
  static TlvBridgeCounters& counters() { return tlv_bridge_counters(); }

  // ---- client -> backend ------------------------------------------------------------------

  Task<> client_loop() {
    IoBuffer& in = io_.in;
    while (!closing_) {
      if (!take_client_frames()) break;
      if (!to_backend_.empty()) {
        backend_io_.arm(io_.send_timeout, &backend_);
        auto [ec, n] = co_await asio::async_write(backend_, asio::buffer(to_backend_), await_ec);
        backend_io_.disarm();
        to_backend_.clear();
        if (ec) {
          fail(bridge::kWsCloseGoingAway, "the backend connection failed");
          break;
        }
      }
      if (!pending_.empty()) co_await flush_client();
      if (closing_ || client_broken_) break;
      if (in.writable() == 0) in.compact();
      client_read_.arm(config_.idle_timeout, &io_.client);
      auto [ec, n] = co_await async_read_edge(
          io_.client, asio::buffer(in.write_ptr(), in.writable()), await_ec);
      client_read_.disarm();
      if (ec) {
        if (client_read_.fired())
          fail(bridge::kWsCloseGoingAway, "idle timeout");
        else
          client_broken_ = true;  // gone without a close frame
        break;
      }
      in.commit(n);
    }
    closing_ = true;
    co_await flush_client();
    error_code ignored;
    backend_.close(ignored);  // ends backend_loop
  }

  // Handles every whole frame in the client buffer. False when the session must end.
  bool take_client_frames() {
    IoBuffer& in = io_.in;
    const uint64_t max_payload = config_.max_message;
    while (true) {
      bridge::WsParseResult r = bridge::parse_ws_frame(in.view(), max_payload);
      if (r.status == bridge::WsParseResult::Status::Error) {
        counters().bad_client_frames.fetch_add(1, std::memory_order_relaxed);
        fail(r.close_code, r.error);
        return false;
      }
      if (r.status == bridge::WsParseResult::Status::NeedMore) return true;
      size_t size = r.frame.size();
      if (in.size() < size) {
        if (in.capacity() < size) {
          in.compact();
          in.grow(size);
        }
        return true;
      }
      char* payload = in.data() + r.frame.header_size;
      size_t n = static_cast<size_t>(r.frame.payload_size);
      bridge::ws_unmask(payload, n, r.frame.mask);
      bool go_on = handle_frame(r.frame, std::string_view(payload, n));
      in.consume(size);
      if (!go_on) return false;
    }
  }

  bool handle_frame(const bridge::WsFrame& f, std::string_view payload) {
    switch (f.opcode) {
      case WsOpcode::Ping:
        send_client(WsOpcode::Pong, payload);
        return true;
      case WsOpcode::Pong:
        return true;
      case WsOpcode::Close: {
        uint16_t code = bridge::kWsCloseNormal;
        if (payload.size() >= 2)
          code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                       static_cast<uint8_t>(payload[1]));
        send_client(WsOpcode::Close, bridge::ws_close_payload(code, ""));
        closing_ = true;
        return false;
      }
      case WsOpcode::Text:
      case WsOpcode::Binary:
        if (in_message_) return protocol_error("a new message before the last one ended");
        if (f.fin) return deliver(f.opcode, payload);
        message_.assign(payload);
        message_kind_ = f.opcode;
        in_message_ = true;
        return true;
      case WsOpcode::Continuation:
        if (!in_message_) return protocol_error("a continuation frame outside a message");
        if (message_.size() + payload.size() > config_.max_message) {
          counters().bad_client_frames.fetch_add(1, std::memory_order_relaxed);
          fail(bridge::kWsCloseTooBig, "message too big");
          return false;
        }
        message_.append(payload);
        if (!f.fin) return true;
        in_message_ = false;
        {
          bool go_on = deliver(message_kind_, message_);
          message_.clear();
          return go_on;
        }
    }
    return true;
  }

  bool protocol_error(std::string_view reason) {
    counters().bad_client_frames.fetch_add(1, std::memory_order_relaxed);
    fail(bridge::kWsCloseProtocolError, reason);
    return false;
  }

  // One whole client message.
  bool deliver(WsOpcode kind, std::string_view message) {
    client_binary_ = kind == WsOpcode::Binary;
    if (kind == WsOpcode::Text) {
      bridge::EnvelopeError error;
      if (bridge::envelope_to_tlv(message, config_.framing, types_, to_backend_, error)) {
        counters().frames_up.fetch_add(1, std::memory_order_relaxed);
      } else {
        counters().refused.fetch_add(1, std::memory_order_relaxed);
        send_client(WsOpcode::Text, bridge::error_envelope(error, config_.error_status));
      }
      return true;
    }
    // Binary: raw frames, forwarded only when every one is whole and valid.
    stream::Bytes rest = stream::as_bytes(message);
    uint64_t frames = 0;
    while (!rest.empty()) {
      stream::TlvDecodeResult r = decoder_.decode(rest);
      if (!r.ok()) {
        counters().bad_client_frames.fetch_add(1, std::memory_order_relaxed);
        std::string why = r.status == stream::TlvDecodeResult::Status::NeedMore
                              ? "a binary message must hold whole TLV frames"
                              : "not a valid TLV frame: " + std::string(stream::to_string(r.error));
        fail(bridge::kWsCloseInvalidPayload, why);
        return false;
      }
      rest = rest.subspan(r.frame.bytes.size());
      ++frames;
    }
    to_backend_.append(message);
    counters().frames_up.fetch_add(frames, std::memory_order_relaxed);
    return true;
  }

  // ---- backend -> client ------------------------------------------------------------------

  Task<> backend_loop() {
    IoBuffer& b = backend_in_;
    while (true) {
      if (b.writable() == 0) b.compact();
      auto [ec, n] =
          co_await async_read_edge(backend_, asio::buffer(b.write_ptr(), b.writable()), await_ec);
      if (ec) break;
      b.commit(n);
      while (true) {
        stream::TlvDecodeResult r = decoder_.decode(b.view());
        if (r.status == stream::TlvDecodeResult::Status::Error) {
          counters().bad_backend_frames.fetch_add(1, std::memory_order_relaxed);
          log::warn("tlv-bridge: corrupt frame from the backend (" +
                    std::string(stream::to_string(r.error)) + "): session closed");
          fail(bridge::kWsCloseInternalError, "the backend sent a corrupt frame");
          break;
        }
        if (r.status == stream::TlvDecodeResult::Status::NeedMore) {
          if (b.size() + r.need > b.capacity()) {
            b.compact();
            if (b.size() + r.need > b.capacity()) b.grow(b.size() + r.need);
          }
          break;
        }
        if (client_binary_)
          send_client(WsOpcode::Binary, stream::as_chars(r.frame.bytes));
        else
          send_client(WsOpcode::Text, bridge::tlv_to_envelope(r.frame, types_));
        counters().frames_down.fetch_add(1, std::memory_order_relaxed);
        b.consume(r.frame.bytes.size());
      }
      if (closing_) break;
      co_await flush_client();
      // A slow client: wait until what is queued has gone out before reading more.
      while (writing_ && pending_.size() > kClientHighWater && !client_broken_) {
        drained_.expires_at(Timer::time_point::max());
        co_await drained_.async_wait(await_ec);
      }
      if (client_broken_) break;
    }
    if (!closing_) fail(bridge::kWsCloseGoingAway, "the backend closed the connection");
    co_await flush_client();
    error_code ignored;
    io_.client.close(ignored);  // ends client_loop
  }

  // ---- writing to the client --------------------------------------------------------------

  void send_client(WsOpcode opcode, std::string_view payload) {
    if (close_sent_ || client_broken_) return;
    bridge::append_ws_frame(pending_, opcode, payload);
    if (opcode == WsOpcode::Close) close_sent_ = true;
  }

  void fail(uint16_t code, std::string_view reason) {
    send_client(WsOpcode::Close, bridge::ws_close_payload(code, reason));
    closing_ = true;
  }

  // Writes what is queued. Either loop may call it; while one writes, the other's frames join
  // the queue and go out in the same loop.
  Task<> flush_client() {
    if (writing_) co_return;
    writing_ = true;
    while (!pending_.empty() && !client_broken_) {
      sending_.swap(pending_);
      client_write_.arm(io_.send_timeout, &io_.client);
      auto [ec, n] = co_await asio::async_write(io_.client, asio::buffer(sending_), await_ec);
      client_write_.disarm();
      sending_.clear();
      if (ec) {
        client_broken_ = true;
        pending_.clear();
        error_code ignored;
        io_.client.close(ignored);
      }
    }
    writing_ = false;
    drained_.cancel();
  }

  const TlvBridgeConfig& config_;
  Takeover& io_;
  Socket backend_;
  stream::TlvDecoder decoder_;
  bridge::CmdTypes types_;
  IoBuffer backend_in_;
  std::string to_backend_;
  std::string pending_;  // frames for the client, not yet written
  std::string sending_;  // frames being written
  std::string message_;  // a fragmented client message so far
  WsOpcode message_kind_ = WsOpcode::Text;
  Deadline client_read_, client_write_, backend_io_;
  Timer drained_;
  bool in_message_ = false;
  bool client_binary_ = false;  // the client's last message was binary: answer in raw frames
  bool writing_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool client_broken_ = false;
};

}  // namespace

TlvBridgeCounters& tlv_bridge_counters() {
  static TlvBridgeCounters counters;
  return counters;
}

bool bind_types(const TlvBridgeConfig& config, const Takeover& io, bridge::CmdTypes& types,
                Context& ctx) {
  std::string error;
  auto proto = io.protos.find(config.proto_id);
  if (proto == io.protos.end())
    error = "proto \"" + config.proto_id + "\" is not loaded";
  else if (types.bind(config.types, proto->second, error))
    return true;
  log::error("tlv-bridge: " + error);
  ctx.respond_error(500, "tlv-bridge: " + error);
  return false;
}

Task<bool> run_websocket_tlv_session(const TlvBridgeConfig& config, Takeover& io, std::string key,
                                     Context& ctx) {
  Session session(config, io);
  co_return !co_await session.run(std::move(key), ctx);
}

}  // namespace portico::plugins
