// traffic-split (APISIX priority 966, access): sends a share of a route's requests, or those
// matching `vars`, to other upstreams: canary releases, blue-green switches, A/B tests. The
// first rule whose `match` passes picks among its weighted upstreams by smooth weighted round
// robin; no rule matching leaves the route's own upstream. The upstreams are compiled with the
// route (Plugin::upstream_choices), health checks and all.
#include <atomic>
#include <numeric>

#include "config/object_parser.hpp"
#include "plugins/context.hpp"
#include "plugins/context_vars.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

// More picks than this per cycle are scaled down (weights of 1 and 100000 need no 100001-long
// cycle to be kept to a part in ten thousand).
constexpr int64_t kMaxCycle = 10000;

struct Rule {
  bool always = false;                  // no `match`: every request
  std::vector<router::VarsExpr> match;  // any of them
  // One cycle of picks (a choice position, -1 for the route's own upstream), interleaved by
  // smooth weighted round robin so a 1:1 split alternates rather than running in blocks.
  std::vector<int> cycle;
  mutable std::atomic<uint64_t> next{0};  // shared by every worker: the split holds per route
};

// nginx's smooth weighted round robin, run for one whole cycle.
std::vector<int> make_cycle(const std::vector<std::pair<int, int64_t>>& weighted) {
  std::vector<std::pair<int, int64_t>> w;
  for (const auto& [choice, weight] : weighted)
    if (weight > 0) w.emplace_back(choice, weight);
  if (w.empty()) return {weighted.front().first};  // all zero: the first (APISIX)
  int64_t g = 0, total = 0;
  for (const auto& [choice, weight] : w) g = std::gcd(g, weight);
  for (auto& [choice, weight] : w) total += weight /= g;
  if (total > kMaxCycle) {
    int64_t scaled = 0;
    for (auto& [choice, weight] : w)
      scaled += weight = std::max<int64_t>(1, weight * kMaxCycle / total);
    total = scaled;
  }
  std::vector<int> cycle;
  std::vector<int64_t> current(w.size(), 0);
  for (int64_t n = 0; n < total; ++n) {
    size_t best = 0;
    for (size_t k = 0; k < w.size(); ++k) {
      current[k] += w[k].second;
      if (current[k] > current[best]) best = k;
    }
    current[best] -= total;
    cycle.push_back(w[best].first);
  }
  return cycle;
}

class TrafficSplit final : public Plugin {
 public:
  std::vector<std::unique_ptr<Rule>> rules;
  std::vector<UpstreamChoice> choices;

  Step access(Context& ctx) const override {
    for (const auto& rule : rules) {
      if (!rule->always && !matches(*rule, ctx)) continue;
      uint64_t n = rule->next.fetch_add(1, std::memory_order_relaxed);
      ctx.upstream_choice = rule->cycle[n % rule->cycle.size()];
      return Step::Continue;
    }
    return Step::Continue;
  }

  const std::vector<UpstreamChoice>* upstream_choices() const override { return &choices; }

 private:
  static bool matches(const Rule& rule, const Context& ctx) {
    ContextVars vars(ctx);
    for (const auto& m : rule.match)
      if (m.eval(vars)) return true;
    return false;
  }
};

// One `weighted_upstreams` entry: its choice position (-1: the route's own upstream), weight.
std::pair<int, int64_t> read_weighted(const json& value, const std::string& field,
                                      std::string relative, TrafficSplit& p, Errors& errors) {
  config::ObjectReader r(value, field, errors);
  int64_t weight = r.integer_or("weight", 1, 0, 100000);
  std::optional<std::string> id = r.id("upstream_id");
  const json* inline_spec = r.raw("upstream");
  r.finish();
  if (id && inline_spec) r.error("upstream", "use upstream or upstream_id, not both");
  if (!id && !inline_spec) return {-1, weight};
  UpstreamChoice choice;
  choice.field = std::move(relative);
  if (id) {
    choice.upstream_id = *id;
  } else {
    choice.spec = config::parse_upstream(*inline_spec, r.child_path("upstream"), errors);
    if (!choice.spec) return {-1, weight};
  }
  p.choices.push_back(std::move(choice));
  return {static_cast<int>(p.choices.size() - 1), weight};
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope& scope, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<TrafficSplit>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  // The upstreams are compiled with a route: a consumer's or a global rule's plugin has none.
  if (scope.kind == "consumers" || scope.kind == "consumer_groups" || scope.kind == "global_rules")
    errors.add(path, "only routes, services and plugin configs can split traffic");
  const json* rules = r.raw("rules");
  if (rules && !rules->is_array())
    r.error("rules", "must be a list of {match, weighted_upstreams}");
  for (size_t i = 0; rules && rules->is_array() && i < rules->size(); ++i) {
    std::string rule_path = r.child_path("rules") + "[" + std::to_string(i) + "]";
    config::ObjectReader rr((*rules)[i], rule_path, errors);
    auto rule = std::make_unique<Rule>();
    const json* match = rr.raw("match");
    rule->always = !match || (match->is_array() && match->empty());
    if (match && !match->is_array()) rr.error("match", "must be a list of {vars}");
    for (size_t m = 0; match && match->is_array() && m < match->size(); ++m) {
      std::string match_path = rr.child_path("match") + "[" + std::to_string(m) + "]";
      config::ObjectReader mr((*match)[m], match_path, errors);
      const json* vars = mr.raw("vars");
      if (!vars || !vars->is_array())
        mr.error("vars", "is required: a list of [variable, operator, value] conditions");
      else if (auto e = router::VarsExpr::compile(*vars, mr.child_path("vars"), errors))
        rule->match.push_back(std::move(*e));
      mr.finish();
    }
    const json* weighted = rr.raw("weighted_upstreams");
    std::vector<std::pair<int, int64_t>> picks;
    if (!weighted) {
      picks.emplace_back(-1, 1);  // APISIX's default: [{weight: 1}]
    } else if (!weighted->is_array() || weighted->empty() || weighted->size() > 20) {
      rr.error("weighted_upstreams", "must be a list of 1 to 20 {upstream_id | upstream, weight}");
    } else {
      for (size_t k = 0; k < weighted->size(); ++k) {
        std::string at = "[";  // (appended: GCC 12 warns falsely on "[" + ... chains here)
        at.append(std::to_string(k)).append("]");
        picks.push_back(read_weighted((*weighted)[k], rr.child_path("weighted_upstreams") + at,
                                      "rules[" + std::to_string(i) + "].weighted_upstreams" + at,
                                      *p, errors));
      }
    }
    rr.finish();
    if (!picks.empty()) rule->cycle = make_cycle(picks);
    p->rules.push_back(std::move(rule));
  }
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& traffic_split_plugin() {
  static const PluginType type{"traffic-split", 966, &create};
  return type;
}

}  // namespace portico::plugins
