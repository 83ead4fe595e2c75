#include "plugins/limit/limit_count_config.hpp"

namespace portico::limit {

namespace {

// A year of seconds; a larger window is a mistake, and keeps window_ms() far from overflow.
constexpr int64_t kMaxTimeWindow = 366LL * 24 * 3600;
constexpr int64_t kMaxCount = 1'000'000'000'000LL;

template <class Enum, size_t N>
Enum read_enum(config::ObjectReader& r, std::string_view field, Enum fallback,
               const std::pair<std::string_view, Enum> (&names)[N], std::string_view expected) {
  auto v = r.string(field);
  if (!v) return fallback;
  for (const auto& [name, value] : names)
    if (*v == name) return value;
  r.error(field, "must be one of " + std::string(expected));
  return fallback;
}

}  // namespace

void read_redis_settings(config::ObjectReader& r, bool used, RedisSettings& out) {
  auto host = r.string("redis_host");
  if (used && (!host || host->empty())) r.error("redis_host", "required when policy is redis");
  if (host) out.host = *host;
  out.port = static_cast<uint16_t>(r.integer_or("redis_port", 6379, 1, 65535));
  out.username = r.string_or("redis_username", "");
  out.password = r.string_or("redis_password", "");
  out.database = r.integer_or("redis_database", 0, 0, 1'000'000);
  out.timeout_ms = r.integer_or("redis_timeout", 1000, 1, 3'600'000);
  if (r.boolean_or("redis_ssl", false)) r.error("redis_ssl", "TLS to Redis is not supported yet");
  r.ignore("redis_ssl_verify");
}

LimitCountConfig parse_limit_count_config(const config::json& conf, const std::string& path,
                                          config::Errors& errors) {
  LimitCountConfig c;
  config::ObjectReader r(conf, path, errors);
  if (!r.valid()) return c;

  if (!r.has("count")) r.error("count", "required");
  c.count = r.integer_or("count", 0, 1, kMaxCount);
  if (!r.has("time_window")) r.error("time_window", "required");
  c.time_window = r.integer_or("time_window", 0, 1, kMaxTimeWindow);

  static constexpr std::pair<std::string_view, WindowType> kWindows[] = {
      {"fixed", WindowType::fixed}, {"sliding", WindowType::sliding}};
  c.window_type = read_enum(r, "window_type", WindowType::fixed, kWindows, "fixed, sliding");

  static constexpr std::pair<std::string_view, KeyType> kKeyTypes[] = {
      {"var", KeyType::var},
      {"var_combination", KeyType::var_combination},
      {"constant", KeyType::constant}};
  c.key_type = read_enum(r, "key_type", KeyType::var, kKeyTypes, "var, var_combination, constant");
  c.key = r.string_or("key", "remote_addr");
  if (c.key.empty()) r.error("key", "must not be empty");

  c.rejected_code = static_cast<int>(r.integer_or("rejected_code", 503, 200, 599));
  c.rejected_msg = r.string_or("rejected_msg", "");
  if (r.has("rejected_msg") && c.rejected_msg.empty()) r.error("rejected_msg", "must not be empty");

  if (auto policy = r.string("policy")) {
    if (*policy == "local") {
      c.policy = CountPolicy::local;
    } else if (*policy == "redis") {
      c.policy = CountPolicy::redis;
    } else if (*policy == "redis-cluster") {
      r.error("policy", "redis-cluster is not supported (use redis)");
    } else {
      r.error("policy", "must be one of local, redis");
    }
  }
  // redis-cluster's own fields: named, so the error above is the only one.
  r.ignore("redis_cluster_nodes");
  r.ignore("redis_cluster_name");
  r.ignore("redis_cluster_ssl");
  r.ignore("redis_cluster_ssl_verify");
  read_redis_settings(r, c.policy == CountPolicy::redis, c.redis);

  c.allow_degradation = r.boolean_or("allow_degradation", false);
  c.show_limit_quota_header = r.boolean_or("show_limit_quota_header", true);
  c.group = r.string_or("group", "");
  if (r.has("group") && c.group.empty()) r.error("group", "must not be empty");
  r.ignore("_meta");
  r.finish();
  return c;
}

}  // namespace portico::limit
