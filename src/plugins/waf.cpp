// waf (Portico, priority 2800, rewrite and body): Vectorscan rule sets (the built-in
// php-injection set and user rules) over the URI, decoded query args, chosen headers, cookies
// and the body, in one pass each (src/plugins/waf/, docs/waf.md); a body longer than max_body
// is refused unless `oversize_body: pass`.
// A blocking match answers 403 with the request id and logs the rule; log-only rules are
// counted and logged.
#include "core/log.hpp"
#include "metrics/series_counters.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"
#include "plugins/waf/policy.hpp"
#include "plugins/waf/scanner.hpp"

namespace portico::plugins {
namespace {

class Waf final : public Plugin {
 public:
  std::shared_ptr<const waf::Policy> policy;

  Step rewrite(Context& ctx) const override {
    waf::Scanner s(*policy);
    const http::RequestHead& r = *ctx.req;
    s.begin_head();
    s.scan_uri(r.path);
    s.scan_query(r.query);
    for (const auto& h : r.headers) s.scan_header(h.name, h.value);
    s.end_head();
    if (verdict(ctx, s) == Step::Respond) return Step::Respond;
    // Chunked bodies are refused for lack of a length before any plugin reads them (unless the
    // WAF only logs: needs_body_length()).
    if (policy->rejects_oversize_body() &&
        r.content_length > static_cast<int64_t>(policy->max_body()))
      return oversize(ctx);
    return Step::Continue;
  }

  size_t body_limit() const override { return policy->scans_body() ? policy->max_body() : 0; }
  // In log mode a chunked body passes unscanned rather than being refused.
  bool needs_body_length() const override { return body_limit() > 0 && !policy->log_only(); }

  Step body(Context& ctx, std::string_view body) const override {
    waf::Scanner s(*policy);
    s.scan_body(ctx.header("content-type"), body);
    return verdict(ctx, s);
  }

 private:
  // A body longer than the scan would pass partly unseen: 413 (in log mode, a log line).
  Step oversize(Context& ctx) const {
    const bool refuse = !policy->log_only();
    count("oversize_body", refuse);
    const std::string limit = std::to_string(policy->max_body());
    log::warn("waf: " + std::string(refuse ? "refused" : "passed") + " request " +
              std::string(ctx.ensure_request_id()) + " from " + ctx.client_ip + ": body of " +
              std::to_string(ctx.req->content_length) + " bytes, over max_body " + limit);
    if (!refuse) return Step::Continue;
    ctx.respond_error(413, "request body larger than the WAF scans (max_body " + limit + ")");
    return Step::Respond;
  }

  static void count(std::string_view rule, bool block) {
    if (auto* series = metrics::SeriesCounters::current())
      series->add("portico_waf_matches_total", "WAF rule matches, by rule and action.",
                  {{"rule", rule}, {"action", block ? "block" : "log"}});
  }

  Step verdict(Context& ctx, const waf::Scanner& s) const {
    for (const waf::Hit& hit : s.logged()) {
      const waf::Rule& rule = policy->rules()[hit.rule];
      count(rule.id, false);
      log::info("waf: request " + std::string(ctx.ensure_request_id()) + " from " + ctx.client_ip +
                " matched log-only rule " + rule.id + " in " +
                std::string(waf::target_name(hit.target)));
    }
    if (s.failed()) {
      ctx.respond_error(500, "the request could not be scanned");
      return Step::Respond;
    }
    if (!s.blocked()) return Step::Continue;
    const waf::Rule& rule = *s.blocking_rule();
    std::string_view id = ctx.ensure_request_id();
    count(rule.id, true);
    log::warn("waf: blocked request " + std::string(id) + " from " + ctx.client_ip + ": rule " +
              rule.id + " in " + std::string(waf::target_name(s.blocking_target())));
    ctx.respond(403, json{{"error_msg", "blocked by the WAF"}, {"request_id", id}}.dump() + "\n");
    return Step::Respond;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto policy = waf::Policy::compile(conf, path, errors);
  if (!policy) return nullptr;
  auto p = std::make_shared<Waf>();
  p->policy = std::move(policy);
  return p;
}

}  // namespace

const PluginType& waf_plugin() {
  static const PluginType type{"waf", 2800, &create};
  return type;
}

}  // namespace portico::plugins
