// Explains routing decisions: which route a request hits and why the near misses did not.
// Used by `portico route-explain` (and the Admin API's /routes/match later).
#pragma once

#include <string>
#include <vector>

#include "router/route_index.hpp"

namespace portico::router {

struct Verdict {
  size_t rule;
  std::vector<std::string> failures;  // empty: the rule matches the request
};

struct Explanation {
  int winner = RouteIndex::kNoMatch;
  std::vector<Verdict> near_misses;  // rules failing at most one condition, or matching but losing
};

// `in.path` must be normalised (see path_normalizer.hpp).
Explanation explain(const RouteIndex& index, const MatchInput& in);
std::string format_explanation(const RouteIndex& index, const Explanation& e);

}  // namespace portico::router
