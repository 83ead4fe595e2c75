// The choice behind httpdns answers: the access nodes closest to a client, healthy ones only
// while any is healthy. Kept apart from the plugin so the rule can be tested on its own.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "plugins/geo/geoip_db.hpp"

namespace portico::plugins {

struct NodePlace {
  bool healthy = true;
  bool usable = true;  // weight > 0 (weight 0 takes a node out of answers, as out of balancing)
  std::optional<Coordinates> at;  // nodes without a place come after every placed one
  int weight = 1;                 // the node's share of its group's clients (upstream weight)
};

struct NearestChoice {
  std::vector<size_t> nodes;  // indexes into the candidates, nearest first
  bool degraded = false;      // no usable node was healthy: the nearest were chosen anyway
};

// Up to `count` nodes for a client at `client`, nearest first. Nodes at the same distance (and
// all nodes, when the client or the nodes have no place) come in an order that depends on
// `spread` (a hash of the client), so clients spread over them by weight instead of all taking
// the first: evenly by rotation when the weights are equal, else by weighted rendezvous
// hashing (a node of weight 3 comes first for three times as many clients as one of weight 1).
NearestChoice nearest_nodes(const std::vector<NodePlace>& nodes,
                            const std::optional<Coordinates>& client, size_t count,
                            uint32_t spread);

}  // namespace portico::plugins
