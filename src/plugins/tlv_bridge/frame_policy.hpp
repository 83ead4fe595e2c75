// The per-frame rules of a tlv stream route (command allow/deny, per-connection and per-user
// rate limits: stream/tlv_filter.hpp) applied to frames clients send through tlv-bridge, so web
// users meet the same message frequency control as TCP users.
#pragma once

#include <optional>
#include <string>

#include "plugins/limit/leaky_bucket.hpp"
#include "plugins/tlv_bridge/bridge_config.hpp"
#include "stream/tlv_codec.hpp"
#include "stream/tlv_filter.hpp"

namespace portico::plugins {

struct FrameRefusal {
  bool reply = true;          // answer with `answer`, or drop silently
  bool rate_limited = false;  // false: the command is denied
  std::string answer;         // the local answer frame: cmd + 1, the same seq, the status
};

// Nothing when `frame` may go to the backend; otherwise how it is refused (counted).
// `conn_bucket` is the session's own per-connection state (see stream::judge_frame for
// `shared`).
std::optional<FrameRefusal> judge_bridge_frame(
    const TlvBridgeConfig& config, const stream::TlvFrame& frame, BucketState& conn_bucket,
    const stream::SharedConnectionRate* shared = nullptr);

}  // namespace portico::plugins
