// tlv-bridge's WebSocket sessions: a browser's WebSocket, terminated at the gateway, paired with
// one TCP connection to a TLV backend. Text messages are JSON envelopes (TLV.md) converted to
// frames and back; binary messages are raw TLV frames, passed on once checked whole and valid.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "core/asio.hpp"
#include "plugins/plugin.hpp"
#include "plugins/tlv_bridge/bridge_config.hpp"

namespace portico::plugins {

// Process-wide counters (relaxed atomics; a session touches them a few times per message).
struct TlvBridgeCounters {
  std::atomic<int64_t> active{0};
  std::atomic<uint64_t> sessions{0};
  std::atomic<uint64_t> frames_up{0};            // frames sent to backends
  std::atomic<uint64_t> frames_down{0};          // frames delivered to clients
  std::atomic<uint64_t> refused{0};              // client messages answered with an error envelope
  std::atomic<uint64_t> bad_client_frames{0};    // corrupt WebSocket or TLV input: closed
  std::atomic<uint64_t> bad_backend_frames{0};   // corrupt TLV from a backend: closed
  std::atomic<uint64_t> connect_failures{0};     // no backend node accepted the connection
  std::atomic<uint64_t> rpc_replies{0};          // HTTP RPCs answered with the backend's reply
  std::atomic<uint64_t> rpc_timeouts{0};         // HTTP RPCs without a reply in rpc_timeout
  std::atomic<uint64_t> rate_limited{0};         // frames refused by rate_limit
  std::atomic<uint64_t> command_denied{0};       // frames refused by commands
  std::atomic<int64_t> poll_active{0};           // long-polling sessions open
  std::atomic<uint64_t> poll_sessions{0};        // long-polling sessions opened
  std::atomic<uint64_t> poll_handovers{0};       // polling requests served by another worker
  std::atomic<uint64_t> poll_repeated_sends{0};  // sends whose number was taken already
  std::atomic<uint64_t> poll_memory_ends{0};     // sessions ended by max_poll_memory
};
TlvBridgeCounters& tlv_bridge_counters();

// Resolves the config's message types in the request's snapshot; on failure logs and sets a 500
// answer in ctx.reply.
bool bind_types(const TlvBridgeConfig& config, const Takeover& io, bridge::CmdTypes& types,
                Context& ctx);

// Serves the upgraded connection until either side closes. `key` is the client's
// Sec-WebSocket-Key (already checked). Instead of upgrading, returns true with an answer in
// ctx.reply: 502 when no backend accepts a connection, 500 when the types do not resolve.
Task<bool> run_websocket_tlv_session(const TlvBridgeConfig& config, Takeover& io, std::string key,
                                     Context& ctx);

}  // namespace portico::plugins
