// Explains routing decisions: which route a request hits and why the near misses did not.
// Used by `portico route-explain` and the Admin API's /routes/match.
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

// A request described by its parts, as the CLI and the Admin API's /routes/match take it.
struct ExplainQuery {
  std::string method = "GET";
  std::string host;
  std::string uri = "/";  // a query string is ignored
  std::string remote_addr;
};
// Normalises the uri and explains. False (with `error`) when the uri cannot be normalised.
bool explain_query(const RouteIndex& index, const ExplainQuery& q, Explanation& out,
                   std::string& error);

}  // namespace portico::router
