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
  // Nearest first; nodes at the same distance (or all of them, when the client or the nodes
  // have no place) form a group whose order is rotated by `spread`, so each group's nodes share
  // its clients evenly instead of the first in the list taking them all.
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
    std::rotate(order.begin() + static_cast<std::ptrdiff_t>(first),
                order.begin() + static_cast<std::ptrdiff_t>(first + spread % (last - first)),
                order.begin() + static_cast<std::ptrdiff_t>(last));
    first = last;
  }
  for (size_t k = 0; k < order.size() && k < count; ++k) choice.nodes.push_back(order[k].second);
  return choice;
}

}  // namespace portico::plugins
