// uri-blocker (APISIX priority 2900, rewrite): refuses requests whose URI (path and query as
// received) matches one of `block_rules`, compiled into one Vectorscan database.
#include "plugins/waf/uri_blocker.hpp"
#include "http/responses.hpp"
#include "metrics/series_counters.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

class UriBlockerPlugin final : public Plugin {
 public:
  std::shared_ptr<const waf::UriBlocker> blocker;

  Step rewrite(Context& ctx) const override {
    if (!blocker->blocks(ctx.req->target)) return Step::Continue;
    if (auto* series = metrics::SeriesCounters::current())
      series->add("portico_waf_matches_total", "WAF rule matches, by rule and action.",
                  {{"rule", "uri-blocker"}, {"action", "block"}});
    const std::string& body = blocker->rejected_body();
    int code = blocker->rejected_code();
    if (body.empty())
      ctx.respond_error(code, http::status_reason(code));
    else
      ctx.respond(code, body);
    return Step::Respond;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto blocker = waf::UriBlocker::compile(conf, path, errors);
  if (!blocker) return nullptr;
  auto p = std::make_shared<UriBlockerPlugin>();
  p->blocker = std::move(blocker);
  return p;
}

}  // namespace

const PluginType& uri_blocker_plugin() {
  static const PluginType type{"uri-blocker", 2900, &create};
  return type;
}

}  // namespace portico::plugins
