// prometheus (APISIX priority 500, log): counts each response of the route by route, service,
// consumer and status in portico_http_status_total on /metrics. Requests per route and status
// are counted for every route anyway; this adds the consumer and service dimensions APISIX's
// plugin has. Labels come from config (ids, usernames), so their number is bounded.
#include <array>

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

// The counters a worker used last, by a cheap slot: building and hashing the series key for
// every request cost more than the rest of the plugin. Entries are checked by content, so a
// config change that reuses an address cannot count into the wrong series.
struct CachedSeries {
  const metrics::SeriesCounters* owner = nullptr;
  std::string route, service, consumer;
  int status = 0;
  std::atomic<uint64_t>* counter = nullptr;
};

class Prometheus final : public Plugin {
 public:
  void log(Context& ctx) const override {
    auto* series = metrics::SeriesCounters::current();
    if (!series) return;
    std::string_view route = ctx.route_id ? std::string_view(*ctx.route_id) : "";
    std::string_view service = ctx.service_id ? std::string_view(*ctx.service_id) : "";
    std::string_view consumer = ctx.consumer ? std::string_view(ctx.consumer->username) : "";
    thread_local std::array<CachedSeries, 64> cache;
    size_t slot =
        (reinterpret_cast<uintptr_t>(ctx.route_id) >> 4 ^
         reinterpret_cast<uintptr_t>(ctx.consumer) >> 4 ^ static_cast<uintptr_t>(ctx.status)) &
        63;
    CachedSeries& e = cache[slot];
    if (e.owner != series || e.status != ctx.status || e.route != route || e.service != service ||
        e.consumer != consumer || !e.counter) {
      char buf[4];
      e.counter = series->counter("portico_http_status_total",
                                  "Responses of routes with the prometheus plugin, by route, "
                                  "service, consumer and status.",
                                  {{"route", route},
                                   {"service", service},
                                   {"consumer", consumer},
                                   {"code", status_text(ctx.status, buf)}});
      e.owner = series;
      e.status = ctx.status;
      e.route.assign(route);
      e.service.assign(service);
      e.consumer.assign(consumer);
      if (!e.counter) return;
    }
    metrics::SeriesCounters::add_to(*e.counter, 1);
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
