#include "plugins/tlv_bridge/websocket_session.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>
#include <vector>

#include "bridge/websocket_frames.hpp"
#include "core/byte_stream.hpp"
#include "core/deadline.hpp"
#include "core/edge_read.hpp"
#include "core/io_buffer.hpp"
#include "core/log.hpp"
#include "core/worker.hpp"
#include "plugins/context.hpp"
#include "plugins/tlv_bridge/backend_link.hpp"
#include "plugins/tlv_bridge/frame_policy.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::plugins {
namespace {

using bridge::WsOpcode;

// Bytes queued for a client before either side is read again (backpressure: a client that does
// not read what it is sent, pongs and refusals included, is not read either).
constexpr size_t kClientHighWater = 1024 * 1024;
// Strings and buffers that grew past this for one big message go back to their small size.
constexpr size_t kKeepCapacity = 64 * 1024;
// After the last close frame, unread client bytes are drained this long so the close is not
// destroyed by a reset.
constexpr double kLingerSeconds = 2;

void trim(std::string& s) {
  if (s.empty() && s.capacity() > kKeepCapacity) std::string().swap(s);
}

// RFC 6455 section 7.4: codes an endpoint may send in a close frame.
bool valid_close_code(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

class Session {
 public:
  Session(const TlvBridgeConfig& config, Takeover& io)
      : config_(config),
        io_(io),
        backend_(io.worker.executor()),
        decoder_(config.framing),
        drained_(io.worker.executor()) {
    for (Deadline* d : {&client_read_, &client_write_, &backend_io_}) io.worker.deadlines().add(*d);
    io.worker.idle_waits().add(drain_watch_);  // fired when the worker drains
  }

  // False after an HTTP answer in ctx.reply (no upgrade); true once the session has run.
  Task<bool> run(std::string key, Context& ctx) {
    if (!bind_types(config_, io_, types_, ctx)) co_return false;
    node_ = co_await connect_tlv_backend(io_, backend_, backend_io_);
    if (node_ < 0) {
      counters().connect_failures.fetch_add(1, std::memory_order_relaxed);
      ctx.respond_error(502, "tlv-bridge: no TLV backend accepts connections");
      co_return false;
    }
    if (config_.send_proxy_protocol) to_backend_ = proxy_header_for(ctx, client_socket());
    std::string protocol =
        bridge::choose_ws_subprotocol(ctx.header("Sec-WebSocket-Protocol"), config_.subprotocols);
    pending_ =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        bridge::ws_accept_key(key) + "\r\n";
    if (!protocol.empty()) pending_ += "Sec-WebSocket-Protocol: " + protocol + "\r\n";
    pending_ += "\r\n";
    co_await flush_client();
    io_.answered(101);
    if (client_broken_) co_return true;
    counters().sessions.fetch_add(1, std::memory_order_relaxed);
    counters().active.fetch_add(1, std::memory_order_relaxed);
    // least_conn balances sessions: this one counts on its node until it ends, however it ends.
    io_.upstream.session_opened(node_);
    struct SessionCount {
      const upstream::UpstreamTarget& upstream;
      int node;
      ~SessionCount() { upstream.session_closed(node); }
    } counted{io_.upstream, node_};
    watch_.connected(&io_.upstream, node_);
    backend_in_ = io_.worker.buffers().acquire();
    drain_watch_.arm(365.0 * 86400, &client_socket());
    using namespace asio::experimental::awaitable_operators;
    // Each loop catches its own exceptions: `&&` only cancels the other side through
    // per-operation cancellation, which edge reads do not offer, so an escaping exception
    // would leave the other loop waiting forever.
    last_frame_ms_ = steady_now_ms();  // idle from here: the backend connect is not the client's
    co_await (client_loop() && backend_loop());
    drain_watch_.disarm();
    io_.worker.buffers().release(backend_in_);
    counters().active.fetch_sub(1, std::memory_order_relaxed);
    co_await linger();
    co_return true;
  }

 private:
  static TlvBridgeCounters& counters() { return tlv_bridge_counters(); }

  Socket& client_socket() { return io_.client.socket(); }

  bool shutting_down() const { return drain_watch_.fired() || io_.worker.draining(); }

  // ---- client -> backend ------------------------------------------------------------------

  Task<> client_loop() {
    try {
      co_await read_client();
      closing_ = true;
      co_await flush_all();
    } catch (const std::exception& e) {
      failed(e);
    }
    error_code ignored;
    backend_.close(ignored);  // ends backend_loop
  }

  // An exception in a loop (bad_alloc): the session ends without waiting on anything.
  void failed(const std::exception& e) {
    log::error(std::string("tlv-bridge: session failed: ") + e.what());
    closing_ = true;
    client_broken_ = true;
    writing_ = false;
    drained_.cancel();
    error_code ignored;
    client_socket().close(ignored);
  }

  Task<> read_client() {
    IoBuffer& in = io_.in;
    while (true) {
      bool go_on = take_client_frames();
      // Messages read together with a close frame still reach the backend.
      if (!to_backend_.empty()) {
        size_t done = 0;
        error_code ec = send_now(backend_, to_backend_, done);
        if (!ec && done < to_backend_.size()) {  // the backend is slow: wait for it
          backend_io_.arm(io_.upstream.spec().send_timeout, &backend_);
          auto [wec, n] = co_await asio::async_write(
              backend_, asio::buffer(to_backend_.data() + done, to_backend_.size() - done),
              await_ec);
          backend_io_.disarm();
          ec = wec;
        }
        to_backend_.clear();
        trim(to_backend_);
        if (ec) {
          fail(bridge::kWsCloseGoingAway, "the backend connection failed");
          co_return;
        }
      }
      if (!go_on || closing_ || client_broken_) co_return;
      co_await flush_client();
      if (pending_.size() > kClientHighWater) co_await wait_drained();
      if (closing_ || client_broken_) co_return;
      if (shutting_down()) {
        fail(bridge::kWsCloseGoingAway, "server shutting down");
        co_return;
      }
      if (in.empty() && in.capacity() > BufferPool::kBufferSize) {  // after one big frame
        io_.worker.buffers().release(in);
        in = io_.worker.buffers().acquire();
      }
      if (in.writable() == 0) in.compact();
      // Idle means no whole frame for idle_timeout: bytes of a frame that never completes (one
      // byte every few minutes) do not keep a session and its backend connection.
      const int64_t idle_left_ms =
          last_frame_ms_ + static_cast<int64_t>(config_.idle_timeout * 1000) - steady_now_ms();
      client_read_.arm(static_cast<double>(std::max<int64_t>(idle_left_ms, 1)) / 1000.0,
                       &client_socket());
      auto [ec, n] = co_await io_.client.read_some(asio::buffer(in.write_ptr(), in.writable()));
      client_read_.disarm();
      if (ec) {
        if (closing_) co_return;  // backend_loop ended the session (and sent the close)
        if (shutting_down())
          fail(bridge::kWsCloseGoingAway, "server shutting down");
        else if (client_read_.fired())
          fail(bridge::kWsCloseGoingAway, "idle timeout");
        else
          client_broken_ = true;  // gone without a close frame (or ended by backend_loop)
        co_return;
      }
      in.commit(n);
    }
  }

  // One non-blocking send of what the socket takes now (most writes fit its buffer): no
  // asynchronous operation and no suspension in the common case. `done` grows by what was sent;
  // would-block is not an error.
  static error_code send_now(Socket& socket, const std::string& data, size_t& done) {
    error_code ec;
    done += socket.write_some(asio::buffer(data.data() + done, data.size() - done), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
    return ec;
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
      last_frame_ms_ = steady_now_ms();
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
        if (payload.size() == 1 || !valid_close_code(code)) code = bridge::kWsCloseProtocolError;
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
          trim(message_);
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
      frame_.clear();
      if (bridge::envelope_to_tlv(message, config_.framing, types_, frame_, error)) {
        pass_or_refuse(decoder_.decode(frame_).frame);
      } else {
        counters().refused.fetch_add(1, std::memory_order_relaxed);
        send_client(WsOpcode::Text, bridge::error_envelope(error, config_.error_status));
      }
      trim(frame_);
      return true;
    }
    // Binary: raw frames, none forwarded unless every one is whole and valid.
    frames_.clear();
    for (stream::Bytes rest = stream::as_bytes(message); !rest.empty();) {
      stream::TlvDecodeResult r = decoder_.decode(rest);
      if (!r.ok()) {
        counters().bad_client_frames.fetch_add(1, std::memory_order_relaxed);
        std::string why = r.status == stream::TlvDecodeResult::Status::NeedMore
                              ? "a binary message must hold whole TLV frames"
                              : "not a valid TLV frame: " + std::string(stream::to_string(r.error));
        fail(bridge::kWsCloseInvalidPayload, why);
        return false;
      }
      frames_.push_back(r.frame);
      rest = rest.subspan(r.frame.bytes.size());
    }
    for (const stream::TlvFrame& frame : frames_) pass_or_refuse(frame);
    return true;
  }

  // A whole, valid frame from the client: to the backend, or answered here when the route's
  // command or rate rules refuse it.
  void pass_or_refuse(const stream::TlvFrame& frame) {
    std::optional<FrameRefusal> refusal = judge_bridge_frame(config_, frame, conn_bucket_);
    if (!refusal) {
      to_backend_.append(stream::as_chars(frame.bytes));
      counters().frames_up.fetch_add(1, std::memory_order_relaxed);
      watch_.client_sent(backend_);
      return;
    }
    if (!refusal->reply) return;
    if (client_binary_) {
      send_client(WsOpcode::Binary, refusal->answer);
    } else {
      stream::TlvFrame answer = decoder_.decode(refusal->answer).frame;
      send_client(WsOpcode::Text, bridge::tlv_to_envelope(answer, types_));
    }
  }

  // ---- backend -> client ------------------------------------------------------------------

  Task<> backend_loop() {
    try {
      co_await read_backend();
      if (!closing_) {
        if (!client_broken_) watch_.closed_by_backend();
        fail(bridge::kWsCloseGoingAway, "the backend closed the connection");
      }
      closing_ = true;
      co_await flush_all();  // the last frames and the close frame go out before anything ends
    } catch (const std::exception& e) {
      failed(e);
    }
    error_code ignored;
    client_socket().cancel(ignored);  // ends client_loop's read; run() lingers, then closes
  }

  Task<> read_backend() {
    IoBuffer& b = backend_in_;
    while (!closing_) {
      if (b.empty() && b.capacity() > BufferPool::kBufferSize) {  // after one big frame
        io_.worker.buffers().release(b);
        b = io_.worker.buffers().acquire();
      }
      if (b.writable() == 0) b.compact();
      auto [ec, n] =
          co_await async_read_edge(backend_, asio::buffer(b.write_ptr(), b.writable()), await_ec);
      if (ec) co_return;
      b.commit(n);
      while (true) {
        stream::TlvDecodeResult r = decoder_.decode(b.view());
        if (r.status == stream::TlvDecodeResult::Status::Error) {
          counters().bad_backend_frames.fetch_add(1, std::memory_order_relaxed);
          log::warn("tlv-bridge: corrupt frame from the backend (" +
                    std::string(stream::to_string(r.error)) + "): session closed");
          watch_.corrupt();
          fail(bridge::kWsCloseInternalError, "the backend sent a corrupt frame");
          co_return;
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
        watch_.frame();
        b.consume(r.frame.bytes.size());
      }
      if (closing_) co_return;
      co_await flush_client();
      // A slow client: what is queued goes out before the backend is read again.
      if (pending_.size() > kClientHighWater) co_await wait_drained();
      if (client_broken_) co_return;
    }
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
      error_code first;
      size_t done = io_.client.write_now(asio::buffer(sending_), first);
      if (first) {
        client_broken_ = true;
        pending_.clear();
        error_code ignored;
        client_socket().close(ignored);
      }
      while (done < sending_.size() && !client_broken_) {
        client_write_.arm(io_.send_timeout, &client_socket());
        auto [ec, n] = co_await io_.client.write_all(
            asio::buffer(sending_.data() + done, sending_.size() - done));
        client_write_.disarm();
        done += n;
        // The idle and drain deadlines cancel every operation on the client socket, this
        // write too: it goes on with the bytes from `done` (TLS included: OpenSSL holds the
        // record it was sending); only a write timeout or a socket error ends the client.
        if (!ec || (ec == asio::error::operation_aborted && !client_write_.fired() &&
                    client_socket().is_open()))
          continue;
        client_broken_ = true;
        pending_.clear();
        error_code ignored;
        client_socket().close(ignored);
      }
      sending_.clear();
      trim(sending_);
    }
    trim(pending_);
    writing_ = false;
    drained_.cancel();
  }

  // Until the other loop's write (if any) is done.
  Task<> wait_drained() {
    while (writing_ && !client_broken_) {
      drained_.expires_at(Timer::time_point::max());
      co_await drained_.async_wait(await_ec);
    }
  }

  // Everything queued is written (or the client is gone).
  Task<> flush_all() {
    co_await wait_drained();
    co_await flush_client();
  }

  // The close frame is out: stop sending, and read and discard what the client still sends for
  // a moment, so closing with unread bytes does not reset the connection (and destroy the close
  // frame in flight).
  Task<> linger() {
    if (client_broken_ || !client_socket().is_open()) co_return;
    if (io_.client.secure()) {  // close_notify, and the client's for a moment
      client_read_.arm(kLingerSeconds, &client_socket());
      co_await tls::shutdown(*io_.client.tls());
      client_read_.disarm();
    }
    error_code ec;
    client_socket().shutdown(Socket::shutdown_send, ec);
    IoBuffer& in = io_.in;
    int64_t until = steady_now_ms() + static_cast<int64_t>(kLingerSeconds * 1000);
    while (!ec && steady_now_ms() < until) {
      in.clear();
      client_read_.arm(static_cast<double>(until - steady_now_ms()) / 1000.0, &client_socket());
      auto [rec, n] = co_await async_read_edge(
          client_socket(), asio::buffer(in.write_ptr(), in.writable()), await_ec);
      client_read_.disarm();
      ec = rec;
    }
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
  int64_t last_frame_ms_ = steady_now_ms();  // the client's last whole frame (idle_timeout)
  int node_ = -1;                            // the backend node of the session (upstream's index)
  BackendWatch watch_;
  Deadline drain_watch_;     // in the worker's idle_waits: fired (cancelling reads) on drain
  BucketState conn_bucket_;  // per-connection rate limit (config.rate_limit)
  std::string frame_;        // a text message's frame before it is judged
  std::vector<stream::TlvFrame> frames_;  // a binary message's frames, checked before any goes
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
