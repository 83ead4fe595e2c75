#include "plugins/geo/nearest_nodes.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace portico::plugins {
namespace {

const Coordinates kSingapore{1.35, 103.82}, kFrankfurt{50.04, 8.56}, kSanFrancisco{37.62, -122.38};

TEST(DistanceKm, MatchesKnownGreatCircleDistances) {
  EXPECT_NEAR(distance_km(kSingapore, kFrankfurt), 10'260, 60);
  EXPECT_NEAR(distance_km(kFrankfurt, kSanFrancisco), 9'140, 60);
  EXPECT_DOUBLE_EQ(distance_km(kSingapore, kSingapore), 0);
  // Across the antimeridian: Tokyo to Anchorage is not the long way round.
  EXPECT_NEAR(distance_km({35.55, 139.78}, {61.17, -150.0}), 5'560, 60);
}

std::vector<NodePlace> three_regions() {
  return {{true, true, kSingapore}, {true, true, kFrankfurt}, {true, true, kSanFrancisco}};
}

TEST(NearestNodes, NearestFirstUpToCount) {
  auto nodes = three_regions();
  EXPECT_EQ(nearest_nodes(nodes, Coordinates{3.1, 101.7}, 2, 0).nodes,
            (std::vector<size_t>{0, 1}));  // Kuala Lumpur
  EXPECT_EQ(nearest_nodes(nodes, Coordinates{48.85, 2.35}, 3, 0).nodes,
            (std::vector<size_t>{1, 2, 0}));  // Paris
  EXPECT_EQ(nearest_nodes(nodes, Coordinates{48.85, 2.35}, 9, 0).nodes.size(), 3u);
}

TEST(NearestNodes, UnhealthyNodesOnlyWhenNoneIsHealthy) {
  auto nodes = three_regions();
  nodes[0].healthy = false;
  NearestChoice c = nearest_nodes(nodes, kSingapore, 3, 0);
  EXPECT_EQ(c.nodes, (std::vector<size_t>{1, 2}));
  EXPECT_FALSE(c.degraded);
  for (auto& n : nodes) n.healthy = false;
  c = nearest_nodes(nodes, kSingapore, 1, 0);
  EXPECT_EQ(c.nodes, (std::vector<size_t>{0}));
  EXPECT_TRUE(c.degraded);
}

TEST(NearestNodes, WeightZeroNodesAreNeverGiven) {
  auto nodes = three_regions();
  nodes[0].usable = false;
  EXPECT_EQ(nearest_nodes(nodes, kSingapore, 1, 0).nodes, (std::vector<size_t>{1}));
  for (auto& n : nodes) {
    n.usable = false;
    n.healthy = false;
  }
  EXPECT_TRUE(nearest_nodes(nodes, kSingapore, 1, 0).nodes.empty());
}

TEST(NearestNodes, UnplacedNodesComeLastAndUnplacedClientsSpread) {
  auto nodes = three_regions();
  nodes[0].at.reset();
  EXPECT_EQ(nearest_nodes(nodes, kSingapore, 3, 0).nodes, (std::vector<size_t>{1, 2, 0}));
  nodes = three_regions();
  EXPECT_EQ(nearest_nodes(nodes, std::nullopt, 2, 0).nodes, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(nearest_nodes(nodes, std::nullopt, 2, 1).nodes, (std::vector<size_t>{1, 2}));
  EXPECT_EQ(nearest_nodes(nodes, std::nullopt, 2, 5).nodes, (std::vector<size_t>{2, 0}));
}

TEST(NearestNodes, NodesAtTheSameDistanceShareTheirClients) {
  // Two access nodes in Singapore, one in Frankfurt: Singapore's clients go to either first,
  // by their hash, and never to Frankfurt first.
  std::vector<NodePlace> nodes = {
      {true, true, kSingapore}, {true, true, kFrankfurt}, {true, true, kSingapore}};
  std::set<size_t> firsts;
  for (uint32_t spread = 0; spread < 6; ++spread) {
    auto chosen = nearest_nodes(nodes, kSingapore, 2, spread).nodes;
    ASSERT_EQ(chosen.size(), 2u);
    EXPECT_NE(chosen[0], 1u);
    EXPECT_NE(chosen[1], 1u);
    firsts.insert(chosen[0]);
  }
  EXPECT_EQ(firsts, (std::set<size_t>{0, 2}));
}

TEST(NearestNodes, EqualNodesAmongManyShareTheirClientsEvenly) {
  // Ten nodes, two of them in Singapore: Singapore's clients split half and half between the
  // two, whatever the other eight.
  std::vector<NodePlace> nodes(10, NodePlace{true, true, kFrankfurt});
  nodes[3].at = kSingapore;
  nodes[7].at = kSingapore;
  std::map<size_t, int> firsts;
  for (uint32_t spread = 0; spread < 100; ++spread)
    ++firsts[nearest_nodes(nodes, kSingapore, 1, spread).nodes.at(0)];
  EXPECT_EQ(firsts, (std::map<size_t, int>{{3, 50}, {7, 50}}));
}

TEST(NearestNodes, WeightsShareAGroupsClientsInProportion) {
  // Two nodes in Singapore, weights 1 and 3, and one in Frankfurt: Singapore's clients go first
  // to the heavier node three times as often, and never first to Frankfurt.
  std::vector<NodePlace> nodes = {
      {true, true, kSingapore, 1}, {true, true, kFrankfurt, 5}, {true, true, kSingapore, 3}};
  std::map<size_t, int> firsts;
  for (uint32_t spread = 0; spread < 4000; ++spread) {
    auto chosen = nearest_nodes(nodes, kSingapore, 2, spread).nodes;
    ++firsts[chosen.at(0)];
    EXPECT_NE(chosen.at(1), 1u);  // the other Singapore node comes second
  }
  EXPECT_EQ(firsts.count(1), 0u);
  EXPECT_NEAR(firsts[2] / 4000.0, 0.75, 0.03);
  // A client keeps its answer while nothing changes.
  EXPECT_EQ(nearest_nodes(nodes, kSingapore, 2, 77).nodes,
            nearest_nodes(nodes, kSingapore, 2, 77).nodes);
}

TEST(NearestNodes, PlacedClientsSpreadWhenNoNodeHasAPlace) {
  std::vector<NodePlace> nodes(3);
  std::set<size_t> firsts;
  for (uint32_t spread = 0; spread < 3; ++spread)
    firsts.insert(nearest_nodes(nodes, kSingapore, 1, spread).nodes.at(0));
  EXPECT_EQ(firsts, (std::set<size_t>{0, 1, 2}));
}

}  // namespace
}  // namespace portico::plugins
