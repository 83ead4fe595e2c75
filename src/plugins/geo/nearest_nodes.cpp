#include "plugins/geo/nearest_nodes.hpp"

#include <algorithm>
#include <limits>

namespace portico::plugins {

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
  if (client) {
    constexpr double kUnplaced = std::numeric_limits<double>::infinity();
    std::vector<std::pair<double, size_t>> by_distance;
    by_distance.reserve(pool.size());
    for (size_t i : pool)
      by_distance.emplace_back(nodes[i].at ? distance_km(*client, *nodes[i].at) : kUnplaced, i);
    std::stable_sort(by_distance.begin(), by_distance.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t k = 0; k < by_distance.size() && k < count; ++k)
      choice.nodes.push_back(by_distance[k].second);
  } else {
    size_t first = spread % pool.size();
    for (size_t k = 0; k < pool.size() && k < count; ++k)
      choice.nodes.push_back(pool[(first + k) % pool.size()]);
  }
  return choice;
}

}  // namespace portico::plugins
