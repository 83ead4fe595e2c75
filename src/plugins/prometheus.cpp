// prometheus (APISIX priority 500, log): counts each response of the route by route, service,
// consumer and status in portico_http_status_total on /metrics. Requests per route and status
// are counted for every route anyway; this adds the consumer and service dimensions APISIX's
// plugin has. Labels come from config (ids, usernames), so their number is bounded.
#include "metrics/series_counters.hpp"
#include "plugins/consumers.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

std::string_view status_text(int status, char (&buf)[4]) {
  if (status < 100 || status > 999) return "0";
  buf[0] = static_cast<char>('0' + status / 100);
  buf[1] = static_cast<char>('0' + status / 10 % 10);
  buf[2] = static_cast<char>('0' + status % 10);
  return {buf, 3};
}

class Prometheus final : public Plugin {
 public:
  void log(Context& ctx) const override {
    auto* series = metrics::SeriesCounters::current();
    if (!series) return;
    char buf[4];
    series->add("portico_http_status_total",
                "Responses of routes with the prometheus plugin, by route, service, consumer "
                "and status.",
                {{"route", ctx.route_id ? std::string_view(*ctx.route_id) : ""},
                 {"service", ctx.service_id ? std::string_view(*ctx.service_id) : ""},
                 {"consumer", ctx.consumer ? std::string_view(ctx.consumer->username) : ""},
                 {"code", status_text(ctx.status, buf)}});
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  r.boolean_or("prefer_name", false);  // labels are ids (names are not unique)
  r.finish();
  if (errors.size() != before) return nullptr;
  return std::make_shared<Prometheus>();
}

}  // namespace

const PluginType& prometheus_plugin() {
  static const PluginType type{"prometheus", 500, &create};
  return type;
}

}  // namespace portico::plugins
