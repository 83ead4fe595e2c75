// limit-count (APISIX priority 1002): at most `count` requests per `time_window` per key, in a
// fixed or sliding window, counted for the node (policy local) or for every node sharing one
// Redis (policy redis, one atomic script per request). Keys never embed a config version, so
// all nodes and config changes share one count (docs/rate-limits.md).
#include "core/log.hpp"
#include "http/responses.hpp"
#include "metrics/series_counters.hpp"
#include "plugins/context.hpp"
#include "plugins/header_config.hpp"
#include "plugins/limit/limit_count_config.hpp"
#include "plugins/limit/limit_key.hpp"
#include "plugins/limit/local_counters.hpp"
#include "plugins/limit/redis_counters.hpp"
#include "plugins/plugin.hpp"
#include "plugins/plugin_metadata.hpp"

namespace portico::plugins {
namespace {

// plugin_metadata limit-count (APISIX 3.x): the names of the quota headers, for every instance.
struct QuotaHeaderNames final : MetadataSettings {
  std::string limit = "X-RateLimit-Limit";
  std::string remaining = "X-RateLimit-Remaining";
  std::string reset = "X-RateLimit-Reset";
};

std::shared_ptr<const MetadataSettings> read_header_names(config::ObjectReader& r) {
  auto out = std::make_shared<QuotaHeaderNames>();
  for (auto [field, name] :
       {std::pair{"limit_header", &out->limit}, std::pair{"remaining_header", &out->remaining},
        std::pair{"reset_header", &out->reset}}) {
    *name = r.string_or(field, *name);
    if (!valid_header_name(*name)) r.error(field, "must be a header name");
  }
  return out;
}

const QuotaHeaderNames& header_names(const Context& ctx) {
  static const QuotaHeaderNames defaults;
  const PluginMetadata* m = find_metadata(ctx.metadata, "limit-count");
  return m && m->settings ? static_cast<const QuotaHeaderNames&>(*m->settings) : defaults;
}

class LimitCount final : public Plugin {
 public:
  limit::LimitCountConfig conf;
  LimitKey key;
  std::string scope;     // the group, or the object that declared the plugin
  std::string settings;  // with a group: what every route of the group must share

  // One counter for a group means one set of settings (APISIX: "group conf mismatched"). Two
  // limits on one counter would each count the other's requests against their own quota.
  void check_references(CompileChecks& checks, const std::string& path,
                        Errors& errors) const override {
    if (conf.group.empty()) return;
    auto [it, first] = checks.count_groups.try_emplace(conf.group, settings, path);
    if (!first && it->second.first != settings)
      errors.add(path + ".group", "group \"" + conf.group + "\" is configured differently at " +
                                      it->second.second +
                                      " (a group shares one counter: every "
                                      "route of it needs the same limit-count settings)");
  }

  bool waits_in_access() const override { return conf.policy != limit::CountPolicy::local; }

  Step access(Context& ctx) const override {
    limit::TakeResult r = limit::LocalCounters::process_wide().take(
        counter_key(ctx), conf.count, conf.window_ms(), conf.window_type, ctx.now_ms);
    return decide(ctx, r);
  }

  Task<Step> access_async(Context& ctx) const override {
    auto ex = co_await asio::this_coro::executor;
    limit::RedisScriptRunner& runner =
        limit::redis_runner(ex, conf.policy, conf.redis, conf.cluster);
    std::string k = counter_key(ctx);
    limit::RedisTake t = co_await limit::take_redis(runner, std::move(k), conf.count,
                                                    conf.window_ms(), conf.window_type);
    if (!t.ok()) {
      thread_local int64_t last_warning_ms = 0;
      limit::warn_redis_failure("limit-count", t.error, last_warning_ms);
      if (conf.allow_degradation) co_return Step::Continue;
      ctx.respond_error(500, "failed to limit count");
      co_return Step::Respond;
    }
    co_return decide(ctx, t.take);
  }

  void header_filter(Context& ctx) const override {
    const auto* quota = ctx.find_note(this);
    if (!conf.show_limit_quota_header || !quota) return;
    const QuotaHeaderNames& names = header_names(ctx);
    ctx.response_headers.push_back({HeaderEdit::Op::Set, names.limit, std::to_string(conf.count)});
    ctx.response_headers.push_back(
        {HeaderEdit::Op::Set, names.remaining, std::to_string((*quota)[1])});
    ctx.response_headers.push_back({HeaderEdit::Op::Set, names.reset, std::to_string((*quota)[2])});
  }

 private:
  // In per-thread buffers: valid until the next call on this thread.
  const std::string& counter_key(const Context& ctx) const {
    thread_local std::string k, full;
    key.extract(ctx, k);
    limit::limit_count_key(full, scope, k);
    return full;
  }

  Step decide(Context& ctx, const limit::TakeResult& r) const {
    auto& quota = ctx.note(this);
    quota[0] = 1;
    quota[1] = r.remaining;
    quota[2] = r.reset_seconds();
    if (r.allowed) return Step::Continue;
    if (auto* series = metrics::SeriesCounters::current())
      series->add("portico_limit_rejected_total",
                  "Requests refused by a rate or concurrency limit.",
                  {{"plugin", "limit-count"}, {"scope", scope}});
    ctx.respond_error(conf.rejected_code, conf.rejected_msg.empty()
                                              ? http::status_reason(conf.rejected_code)
                                              : std::string_view(conf.rejected_msg));
    return Step::Respond;
  }
};

// The settings as parsed, defaults filled in (a written default equals an omitted one).
std::string group_settings(const limit::LimitCountConfig& c) {
  const limit::RedisSettings& r = c.redis;
  return std::to_string(c.count) + "/" + std::to_string(c.time_window) + "/" +
         std::to_string(static_cast<int>(c.window_type)) + "/" +
         std::to_string(static_cast<int>(c.key_type)) + "/" + c.key + "/" +
         std::to_string(c.rejected_code) + "/" + c.rejected_msg + "/" +
         std::to_string(static_cast<int>(c.policy)) + "/" + std::to_string(c.allow_degradation) +
         std::to_string(c.show_limit_quota_header) + "/" + r.host + ":" + std::to_string(r.port) +
         "/" + r.username + "/" + r.password + "/" + std::to_string(r.database) + "/" +
         std::to_string(r.timeout_ms) + "/" + c.cluster.name + "/" + c.cluster.username + "/" +
         c.cluster.password + "/" + std::to_string(c.cluster.timeout_ms) + "/" + [&] {
           std::string nodes;
           for (const auto& n : c.cluster.nodes) (nodes += n) += ',';
           return nodes;
         }();
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope& scope, const std::string& path,
                                     Errors& errors) {
  size_t before = errors.size();
  auto p = std::make_shared<LimitCount>();
  p->conf = limit::parse_limit_count_config(conf, path, errors);
  if (errors.size() != before) return nullptr;
  // key/key_type were validated above; read them again into the extractor the limits share.
  Errors ignored;
  config::ObjectReader keys(conf, path, ignored);
  p->key = LimitKey::read(keys);
  p->scope = p->conf.group.empty() ? scope.key() : "group/" + p->conf.group;
  if (!p->conf.group.empty()) p->settings = group_settings(p->conf);
  return p;
}

}  // namespace

const PluginType& limit_count_plugin() {
  static const PluginType type{"limit-count", 1002,  &create,           nullptr,
                               true,          false, &read_header_names};
  return type;
}

}  // namespace portico::plugins
