#include "router/route_explain.hpp"

#include "router/path_normalizer.hpp"

namespace portico::router {
namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + "]";
}

std::string describe(const RouteRule& r) {
  std::string s = "route " + r.id;
  return s;
}

}  // namespace

Explanation explain(const RouteIndex& index, const MatchInput& in) {
  Explanation e;
  e.winner = index.match(in);
  char buf[256];
  std::string_view host = normalize_host(in.host, buf, sizeof(buf));
  const auto& rules = index.rules();
  for (size_t i = 0; i < rules.size(); ++i) {
    if (static_cast<int>(i) == e.winner) continue;
    const RouteRule& r = *rules[i];
    Verdict v{i, {}};
    if (!r.enabled) v.failures.push_back("disabled (status 0)");
    if (!RouteIndex::host_matches(r, host))
      v.failures.push_back("host \"" + std::string(host) + "\" not in " + join(r.hosts));
    if (!RouteIndex::uri_matches(r, in.path))
      v.failures.push_back("uri \"" + std::string(in.path) + "\" does not match " + join(r.uris));
    if (const char* what = RouteIndex::other_condition_fails(r, in)) {
      if (std::string_view(what) == "method")
        v.failures.push_back("method " + std::string(in.method) + " not in " +
                             join(r.method_names));
      else if (std::string_view(what) == "vars")
        v.failures.push_back(in.vars ? "vars do not match" : "vars (need a real request)");
      else
        v.failures.push_back("client address not in " + join(r.remote_addr_texts));
    }
    if (v.failures.size() <= 1) e.near_misses.push_back(std::move(v));
  }
  return e;
}

std::string format_explanation(const RouteIndex& index, const Explanation& e) {
  const auto& rules = index.rules();
  std::string out;
  if (e.winner == RouteIndex::kNoMatch) {
    out += "no route matches (the gateway answers 404)\n";
  } else {
    const RouteRule& w = *rules[e.winner];
    out += "match: " + describe(w) + " (uris " + join(w.uris) + ", hosts " +
           (w.hosts.empty() ? std::string("any") : join(w.hosts)) + ", priority " +
           std::to_string(w.priority) + ")\n";
  }
  if (!e.near_misses.empty()) out += "near misses:\n";
  for (const auto& v : e.near_misses) {
    const RouteRule& r = *rules[v.rule];
    out += "  " + describe(r) + ": ";
    if (v.failures.empty() && e.winner < 0)  // (a rule the index cannot reach: see route_index)
      out += "matches on its own, but the index does not reach it";
    else if (v.failures.empty())
      out += "matches too, but " + describe(*rules[e.winner]) +
             " wins (precedence: host, then uri specificity, then priority " +
             std::to_string(rules[e.winner]->priority) + " vs " + std::to_string(r.priority) +
             ", then order)";
    else
      out += v.failures.front();
    out += "\n";
  }
  return out;
}

bool explain_query(const RouteIndex& index, const ExplainQuery& q, Explanation& out,
                   std::string& error) {
  std::string scratch;
  std::string_view path;
  std::string target = q.uri.substr(0, q.uri.find('?'));
  if (!normalize_path(target, scratch, path)) {
    error = "invalid uri \"" + q.uri + "\"";
    return false;
  }
  MatchInput in;
  in.method = q.method;
  in.host = q.host;
  in.path = path;
  if (!q.remote_addr.empty()) {
    in.remote = address_bytes(q.remote_addr);
    in.has_remote = true;
  }
  out = explain(index, in);
  return true;
}

}  // namespace portico::router
