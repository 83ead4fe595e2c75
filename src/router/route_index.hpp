// The route table of one snapshot: finds the route for a request in a few hash lookups,
// however many routes there are. Precedence (docs/routing.md): host specificity (exact, then
// longest wildcard, then any), then URI specificity (exact, then longest literal prefix, a
// :param pattern before a prefix of the same length), then priority (higher first), then the
// order in the source. A candidate whose methods or remote_addrs do not fit is skipped.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "router/route_rule.hpp"

namespace portico::router {

struct TransparentHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, TransparentHash, std::equal_to<>>;

class RouteIndex {
 public:
  static constexpr int kNoMatch = -1;

  RouteIndex();
  // Rules are shared, not copied: a rebuild after one route changed reuses the other rules.
  explicit RouteIndex(std::vector<std::shared_ptr<const RouteRule>> rules);
  RouteIndex(RouteIndex&&) noexcept;
  RouteIndex& operator=(RouteIndex&&) noexcept;
  ~RouteIndex();

  // Position of the matching rule in rules(), or kNoMatch. `in.path` must be normalised.
  int match(const MatchInput& in) const;
  const std::vector<std::shared_ptr<const RouteRule>>& rules() const { return rules_; }

  // Checks of one rule on its own, in the words route-explain uses.
  static bool host_matches(const RouteRule& rule, std::string_view normalized_host);
  static bool uri_matches(const RouteRule& rule, std::string_view path);
  // The position in `uris` of the first pattern `path` matches, or -1 (APISIX's matched
  // `_path`: tracing names a span after it).
  static int matching_uri(const std::vector<std::string>& uris, std::string_view path);
  static const char* other_condition_fails(const RouteRule& rule, const MatchInput& in);

  struct Entry;
  struct SegmentNode;
  struct UriIndex;

 private:
  std::vector<std::shared_ptr<const RouteRule>> rules_;
  StringMap<std::unique_ptr<UriIndex>> exact_hosts_;
  StringMap<std::unique_ptr<UriIndex>> wildcard_hosts_;  // "*.example.com" stored as ".example.com"
  std::unique_ptr<UriIndex> any_host_;
};

}  // namespace portico::router
