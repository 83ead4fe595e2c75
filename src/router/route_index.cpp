#include "router/route_index.hpp"

#include "router/vars_expr.hpp"

#include <algorithm>

namespace portico::router {

enum class UriKind : uint8_t { Param = 0, Prefix = 1 };

struct RouteIndex::Entry {
  uint32_t rule;
  UriKind kind = UriKind::Prefix;
  uint32_t static_len = 0;   // literal characters before the first wildcard or :param
  uint32_t literal_len = 0;  // all literal characters (orders :param patterns)
  std::string rest;          // Prefix: residual the path must start with; Param: the pattern tail
  int priority = 0;
  size_t order = 0;
};

struct RouteIndex::SegmentNode {
  StringMap<std::unique_ptr<SegmentNode>> children;
  std::vector<Entry> entries;  // patterns whose literal prefix ends in this node's segments
};

struct RouteIndex::UriIndex {
  StringMap<std::vector<Entry>> exact;
  SegmentNode root;
};

namespace {

using Entry = RouteIndex::Entry;

// Characters of a uri pattern outside `:name` parameters and `*`.
uint32_t literal_chars(std::string_view uri) {
  uint32_t n = 0;
  for (size_t i = 0; i < uri.size(); ++i) {
    if (uri[i] == ':' && (i == 0 || uri[i - 1] == '/')) {
      while (i + 1 < uri.size() && uri[i + 1] != '/') ++i;  // skip the parameter's name
      continue;
    }
    if (uri[i] != '*') ++n;
  }
  return n;
}

bool entry_before(const Entry& a, const Entry& b) {
  if (a.static_len != b.static_len) return a.static_len > b.static_len;
  if (a.kind != b.kind) return a.kind < b.kind;
  if (a.literal_len != b.literal_len) return a.literal_len > b.literal_len;
  if (a.priority != b.priority) return a.priority > b.priority;
  return a.order < b.order;
}

bool exact_before(const Entry& a, const Entry& b) {
  if (a.priority != b.priority) return a.priority > b.priority;
  return a.order < b.order;
}

// ':' starting a segment marks a parameter.
size_t first_param(std::string_view uri) {
  for (size_t i = 1; i < uri.size(); ++i)
    if (uri[i] == ':' && uri[i - 1] == '/') return i;
  return std::string_view::npos;
}

// Matches a pattern tail (":id/profile", ":id/*") against a path tail ("42/profile").
bool match_param_tail(std::string_view pat, std::string_view path) {
  size_t i = 0, j = 0;
  while (i < pat.size()) {
    char c = pat[i];
    if (c == ':' && (i == 0 || pat[i - 1] == '/')) {
      while (i < pat.size() && pat[i] != '/') ++i;
      size_t start = j;
      while (j < path.size() && path[j] != '/') ++j;
      if (j == start) return false;  // a parameter needs a non-empty segment
      continue;
    }
    if (c == '*' && i + 1 == pat.size()) return true;
    if (j >= path.size() || path[j] != c) return false;
    ++i;
    ++j;
  }
  return j == path.size();
}

// Stable: routes of one etcd transaction share a create revision (their `order`), and then
// keep the order they came in (ObjectStore::in_creation_order: by id), on every node alike.
void sort_node(RouteIndex::SegmentNode& node) {
  std::stable_sort(node.entries.begin(), node.entries.end(), entry_before);
  for (auto& [_, child] : node.children) sort_node(*child);
}

}  // namespace

RouteIndex::RouteIndex() : any_host_(std::make_unique<UriIndex>()) {}
RouteIndex::~RouteIndex() = default;
RouteIndex::RouteIndex(RouteIndex&&) noexcept = default;
RouteIndex& RouteIndex::operator=(RouteIndex&&) noexcept = default;

RouteIndex::RouteIndex(std::vector<std::shared_ptr<const RouteRule>> rules)
    : rules_(std::move(rules)) {
  any_host_ = std::make_unique<UriIndex>();
  auto bucket_for = [&](const std::string& host) -> UriIndex& {
    if (host.empty()) return *any_host_;
    bool wildcard = host.size() > 2 && host[0] == '*' && host[1] == '.';
    auto& map = wildcard ? wildcard_hosts_ : exact_hosts_;
    std::string key = wildcard ? host.substr(1) : host;
    auto& slot = map[key];
    if (!slot) slot = std::make_unique<UriIndex>();
    return *slot;
  };

  for (uint32_t r = 0; r < rules_.size(); ++r) {
    const RouteRule& rule = *rules_[r];
    if (!rule.enabled) continue;
    std::vector<std::string> hosts = rule.hosts;
    if (hosts.empty()) hosts.push_back("");
    for (const auto& host : hosts) {
      UriIndex& idx = bucket_for(host);
      for (const auto& uri : rule.uris) {
        Entry e;
        e.rule = r;
        e.priority = rule.priority;
        e.order = rule.order;
        size_t param = first_param(uri);
        bool prefix = !uri.empty() && uri.back() == '*';
        if (param == std::string::npos && !prefix) {
          idx.exact[uri].push_back(std::move(e));
          continue;
        }
        std::string_view literal = param != std::string::npos
                                       ? std::string_view(uri).substr(0, param)
                                       : std::string_view(uri).substr(0, uri.size() - 1);
        e.static_len = static_cast<uint32_t>(literal.size());
        // Literal characters only: a `:name` parameter's name says nothing about specificity
        // (renaming it must not change which route wins, docs/routing.md).
        e.literal_len = literal_chars(uri);
        // Walk the complete segments of the literal prefix; what follows the last '/' stays.
        SegmentNode* node = &idx.root;
        std::string_view rest = literal.substr(1);
        for (size_t slash; (slash = rest.find('/')) != std::string_view::npos;) {
          auto& child = node->children[std::string(rest.substr(0, slash))];
          if (!child) child = std::make_unique<SegmentNode>();
          node = child.get();
          rest.remove_prefix(slash + 1);
        }
        if (param != std::string::npos) {
          e.kind = UriKind::Param;
          e.rest = uri.substr(param);
        } else {
          e.kind = UriKind::Prefix;
          e.rest = std::string(rest);
        }
        node->entries.push_back(std::move(e));
      }
    }
  }
  auto finish = [](UriIndex& idx) {
    for (auto& [_, list] : idx.exact) std::stable_sort(list.begin(), list.end(), exact_before);
    sort_node(idx.root);
  };
  finish(*any_host_);
  for (auto& [_, idx] : exact_hosts_) finish(*idx);
  for (auto& [_, idx] : wildcard_hosts_) finish(*idx);
}

namespace {

int match_in(const RouteIndex::UriIndex& idx,
             const std::vector<std::shared_ptr<const RouteRule>>& rules, const MatchInput& in) {
  if (auto it = idx.exact.find(in.path); it != idx.exact.end()) {
    for (const Entry& e : it->second)
      if (!RouteIndex::other_condition_fails(*rules[e.rule], in)) return static_cast<int>(e.rule);
  }
  if (in.path.empty() || in.path.front() != '/') return RouteIndex::kNoMatch;
  // Collect the nodes along the path, then try them deepest (longest literal prefix) first.
  constexpr size_t kMaxDepth = 64;
  const RouteIndex::SegmentNode* nodes[kMaxDepth];
  std::string_view rests[kMaxDepth];
  size_t depth = 0;
  const RouteIndex::SegmentNode* node = &idx.root;
  std::string_view rest = in.path.substr(1);
  while (true) {
    nodes[depth] = node;
    rests[depth] = rest;
    ++depth;
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos || depth == kMaxDepth) break;
    auto it = node->children.find(rest.substr(0, slash));
    if (it == node->children.end()) break;
    node = it->second.get();
    rest.remove_prefix(slash + 1);
  }
  while (depth-- > 0) {
    for (const Entry& e : nodes[depth]->entries) {
      bool uri_ok = e.kind == UriKind::Prefix ? rests[depth].starts_with(e.rest)
                                              : match_param_tail(e.rest, rests[depth]);
      if (uri_ok && !RouteIndex::other_condition_fails(*rules[e.rule], in))
        return static_cast<int>(e.rule);
    }
  }
  return RouteIndex::kNoMatch;
}

}  // namespace

int RouteIndex::match(const MatchInput& in) const {
  char buf[256];
  std::string_view host = normalize_host(in.host, buf, sizeof(buf));
  if (!exact_hosts_.empty()) {
    if (auto it = exact_hosts_.find(host); it != exact_hosts_.end()) {
      int r = match_in(*it->second, rules_, in);
      if (r != kNoMatch) return r;
    }
  }
  if (!wildcard_hosts_.empty()) {
    // ".b.example.com", then ".example.com", then ".com": longest suffix first
    for (size_t dot = host.find('.'); dot != std::string_view::npos;
         dot = host.find('.', dot + 1)) {
      if (auto it = wildcard_hosts_.find(host.substr(dot)); it != wildcard_hosts_.end()) {
        int r = match_in(*it->second, rules_, in);
        if (r != kNoMatch) return r;
      }
    }
  }
  return match_in(*any_host_, rules_, in);
}

bool RouteIndex::host_matches(const RouteRule& rule, std::string_view host) {
  if (rule.hosts.empty()) return true;
  for (const auto& h : rule.hosts) {
    if (h.size() > 2 && h[0] == '*' && h[1] == '.') {
      std::string_view suffix = std::string_view(h).substr(1);
      if (host.size() > suffix.size() && host.ends_with(suffix)) return true;
    } else if (h == host) {
      return true;
    }
  }
  return false;
}

bool RouteIndex::uri_matches(const RouteRule& rule, std::string_view path) {
  return matching_uri(rule.uris, path) >= 0;
}

int RouteIndex::matching_uri(const std::vector<std::string>& uris, std::string_view path) {
  for (size_t i = 0; i < uris.size(); ++i) {
    const std::string& uri = uris[i];
    size_t param = first_param(uri);
    if (param != std::string::npos) {
      if (path.starts_with(std::string_view(uri).substr(0, param)) &&
          match_param_tail(std::string_view(uri).substr(param), path.substr(param)))
        return static_cast<int>(i);
    } else if (!uri.empty() && uri.back() == '*') {
      if (path.starts_with(std::string_view(uri).substr(0, uri.size() - 1)))
        return static_cast<int>(i);
    } else if (uri == path) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

const char* RouteIndex::other_condition_fails(const RouteRule& rule, const MatchInput& in) {
  if (rule.methods && !(rule.methods & method_bit(in.method))) return "method";
  if (!rule.remote_addrs.empty()) {
    if (!in.has_remote) return "remote_addr";
    bool ok = false;
    for (const auto& c : rule.remote_addrs)
      if (c.contains(in.remote)) {
        ok = true;
        break;
      }
    if (!ok) return "remote_addr";
  }
  if (rule.vars && (!in.vars || !rule.vars->eval(*in.vars))) return "vars";
  return nullptr;
}

}  // namespace portico::router
