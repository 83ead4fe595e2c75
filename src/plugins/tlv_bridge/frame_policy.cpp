#include "plugins/tlv_bridge/frame_policy.hpp"

#include "core/deadline.hpp"
#include "plugins/tlv_bridge/websocket_session.hpp"
#include "stream/tlv_filter.hpp"

namespace portico::plugins {

std::optional<FrameRefusal> judge_bridge_frame(const TlvBridgeConfig& config,
                                               const stream::TlvFrame& frame,
                                               BucketState& conn_bucket,
                                               const stream::SharedConnectionRate* shared) {
  if (!config.policy) return std::nullopt;
  stream::FrameVerdict v =
      stream::judge_frame(*config.policy, frame.header, conn_bucket, steady_now_ms(), shared);
  if (!v.refused) return std::nullopt;
  FrameRefusal refusal;
  refusal.reply = v.action == stream::FrameVerdict::Action::Reply;
  refusal.rate_limited = v.why != metrics::StreamRefusal::CommandDenied;
  (refusal.rate_limited ? tlv_bridge_counters().rate_limited : tlv_bridge_counters().command_denied)
      .fetch_add(1, std::memory_order_relaxed);
  if (refusal.reply) stream::append_tlv_reply(config.framing, frame, v.status, {}, refusal.answer);
  return refusal;
}

}  // namespace portico::plugins
