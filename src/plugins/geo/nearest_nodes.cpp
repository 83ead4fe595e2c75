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
  // Equal candidates (the same distance, or no place for the client or the nodes) are taken in
  // an order rotated by `spread`, so two nodes in one city share that city's clients instead of
  // the first in the list taking them all.
  const size_t first = spread % pool.size();
  std::vector<std::pair<double, size_t>> order;  // (distance, rank among equals)
  order.reserve(pool.size());
  for (size_t k = 0; k < pool.size(); ++k) {
    const std::optional<Coordinates>& at = nodes[pool[k]].at;
    double distance =
        client && at ? distance_km(*client, *at) : std::numeric_limits<double>::infinity();
    order.emplace_back(distance, (k + pool.size() - first) % pool.size());
  }
  std::vector<size_t> ranked(pool.size());
  for (size_t k = 0; k < pool.size(); ++k) ranked[k] = k;
  std::sort(ranked.begin(), ranked.end(), [&](size_t a, size_t b) { return order[a] < order[b]; });
  for (size_t k = 0; k < ranked.size() && k < count; ++k) choice.nodes.push_back(pool[ranked[k]]);
  return choice;
}

}  // namespace portico::plugins
