// The per-frame decisions of a tlv stream route, apart from any socket so they can be tested
// alone: answer a heartbeat at the edge, refuse a command, apply the per-connection and per-user
// rate limits, or forward to the route's upstream or one of its command sub-routes.
#pragma once

#include <cstdint>

#include "metrics/stream_metrics.hpp"
#include "plugins/limit/leaky_bucket.hpp"
#include "stream/stream_route.hpp"
#include "stream/tlv_codec.hpp"

namespace portico::stream {

struct FrameVerdict {
  enum class Action : uint8_t { Forward, Reply, Drop };
  Action action = Action::Forward;
  int sub_route = -1;   // Forward: index into route.sub_routes, -1 for the route's upstream
  uint32_t status = 0;  // Reply: the status of the local answer (cmd + 1, same seq)
  bool heartbeat = false;
  // Set when refused (Reply or Drop of a frame the client meant for the backend).
  bool refused = false;
  metrics::StreamRefusal why = metrics::StreamRefusal::CommandDenied;
};

// Where the per-connection rate is counted when there is no connection (the bridge's HTTP RPC):
// per client address in a shared table.
struct SharedConnectionRate {
  plugins::LeakyBucketTable* table;
  std::string_view key;
};

// `conn_bucket` is the connection's own rate-limit state (16 bytes, no table), unless `shared`
// says where else the per-connection rate is kept; now_ms is a monotonic millisecond clock.
FrameVerdict judge_frame(const CompiledStreamRoute& route, const TlvHeader& header,
                         plugins::BucketState& conn_bucket, int64_t now_ms,
                         const SharedConnectionRate* shared = nullptr);

}  // namespace portico::stream
