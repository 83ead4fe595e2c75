// limit-conn (APISIX priority 1003): concurrent requests per key. Up to `conn` pass at once;
// up to `burst` more are delayed (a timer, the worker keeps serving); past that, rejected. The
// count is for the whole node and released when the response is done (log phase).
#include "http/responses.hpp"
#include "metrics/series_counters.hpp"
#include "plugins/context.hpp"
#include "plugins/limit/conn_counts.hpp"
#include "plugins/limit/limit_key.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

class LimitConn final : public Plugin {
 public:
  int64_t conn = 1;
  int64_t burst = 0;
  ConnDelay delay;
  LimitKey key;
  int rejected_code = 503;
  std::string rejected_msg;
  std::shared_ptr<ConnCounts> counts;
  std::string scope;

  bool waits_in_access() const override { return true; }

  Task<Step> access_async(Context& ctx) const override {
    std::string k;
    key.extract(ctx, k);
    int64_t now = counts->add(k, 1);
    if (now > conn + burst) {
      counts->add(k, -1);
      if (auto* series = metrics::SeriesCounters::current())
        series->add("portico_limit_rejected_total",
                    "Requests refused by a rate or concurrency limit.",
                    {{"plugin", "limit-conn"}, {"scope", scope}});
      ctx.respond_error(rejected_code,
                        rejected_msg.empty() ? http::status_reason(rejected_code) : rejected_msg);
      co_return Step::Respond;
    }
    ctx.note(this)[0] = 1;               // holds a slot until log()
    ctx.note_text(this) = std::move(k);  // released by that key, not one read again at log time
    if (double wait = delay.seconds(now, conn); wait > 0) {
      Timer timer(co_await asio::this_coro::executor);
      timer.expires_after(std::chrono::microseconds(static_cast<int64_t>(wait * 1e6)));
      co_await timer.async_wait(await_ec);
    }
    co_return Step::Continue;
  }

  void log(Context& ctx) const override {
    const auto* held = ctx.find_note(this);
    if (!held || (*held)[0] != 1) return;
    counts->add(*ctx.find_note_text(this), -1);
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope& scope, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<LimitConn>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  auto c = r.integer("conn", 1, 1000000000);
  if (!r.has("conn")) r.error("conn", "is required (an integer > 0)");
  p->conn = c.value_or(1);
  auto b = r.integer("burst", 0, 1000000000);
  if (!r.has("burst")) r.error("burst", "is required (an integer >= 0)");
  p->burst = b.value_or(0);
  p->delay = ConnDelay::read(r, true);
  p->key = LimitKey::read(r);
  p->rejected_code = static_cast<int>(r.integer_or("rejected_code", 503, 200, 599));
  p->rejected_msg = r.string_or("rejected_msg", "");
  r.boolean_or("allow_degradation", false);
  // APISIX 3.x writes its default policy into exported configs.
  std::string policy = r.string_or("policy", "local");
  if (policy != "local")
    r.error("policy", "only \"local\" is supported (one count per key per node)");
  r.finish();
  if (errors.size() != before) return nullptr;
  p->scope = scope.key();
  p->counts = conn_counts(p->scope + "#limit-conn");
  return p;
}

}  // namespace

const PluginType& limit_conn_plugin() {
  static const PluginType type{"limit-conn", 1003, &create};
  return type;
}

}  // namespace portico::plugins
