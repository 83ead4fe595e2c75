#include "stream/tlv_filter.hpp"

#include <cstring>

namespace portico::stream {
namespace {

FrameVerdict refuse(const Refusal& how, metrics::StreamRefusal why) {
  FrameVerdict v;
  v.action = how.reply ? FrameVerdict::Action::Reply : FrameVerdict::Action::Drop;
  v.status = how.status;
  v.refused = true;
  v.why = why;
  return v;
}

}  // namespace

FrameVerdict judge_frame(const CompiledStreamRoute& route, const TlvHeader& header,
                         plugins::BucketState& conn_bucket, int64_t now_ms,
                         const SharedConnectionRate* shared) {
  const TlvProtocolConfig& p = *route.tlv;
  if (p.heartbeat_local && header.cmd == p.heartbeat_cmd) {
    FrameVerdict v;
    v.action = FrameVerdict::Action::Reply;
    v.heartbeat = true;
    return v;
  }
  // Commands first: a denied frame must not use up the sender's rate.
  if ((!p.allow.empty() && !p.allow.contains(header.cmd)) || p.deny.contains(header.cmd))
    return refuse(p.command_refusal, metrics::StreamRefusal::CommandDenied);
  const FrameRate& conn = p.per_connection;
  if (conn.enabled() &&
      (shared ? shared->table->take(shared->key, conn.rate_milli, conn.burst_milli, now_ms)
              : plugins::leak_and_add(&conn_bucket, conn.rate_milli, conn.burst_milli, now_ms))
          .rejected)
    return refuse(p.rate_refusal, metrics::StreamRefusal::RateLimitConnection);
  if (p.per_user.enabled() && route.user_buckets && header.from != 0) {
    char key[8];
    std::memcpy(key, &header.from, sizeof(key));
    if (route.user_buckets
            ->take(std::string_view(key, sizeof(key)), p.per_user.rate_milli,
                   p.per_user.burst_milli, now_ms)
            .rejected)
      return refuse(p.rate_refusal, metrics::StreamRefusal::RateLimitUser);
  }
  FrameVerdict v;
  v.sub_route = route.sub_route_for(header.cmd);
  return v;
}

}  // namespace portico::stream
