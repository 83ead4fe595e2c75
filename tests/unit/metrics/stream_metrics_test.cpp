#include "metrics/stream_metrics.hpp"

#include <gtest/gtest.h>

#include "metrics/prometheus.hpp"

namespace portico::metrics {
namespace {

TEST(StreamCounters, NamedCmdsGetLabelsOthersShareOne) {
  StreamCounters c;
  c.frame(StreamDirection::ToUpstream, 0x4001, true, 100);
  c.frame(StreamDirection::ToUpstream, 0x4001, true, 50);
  c.frame(StreamDirection::ToClient, 0x4002, true, 30);
  for (uint32_t cmd = 0; cmd < 1000; ++cmd) c.frame(StreamDirection::ToUpstream, cmd, false, 1);
  StreamCounters::Totals t;
  c.collect(t);
  c.collect(t);  // a second worker with the same counts
  ASSERT_EQ(t.by_cmd.size(), 3u);
  EXPECT_EQ(t.by_cmd[0x4001].frames[0], 4u);
  EXPECT_EQ(t.by_cmd[0x4001].bytes[0], 300u);
  EXPECT_EQ(t.by_cmd[0x4002].frames[1], 2u);
  EXPECT_EQ(t.by_cmd[-1].frames[0], 2000u);
}

TEST(StreamCounters, LabelCapOverflowsIntoOther) {
  StreamCounters c;
  for (uint32_t cmd = 0; cmd < StreamCounters::kCmdSlots + 10; ++cmd)
    c.frame(StreamDirection::ToUpstream, cmd, true, 1);
  StreamCounters::Totals t;
  c.collect(t);
  EXPECT_EQ(t.by_cmd.size(), StreamCounters::kCmdSlots + 1);
  EXPECT_EQ(t.by_cmd[-1].frames[0], 10u);
}

TEST(StreamCounters, ClosesAndActiveConnectionsInTheExposition) {
  StreamCounters c;
  c.opened();
  c.opened();
  c.closed(StreamClose::BadEndMarker);
  c.refused(StreamRefusal::RateLimitUser, false);
  StreamCounters::Totals t;
  c.collect(t);
  PrometheusWriter w;
  write_stream_metrics(w, t);
  std::string text = w.take();
  EXPECT_NE(text.find("portico_stream_connections_active 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("portico_stream_closed_total{reason=\"bad_end_marker\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("portico_stream_refused_frames_total{reason=\"rate_limit_user\","
                      "action=\"drop\"} 1\n"),
            std::string::npos);
}

}  // namespace
}  // namespace portico::metrics
