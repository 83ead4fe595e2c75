#include "plugins/geo/nearest_nodes.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace portico::plugins {
namespace {

// A uniform number in (0, 1) from a client's spread and a node (splitmix64).
double uniform(uint32_t spread, size_t node) {
  uint64_t x = (uint64_t{spread} << 32) ^ (node * 0x9E3779B97F4A7C15ull);
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return (static_cast<double>(x >> 11) + 0.5) / 9007199254740992.0;  // 2^53
}

// Orders [first, last) of `order` (one group of equal distance) for the client `spread`.
void order_group(std::vector<std::pair<double, size_t>>& order, size_t first, size_t last,
                 const std::vector<NodePlace>& nodes, uint32_t spread) {
  auto begin = order.begin() + static_cast<std::ptrdiff_t>(first);
  auto end = order.begin() + static_cast<std::ptrdiff_t>(last);
  bool equal = std::all_of(begin, end, [&](const auto& e) {
    return nodes[e.second].weight == nodes[begin->second].weight;
  });
  if (equal) {  // exactly even: each node first for 1/n of the spreads
    std::rotate(begin, begin + static_cast<std::ptrdiff_t>(spread % (last - first)), end);
    return;
  }
  // Weighted rendezvous: the smallest -ln(u)/weight comes first, with probability
  // weight / total for each node; a client keeps its order while the group stays the same.
  std::vector<std::pair<double, size_t>> keyed;
  for (auto it = begin; it != end; ++it)
    keyed.emplace_back(-std::log(uniform(spread, it->second)) / nodes[it->second].weight,
                       it->second);
  std::sort(keyed.begin(), keyed.end());
  for (size_t k = 0; k < keyed.size(); ++k) order[first + k].second = keyed[k].second;
}

}  // namespace

NearestChoice nearest_nodes(const std::vector<NodePlace>& nodes,
                            const std::optional<Coordinates>& client, size_t count,
                            uint32_t spread) {
  NearestChoice choice;
  std::vector<size_t> pool;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].usable && nodes[i].healthy) pool.push_back(i);
  if (pool.empty()) {  // fail open, as balancers do in panic mode
    choice.degraded = true;
    for (size_t i = 0; i < nodes.size(); ++i)
      if (nodes[i].usable) pool.push_back(i);
  }
  if (pool.empty()) return choice;
  // Nearest first; nodes at the same distance (or all of them, when the client or the nodes
  // have no place) form a group whose order depends on `spread` (see order_group).
  std::vector<std::pair<double, size_t>> order;  // (distance, node)
  order.reserve(pool.size());
  for (size_t i : pool) {
    const std::optional<Coordinates>& at = nodes[i].at;
    order.emplace_back(
        client && at ? distance_km(*client, *at) : std::numeric_limits<double>::infinity(), i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t first = 0; first < order.size();) {
    size_t last = first + 1;
    while (last < order.size() && order[last].first == order[first].first) ++last;
    order_group(order, first, last, nodes, spread);
    first = last;
  }
  for (size_t k = 0; k < order.size() && k < count; ++k) choice.nodes.push_back(order[k].second);
  return choice;
}

}  // namespace portico::plugins
