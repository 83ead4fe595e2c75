// limit-req (APISIX priority 1001): requests per second per key with a burst, the leaky bucket
// of resty.limit.req. Over the rate but within the burst, a request is delayed by a timer (the
// worker keeps serving others) unless `nodelay`; past the burst it is rejected. The bucket is
// the process's (policy local) or one in Redis shared by every node (policy redis).
#include "http/responses.hpp"
#include "metrics/series_counters.hpp"
#include "plugins/context.hpp"
#include "plugins/limit/leaky_bucket.hpp"
#include "plugins/limit/limit_count_config.hpp"
#include "plugins/limit/limit_key.hpp"
#include "plugins/limit/redis_bucket.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

class LimitReq final : public Plugin {
 public:
  double rate = 0;   // requests per second
  double burst = 0;  // requests over the rate that are delayed rather than rejected
  LimitKey key;
  int rejected_code = 503;
  std::string rejected_msg;
  bool nodelay = false;
  std::shared_ptr<LeakyBucketTable> buckets;
  std::string scope;  // "routes/r1": the metric label
  limit::CountPolicy policy = limit::CountPolicy::local;
  limit::RedisSettings redis_settings;
  limit::RedisClusterSettings cluster_settings;
  bool allow_degradation = false;

  bool waits_in_access() const override { return !nodelay || policy != limit::CountPolicy::local; }

  Step access(Context& ctx) const override {
    int64_t delay = 0;
    return decide(ctx, delay);
  }

  Task<Step> access_async(Context& ctx) const override {
    int64_t delay = 0;
    if (policy != limit::CountPolicy::local) {
      auto ex = co_await asio::this_coro::executor;
      limit::RedisScriptRunner& runner =
          limit::redis_runner(ex, policy, redis_settings, cluster_settings);
      thread_local std::string k;
      key.extract(ctx, k);
      // Like limit-count's keys: no config version in it, so every node and revision share it.
      std::string full = "portico:limit-req:" + scope + ":" + k;
      limit::RedisBucketTake t = co_await limit::take_redis_bucket(
          runner, std::move(full), static_cast<int64_t>(rate * 1000),
          static_cast<int64_t>(burst * 1000));
      if (!t.ok()) {
        thread_local int64_t last_warning_ms = 0;
        limit::warn_redis_failure("limit-req", t.error, last_warning_ms);
        if (allow_degradation) co_return Step::Continue;
        ctx.respond_error(500, "failed to limit req");
        co_return Step::Respond;
      }
      if (apply(ctx, t.decision, delay) == Step::Respond) co_return Step::Respond;
      if (nodelay) co_return Step::Continue;
    } else if (decide(ctx, delay) == Step::Respond) {
      co_return Step::Respond;
    }
    if (delay >= 1) {  // APISIX sleeps only from 1 ms on
      Timer timer(co_await asio::this_coro::executor);
      timer.expires_after(std::chrono::milliseconds(delay));
      co_await timer.async_wait(await_ec);
    }
    co_return Step::Continue;
  }

 private:
  Step decide(Context& ctx, int64_t& delay_ms) const {
    thread_local std::string k;
    key.extract(ctx, k);
    BucketDecision d = buckets->take(k, static_cast<int64_t>(rate * 1000),
                                     static_cast<int64_t>(burst * 1000), ctx.now_ms);
    return apply(ctx, d, delay_ms);
  }

  Step apply(Context& ctx, const BucketDecision& d, int64_t& delay_ms) const {
    if (d.rejected) {
      if (auto* series = metrics::SeriesCounters::current())
        series->add("portico_limit_rejected_total",
                    "Requests refused by a rate or concurrency limit.",
                    {{"plugin", "limit-req"}, {"scope", scope}});
      if (rejected_msg.empty())
        ctx.respond_error(rejected_code, http::status_reason(rejected_code));
      else
        ctx.respond_error(rejected_code, rejected_msg);
      return Step::Respond;
    }
    delay_ms = d.delay_ms;
    return Step::Continue;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope& scope, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<LimitReq>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  // The bucket counts thousandths of a request in 64-bit integers: rates from one request per
  // 1000 s (APISIX takes any rate > 0; below 0.001 it would round to no rate at all).
  auto rate = r.raw("rate");
  if (!rate || !rate->is_number() || rate->get<double>() < 0.001 || rate->get<double>() > 1e9)
    r.error("rate", "is required and must be a number from 0.001 to 1000000000");
  else
    p->rate = rate->get<double>();
  auto burst = r.raw("burst");
  if (!burst || !burst->is_number() || burst->get<double>() < 0 || burst->get<double>() > 1e9)
    r.error("burst", "is required and must be a number from 0 to 1000000000");
  else
    p->burst = burst->get<double>();
  p->key = LimitKey::read(r);
  p->rejected_code = static_cast<int>(r.integer_or("rejected_code", 503, 200, 599));
  p->rejected_msg = r.string_or("rejected_msg", "");
  p->nodelay = r.boolean_or("nodelay", false);
  p->allow_degradation = r.boolean_or("allow_degradation", false);  // Redis unreachable: pass
  p->policy = limit::read_redis_policy(r, p->redis_settings, p->cluster_settings);
  r.finish();
  if (errors.size() != before) return nullptr;
  p->scope = scope.key();
  p->buckets = bucket_table(p->scope + "#limit-req");
  return p;
}

}  // namespace

const PluginType& limit_req_plugin() {
  static const PluginType type{"limit-req", 1001, &create};
  return type;
}

}  // namespace portico::plugins
