#include "upstream/node_health.hpp"

#include <gtest/gtest.h>

using namespace portico;
using upstream::NodeHealth;
using upstream::Outcome;

namespace {
config::HealthThresholds healthy_side() { return {1, 2, {200}, 0, 0, 0}; }
config::HealthThresholds unhealthy_side() { return {1, 0, {500}, 3, 2, 2}; }
// Two timeouts in a row (the unhealthy_side() threshold), reported by passive checks at `ms`.
void two_timeouts(NodeHealth& n, const config::PassiveCheck& eject, int64_t ms) {
  for (int i = 0; i < 2; ++i)
    n.report(Outcome::Timeout, 0, healthy_side(), unhealthy_side(), &eject, ms, "passive");
}
config::PassiveCheck ejection(double base_s, double max_s) {
  config::PassiveCheck eject;
  eject.ejection_base = base_s;
  eject.ejection_max = max_s;
  return eject;
}
}  // namespace

TEST(NodeHealth, FailuresOfOneKindInARowMakeItUnhealthyAndSuccessesBringItBack) {
  NodeHealth n("upstreams/u", "10.0.0.1:80");
  auto h = healthy_side(), u = unhealthy_side();
  n.report(Outcome::Success, 500, h, u, nullptr, 1, "active");
  n.report(Outcome::Success, 500, h, u, nullptr, 2, "active");
  EXPECT_TRUE(n.healthy(3));
  n.report(Outcome::Success, 500, h, u, nullptr, 3, "active");
  EXPECT_FALSE(n.healthy(4));
  EXPECT_EQ(n.status().reason, "active: 3 HTTP failures (last status 500)");
  n.report(Outcome::Success, 200, h, u, nullptr, 5, "active");
  EXPECT_FALSE(n.healthy(6));
  n.report(Outcome::Success, 200, h, u, nullptr, 7, "active");
  EXPECT_TRUE(n.healthy(8));
}

TEST(NodeHealth, ASuccessResetsTheFailureCountAndOtherStatusesCountForNothing) {
  NodeHealth n("u", "a");
  auto h = healthy_side(), u = unhealthy_side();
  n.report(Outcome::TcpFailure, 0, h, u, nullptr, 1, "passive");
  n.report(Outcome::Success, 200, h, u, nullptr, 2, "passive");
  n.report(Outcome::TcpFailure, 0, h, u, nullptr, 3, "passive");
  EXPECT_TRUE(n.healthy(4));                                     // never two in a row
  n.report(Outcome::Success, 404, h, u, nullptr, 5, "passive");  // on neither list
  n.report(Outcome::TcpFailure, 0, h, u, nullptr, 6, "passive");
  EXPECT_FALSE(n.healthy(7));
}

TEST(NodeHealth, PassiveEjectionEndsByItselfAndGrowsWithEachEjection) {
  NodeHealth n("u", "a");
  auto h = healthy_side(), u = unhealthy_side();
  config::PassiveCheck eject = ejection(10, 25);
  two_timeouts(n, eject, 1000);
  EXPECT_FALSE(n.healthy(5000));
  EXPECT_TRUE(n.healthy(11000));  // half-open after 10 s
  // Failing again while half-open: ejected for 2 x 10 s.
  two_timeouts(n, eject, 11000);
  EXPECT_FALSE(n.healthy(30000));
  EXPECT_TRUE(n.healthy(31000));
  // The third ejection is capped at 25 s.
  two_timeouts(n, eject, 31000);
  EXPECT_FALSE(n.healthy(55000));
  EXPECT_TRUE(n.healthy(56000));
  EXPECT_EQ(n.status().ejections, 3);
  // Successes while half-open make it healthy for good.
  n.report(Outcome::Success, 200, h, u, &eject, 56000, "passive");
  n.report(Outcome::Success, 200, h, u, &eject, 56001, "passive");
  EXPECT_TRUE(n.status().healthy);
  EXPECT_EQ(n.status().ejected_until_ms, 0);
}

TEST(NodeHealth, TimeSpentHealthyWinsEjectionsBack) {
  NodeHealth n("u", "a");
  auto h = healthy_side(), u = unhealthy_side();
  config::PassiveCheck eject = ejection(10, 25);
  auto eject_at = [&](int64_t ms) { two_timeouts(n, eject, ms); };
  auto recover_at = [&](int64_t ms) {
    n.report(Outcome::Success, 200, h, u, &eject, ms, "passive");
    n.report(Outcome::Success, 200, h, u, &eject, ms, "passive");
  };
  eject_at(1000);
  recover_at(11000);
  eject_at(12000);  // 1 s healthy: the second ejection, 20 s
  EXPECT_EQ(n.status().ejections, 2);
  EXPECT_EQ(n.status().ejected_until_ms, 32000);
  recover_at(32000);
  eject_at(32000 + 25000);  // healthy for one ejection_max_time: back to one before, so 2 again
  EXPECT_EQ(n.status().ejections, 2);
  recover_at(77000);
  eject_at(77000 + 10 * 25000);  // healthy for long: starts over at the base time
  EXPECT_EQ(n.status().ejections, 1);
  EXPECT_EQ(n.status().ejected_until_ms, 77000 + 10 * 25000 + 10000);
}

TEST(NodeHealth, EjectionsStopCountingOnceTheyReachTheLongestEjection) {
  // A node flapping for days must not pile up ejections it would then take days to win back.
  NodeHealth n("u", "a");
  auto h = healthy_side(), u = unhealthy_side();
  config::PassiveCheck eject = ejection(10, 25);  // 25 s reached at the third ejection
  int64_t now = 1000;
  for (int i = 0; i < 50; ++i) {
    two_timeouts(n, eject, now);
    now = n.status().ejected_until_ms;  // half-open, and failing again at once
  }
  EXPECT_EQ(n.status().ejections, 3);
  // Two ejection_max_times healthy win two back: the next ejection is 2 x 10 s, not 25 s.
  n.report(Outcome::Success, 200, h, u, &eject, now, "passive");
  n.report(Outcome::Success, 200, h, u, &eject, now, "passive");
  now += 2 * 25000;
  two_timeouts(n, eject, now);
  EXPECT_EQ(n.status().ejections, 2);
  EXPECT_EQ(n.status().ejected_until_ms, now + 20000);
}

TEST(HealthRegistry, SameUpstreamAndAddressGetTheSameStateUntilNobodyHoldsIt) {
  upstream::HealthRegistry r;
  auto a = r.get("upstreams/u", "10.0.0.1:80");
  EXPECT_EQ(a, r.get("upstreams/u", "10.0.0.1:80"));
  EXPECT_NE(a, r.get("upstreams/v", "10.0.0.1:80"));
  NodeHealth* raw = a.get();
  a.reset();
  r.collect_garbage();
  auto again = r.get("upstreams/u", "10.0.0.1:80");
  EXPECT_TRUE(again->healthy(0));
  (void)raw;
}

TEST(NodeHealth, ActiveChecksAddedWhileEjectedKeepTheNodeDownUntilProbesPass) {
  // Ejected by passive checks (10 s); its ejection over, the node is half-open. Active checks
  // added then find it failing: only their successes may bring it back, not the old ejection.
  NodeHealth n("u", "a");
  auto h = healthy_side(), u = unhealthy_side();
  config::PassiveCheck eject = ejection(10, 300);
  two_timeouts(n, eject, 1000);
  EXPECT_TRUE(n.healthy(12000));  // half-open
  n.report(Outcome::Timeout, 0, h, u, nullptr, 12000, "active");
  n.report(Outcome::Timeout, 0, h, u, nullptr, 13000, "active");
  EXPECT_FALSE(n.healthy(14000));
  EXPECT_FALSE(n.healthy(1000000));
  EXPECT_EQ(n.status().ejected_until_ms, 0);
  n.report(Outcome::Success, 200, h, u, nullptr, 20000, "active");
  n.report(Outcome::Success, 200, h, u, nullptr, 21000, "active");
  EXPECT_TRUE(n.healthy(22000));
}

TEST(NodeHealth, RealTrafficPassingDoesNotResetTheProbesFailures) {
  // The health endpoint says 500 (draining) while requests still pass: three failing probes
  // in a row take the node out, whatever traffic passed in between.
  NodeHealth n("u", "a");
  auto h = healthy_side(), u = unhealthy_side();
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(n.healthy(10 * i));
    n.report(Outcome::Success, 200, h, u, nullptr, 10 * i + 1, "passive");
    n.report(Outcome::Success, 500, h, u, nullptr, 10 * i + 2, "active");
  }
  EXPECT_FALSE(n.healthy(100));
  EXPECT_EQ(n.status().reason, "active: 3 HTTP failures (last status 500)");
}
