// limit-conn (APISIX priority 1003): concurrent requests per key. Up to `conn` pass at once;
// up to `burst` more are delayed (a timer, the worker keeps serving); past that, rejected. The
// count is for the whole node (policy local), or for every node on one Redis or Redis Cluster
// (redis_conn_slots.hpp), and released when the response is done (log phase); a WebSocket
// session holds its slot until it ends, renewed on Redis while it lasts.
#include "core/current_worker.hpp"
#include "core/hex.hpp"
#include "core/log.hpp"
#include "core/thread_rng.hpp"
#include "http/responses.hpp"
#include "metrics/series_counters.hpp"
#include "plugins/context.hpp"
#include "plugins/limit/conn_counts.hpp"
#include "plugins/limit/limit_count_config.hpp"
#include "plugins/limit/limit_key.hpp"
#include "plugins/limit/redis_conn_slots.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

// What a request holds, in its note's first value.
enum Held : int64_t { kLocalSlot = 1, kRedisSlot = 2 };

// A name for this request's slot, unique across nodes.
std::string slot_member() {
  uint64_t words[2] = {thread_rng()(), thread_rng()()};
  return hex::encode(reinterpret_cast<const unsigned char*>(words), sizeof words);
}

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
  // Its policy, and where and how long its slots live when that is redis or redis-cluster.
  std::shared_ptr<const limit::RedisSlotPlace> place;
  bool allow_degradation = false;

  bool waits_in_access() const override { return true; }

  Task<Step> access_async(Context& ctx) const override {
    std::string k;
    key.extract(ctx, k);
    int64_t now = 0;
    if (place->policy == limit::CountPolicy::local) {
      now = counts->add(k, 1);
      if (now > conn + burst) {
        counts->add(k, -1);
        co_return reject(ctx);
      }
      ctx.note(this)[0] = kLocalSlot;      // holds a slot until log()
      ctx.note_text(this) = std::move(k);  // released by that key, not one read again at log time
    } else {
      auto ex = co_await asio::this_coro::executor;
      limit::RedisScriptRunner& runner =
          limit::redis_runner(ex, place->policy, place->redis, place->cluster);
      // Like limit-count's keys: no config version in it, so every node and revision share it.
      std::string full = "portico:limit-conn:" + scope + ":" + k;
      std::string member = slot_member();
      limit::RedisSlotTake t =
          co_await limit::take_redis_slot(runner, full, member, conn + burst, place->ttl_ms);
      if (!t.error.empty()) {
        // A take that left for Redis may have run before its reply was lost: give the member
        // back all the same (removing one never added does nothing), or a timeout would hold it
        // for key_ttl. One that never left (back-off) holds nothing.
        if (t.sent) {
          ctx.note(this)[0] = kRedisSlot;
          ctx.note_text(this) = full + '\n' + member;
        }
        thread_local int64_t last_warning_ms = 0;
        limit::warn_redis_failure("limit-conn", t.error, last_warning_ms);
        if (allow_degradation) co_return Step::Continue;
        ctx.respond_error(500, "failed to limit conn");
        co_return Step::Respond;
      }
      if (!t.taken) co_return reject(ctx);
      now = t.position;
      ctx.note(this)[0] = kRedisSlot;
      ctx.note_text(this) = full + '\n' + member;
      limit::keep_redis_slot(ex, place, std::move(full), std::move(member));
    }
    if (double wait = delay.seconds(now, conn); wait > 0) {
      Timer timer(co_await asio::this_coro::executor);
      timer.expires_after(std::chrono::microseconds(static_cast<int64_t>(wait * 1e6)));
      co_await timer.async_wait(await_ec);
    }
    co_return Step::Continue;
  }

  void log(Context& ctx) const override {
    const auto* held = ctx.find_note(this);
    if (!held) return;
    const std::string& text = *ctx.find_note_text(this);
    if ((*held)[0] == kLocalSlot) {
      counts->add(text, -1);
    } else if ((*held)[0] == kRedisSlot) {
      const Executor* ex = current_worker_executor();
      size_t cut = text.rfind('\n');
      if (cut != std::string::npos) limit::forget_redis_slot(text.substr(cut + 1));
      if (ex && cut != std::string::npos)
        limit::release_redis_slot_later(*ex, place, text.substr(0, cut), text.substr(cut + 1));
      else
        log::warn("limit-conn: a Redis slot could not be given back (held until key_ttl)");
    }
  }

 private:
  Step reject(Context& ctx) const {
    if (auto* series = metrics::SeriesCounters::current())
      series->add("portico_limit_rejected_total",
                  "Requests refused by a rate or concurrency limit.",
                  {{"plugin", "limit-conn"}, {"scope", scope}});
    ctx.respond_error(rejected_code,
                      rejected_msg.empty() ? http::status_reason(rejected_code) : rejected_msg);
    return Step::Respond;
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
  p->allow_degradation = r.boolean_or("allow_degradation", false);
  auto place = std::make_shared<limit::RedisSlotPlace>();
  place->policy = limit::read_redis_policy(r, place->redis, place->cluster);
  // APISIX's key_ttl (s): how long a slot whose release never came (a node gone) stays held; a
  // request that lasts longer renews its slot.
  place->ttl_ms = r.integer_or("key_ttl", 3600, 1, 30LL * 24 * 3600) * 1000;
  p->place = std::move(place);
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
