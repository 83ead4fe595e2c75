#include "upstream/upstream_target.hpp"

#include <gtest/gtest.h>

#include <map>

using namespace portico::upstream;

namespace {
UpstreamTarget make(std::vector<std::pair<int, int>> weight_priority,
                    std::optional<int> retries = {}) {
  auto spec = std::make_shared<portico::config::Upstream>();
  spec->retries = retries;
  std::vector<NodeTarget> nodes;
  for (size_t i = 0; i < weight_priority.size(); ++i) {
    NodeTarget t;
    t.address = "n" + std::to_string(i);
    t.weight = weight_priority[i].first;
    t.priority = weight_priority[i].second;
    nodes.push_back(t);
  }
  return UpstreamTarget(spec, nodes, 2);
}
}  // namespace

TEST(UpstreamTarget, SmoothWeightedRoundRobin) {
  auto u = make({{5, 0}, {1, 0}, {1, 0}});
  std::string seq;
  TriedNodes none;
  for (int i = 0; i < 7; ++i)
    seq += u.nodes()[static_cast<size_t>(u.pick(0, none))].address.substr(1);
  EXPECT_EQ(seq, "0010200");  // nginx's smooth sequence for weights 5,1,1
}

TEST(UpstreamTarget, WorkersHaveIndependentState) {
  auto u = make({{1, 0}, {1, 0}});
  TriedNodes none;
  EXPECT_EQ(u.pick(0, none), u.pick(1, none));
}

TEST(UpstreamTarget, HigherPriorityFirstLowerOnlyWhenTried) {
  auto u = make({{1, 0}, {1, 10}, {1, 10}});
  TriedNodes tried;
  std::map<std::string, int> seen;
  for (int i = 0; i < 10; ++i) seen[u.nodes()[static_cast<size_t>(u.pick(0, tried))].address]++;
  EXPECT_EQ(seen.count("n0"), 0u);
  int a = u.pick(0, tried);
  tried.add(static_cast<size_t>(a));
  int b = u.pick(0, tried);
  EXPECT_NE(a, b);
  tried.add(static_cast<size_t>(b));
  EXPECT_EQ(u.nodes()[static_cast<size_t>(u.pick(0, tried))].address, "n0");
  tried.add(static_cast<size_t>(u.pick(0, tried)));
  EXPECT_EQ(u.pick(0, tried), UpstreamTarget::kNone);
}

TEST(UpstreamTarget, ZeroWeightNodesGetNoTraffic) {
  auto u = make({{0, 0}, {1, 0}});
  TriedNodes tried;
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(u.nodes()[static_cast<size_t>(u.pick(0, tried))].address, "n1");
}

TEST(UpstreamTarget, RetriesDefaultToNodesMinusOne) {
  EXPECT_EQ(make({{1, 0}, {1, 0}, {1, 0}}).max_attempts(), 3);
  EXPECT_EQ(make({{1, 0}, {1, 0}, {1, 0}}, 0).max_attempts(), 1);
  EXPECT_EQ(make({{1, 0}}, 5).max_attempts(), 6);
}

TEST(TriedNodes, BeyondSixtyFourNodes) {
  TriedNodes t;
  t.add(3);
  t.add(100);
  EXPECT_TRUE(t.contains(3));
  EXPECT_TRUE(t.contains(100));
  EXPECT_FALSE(t.contains(99));
}
