#include "upstream/upstream_target.hpp"

#include <gtest/gtest.h>

#include <map>

using namespace portico::upstream;

namespace {
UpstreamTarget make(std::vector<std::pair<int, int>> weight_priority,
                    std::optional<int> retries = {}, std::string type = "roundrobin") {
  auto spec = std::make_shared<portico::config::Upstream>();
  spec->retries = retries;
  spec->type = type;
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

namespace {
UpstreamTarget chash(int nodes, int first = 0) {
  auto spec = std::make_shared<portico::config::Upstream>();
  spec->type = "chash";
  std::vector<NodeTarget> list;
  for (int i = first; i < first + nodes; ++i) {
    NodeTarget t;
    t.address = "10.0.0." + std::to_string(i) + ":80";
    list.push_back(t);
  }
  return UpstreamTarget(spec, list, 1);
}

std::string owner(const UpstreamTarget& u, const std::string& key, const TriedNodes& tried = {}) {
  int i = u.pick(0, tried, key);
  return i == UpstreamTarget::kNone ? "-" : u.nodes()[static_cast<size_t>(i)].address;
}
}  // namespace

TEST(ConsistentHash, SameKeySameNodeAndEvenSpread) {
  auto u = chash(4);
  std::map<std::string, int> counts;
  for (int k = 0; k < 20000; ++k) {
    std::string key = "user-" + std::to_string(k);
    EXPECT_EQ(owner(u, key), owner(u, key));
    ++counts[owner(u, key)];
  }
  ASSERT_EQ(counts.size(), 4u);
  for (const auto& [node, n] : counts) {
    EXPECT_GT(n, 20000 / 4 * 0.75) << node;
    EXPECT_LT(n, 20000 / 4 * 1.25) << node;
  }
}

TEST(ConsistentHash, AddingANodeMovesAboutOneNthOfTheKeys) {
  auto four = chash(4);
  auto five = chash(5);  // the same four plus 10.0.0.4
  int moved = 0, to_new = 0;
  const int keys = 20000;
  for (int k = 0; k < keys; ++k) {
    std::string key = "k" + std::to_string(k);
    std::string before = owner(four, key), after = owner(five, key);
    if (before != after) {
      ++moved;
      if (after == "10.0.0.4:80") ++to_new;
    }
  }
  // Ideal: 1/5 of the keys move, all of them to the new node.
  EXPECT_GT(moved, keys / 5 * 0.7);
  EXPECT_LT(moved, keys / 5 * 1.3);
  EXPECT_EQ(moved, to_new);
}

TEST(ConsistentHash, RetryGoesToTheKeysNextNodeAndLowerLevelsLast) {
  auto u = chash(3);
  TriedNodes tried;
  std::string first = owner(u, "abc");
  tried.add(static_cast<size_t>(u.pick(0, {}, "abc")));
  std::string second = owner(u, "abc", tried);
  EXPECT_NE(first, second);
  EXPECT_EQ(second, owner(u, "abc", tried));  // deterministic: every gateway agrees
  EXPECT_EQ(UpstreamTarget::hash("abc"), UpstreamTarget::hash("abc"));
}

TEST(LeastConn, PicksTheNodeWithFewestRequestsInFlightPerWeight) {
  auto u = make({{1, 0}, {1, 0}, {2, 0}}, {}, "least_conn");
  TriedNodes none;
  // Node 2 (weight 2) takes two requests before the others look as loaded.
  std::vector<int> picks;
  for (int i = 0; i < 4; ++i) {
    int n = u.pick(0, none);
    u.started(0, n);
    picks.push_back(n);
  }
  std::map<int, int> count;
  for (int n : picks) ++count[n];
  EXPECT_EQ(count[2], 2);
  EXPECT_EQ(count[0], 1);
  EXPECT_EQ(count[1], 1);
  // Finishing node 0's request makes it the least loaded.
  u.finished(0, 0, 1000, false, 1);
  EXPECT_EQ(u.pick(0, none), 0);
}

TEST(Ewma, PrefersTheFastNodeAndForgetsSlowness) {
  auto u = make({{1, 0}, {1, 0}}, {}, "ewma");
  TriedNodes none;
  int64_t now = 1000000;
  // Unmeasured nodes count as half the best measured one (none yet: they tie): tried first.
  int a = u.pick(0, none, {}, now);
  u.started(0, a);
  u.finished(0, a, a == 0 ? 4000 : 14000, false, now);
  int b = u.pick(0, none, {}, now);
  EXPECT_NE(a, b);
  u.started(0, b);
  u.finished(0, b, b == 0 ? 4000 : 14000, false, now);
  int fast_picks = 0;
  for (int i = 0; i < 100; ++i) {
    now += 1000;
    int n = u.pick(0, none, {}, now);
    u.started(0, n);
    u.finished(0, n, n == 0 ? 4000 : 14000, false, now);
    fast_picks += n == 0;
  }
  EXPECT_EQ(fast_picks, 100);
  // After a long quiet spell the slow node's estimate has decayed below the fast one's
  // refreshed one: it gets a request again and is measured anew.
  EXPECT_LT(u.ewma_us(0, 1, now + 60000000), 4000);
  // A failure counts as slow.
  u.finished(0, 0, 10, true, now);
  EXPECT_GT(u.ewma_us(0, 0, now), 4000);
}

TEST(Ewma, ANodeQuietForLongDoesNotDrawEveryRequestInFlight) {
  // The slow node's estimate has decayed to almost nothing after a minute unused. Requests
  // that start before any answers: it gets some (it must be measured again), not all of them.
  auto u = make({{1, 0}, {1, 0}}, {}, "ewma");
  TriedNodes none;
  int64_t now = 1000000;
  u.finished(0, 0, 4000, false, now);   // fast
  u.finished(0, 1, 14000, false, now);  // slow
  for (int i = 0; i < 50; ++i) {
    now += 1000;
    u.finished(0, 0, 4000, false, now);
  }
  now += 60000000;
  u.finished(0, 0, 4000, false, now);  // the fast node is fresh; the slow one decayed
  EXPECT_LT(u.ewma_us(0, 1, now), 100);
  int to_slow = 0;
  for (int i = 0; i < 16; ++i) {
    int n = u.pick(0, none, {}, now);
    u.started(0, n);
    to_slow += n == 1;
  }
  EXPECT_GE(to_slow, 1);
  EXPECT_LE(to_slow, 12);
}

TEST(LeastConn, SessionsCountOnEveryWorkerAndInATargetCompiledAnew) {
  auto spec = std::make_shared<portico::config::Upstream>();
  spec->type = "least_conn";
  auto a = std::make_shared<NodeHealth>("upstreams/u", "a");
  auto b = std::make_shared<NodeHealth>("upstreams/u", "b");
  auto target = [&](bool with_b) {
    std::vector<NodeTarget> nodes(with_b ? 2 : 1);
    nodes[0].address = "a";
    nodes[0].health = a;
    if (with_b) {
      nodes[1].address = "b";
      nodes[1].health = b;
    }
    return std::make_unique<UpstreamTarget>(spec, nodes, 2);
  };
  auto before = target(false);
  before->session_opened(0);  // two sessions on a, opened through the old compile
  before->session_opened(0);
  auto after = target(true);  // b added: compiled anew
  TriedNodes none;
  EXPECT_EQ(after->pick(1, none), 1);  // another worker, the new target: b has fewer
  after->session_opened(1);
  EXPECT_EQ(after->pick(0, none), 1);
  after->session_opened(1);
  before->session_closed(0);  // the old compile's session ends: a has 1, b has 2
  EXPECT_EQ(after->pick(0, none), 0);
}

TEST(Ewma, ANodeWhoseClientsGiveUpDoesNotLookFast) {
  auto u = make({{1, 0}, {1, 0}}, {}, "ewma");
  TriedNodes none;
  int64_t now = 1000000;
  u.started(0, 0);
  u.finished(0, 0, 1000, false, now);  // node 0 answers in 1 ms
  // node 1 never answers: its client gives up after 2 s; that is no latency sample, but the
  // node took at least that long (unmeasured, it would count as half the best: the favourite)
  u.started(0, 1);
  u.abandoned(0, 1, 2000000, now);
  for (int i = 0; i < 5; ++i) {
    now += 1000;
    EXPECT_EQ(u.pick(0, none, {}, now), 0);
  }
}
