// tlv-bridge's long-polling sessions (docs/bridge.md "Long polling"): for web clients that cannot
// keep a WebSocket, a session is a TCP connection to a TLV backend held by the gateway between
// HTTP requests. Messages from the backend wait in the session's queue until a poll takes them;
// each carries a number, and a poll says which it has (`next`), so an answer lost on a flaky
// link is sent again instead of lost. A session lives on the worker that opened it (its id names
// that worker); requests that land on another worker are handed over (long_polling.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/asio.hpp"
#include "plugins/plugin.hpp"
#include "plugins/tlv_bridge/bridge_config.hpp"

namespace portico::plugins {

// An HTTP answer to a long-polling request (JSON).
struct PollAnswer {
  int status = 200;
  std::string body;
};

// What a request asks of an open session.
struct PollRequest {
  enum class Kind { Send, Poll, Close } kind = Kind::Poll;
  std::string session;  // the id the client holds
  std::string route;    // the plugin's Scope::key(): an id works only on the route that made it
  std::string body;     // Send: one envelope or a JSON array of them
  // Send: the client's number for it (`?send=N`, rising): a send repeated because its answer
  // was lost (a mobile link, a 504) is answered again instead of reaching the backend twice.
  std::optional<uint64_t> send_number;
  std::optional<uint64_t> next;  // Poll: the number of the first message not yet received
  double wait = 0;               // Poll: seconds to wait for a message when none is queued
};

// Opens a session on the request's worker: connects a backend node (balancer, health checks,
// retries as a WebSocket session does), sends the envelopes in the request body if any, and
// answers with the session's id. `config` is the plugin's, kept alive by the session.
Task<PollAnswer> open_poll_session(std::shared_ptr<const TlvBridgeConfig> config, Takeover& io,
                                   Context& ctx);

// Serves `request` on this thread, which must be the worker the session id names.
Task<PollAnswer> serve_poll_request(const PollRequest& request);

// The worker index a session id names, or -1 for an id that is not one of ours.
int poll_session_worker(std::string_view session);

// An error answer: {"error_msg": "tlv-bridge: ..."}.
PollAnswer poll_error(int status, std::string_view message);

}  // namespace portico::plugins
