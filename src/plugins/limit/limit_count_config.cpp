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

CountPolicy read_redis_policy(config::ObjectReader& r, RedisSettings& redis,
                              RedisClusterSettings& cluster) {
  static constexpr std::pair<std::string_view, CountPolicy> kPolicies[] = {
      {"local", CountPolicy::local},
      {"redis", CountPolicy::redis},
      {"redis-cluster", CountPolicy::redis_cluster}};
  CountPolicy policy =
      read_enum(r, "policy", CountPolicy::local, kPolicies, "local, redis, redis-cluster");

  auto host = r.string("redis_host");
  if (policy == CountPolicy::redis && (!host || host->empty()))
    r.error("redis_host", "required when policy is redis");
  if (host) redis.host = *host;
  redis.port = static_cast<uint16_t>(r.integer_or("redis_port", 6379, 1, 65535));
  redis.username = r.string_or("redis_username", "");
  redis.password = r.string_or("redis_password", "");
  redis.database = r.integer_or("redis_database", 0, 0, 1'000'000);
  redis.timeout_ms = r.integer_or("redis_timeout", 1000, 1, 3'600'000);
  redis.tls = r.boolean_or("redis_ssl", false);
  redis.tls_verify = r.boolean_or("redis_ssl_verify", false);

  const bool in_cluster = policy == CountPolicy::redis_cluster;
  if (!in_cluster) {
    // (Another policy's leftovers, as APISIX leaves them unchecked.)
    for (auto key : {"redis_cluster_nodes", "redis_cluster_name", "redis_cluster_ssl",
                     "redis_cluster_ssl_verify", "redis_keepalive_timeout", "redis_keepalive_pool"})
      r.ignore(key);
    return policy;
  }
  if (!r.has("redis_cluster_nodes")) {
    r.error("redis_cluster_nodes", "required when policy is redis-cluster");
  } else {
    size_t before = r.errors().size();
    cluster.nodes = r.string_list("redis_cluster_nodes");
    if (r.errors().size() == before && cluster.nodes.empty())
      r.error("redis_cluster_nodes", "must name at least one node");
  }
  for (const auto& node : cluster.nodes) {
    std::string h;
    uint16_t p = 0;
    if (!split_host_port(node, h, p))
      r.error("redis_cluster_nodes", "\"" + node + "\" is not host:port");
  }
  if (!r.has("redis_cluster_name"))
    r.error("redis_cluster_name", "required when policy is redis-cluster");
  cluster.name = r.string_or("redis_cluster_name", "");
  if (r.has("redis_cluster_name") && cluster.name.empty())
    r.error("redis_cluster_name", "must not be empty");
  if (redis.database != 0) r.error("redis_database", "a Redis Cluster has database 0 only");
  cluster.username = redis.username;
  cluster.password = redis.password;
  cluster.timeout_ms = redis.timeout_ms;
  // (A cluster answers a TLS client's CLUSTER SLOTS with the nodes' TLS ports.)
  cluster.tls = r.boolean_or("redis_cluster_ssl", false);
  cluster.tls_verify = r.boolean_or("redis_cluster_ssl_verify", false);
  r.integer_or("redis_keepalive_timeout", 10000, 1000, 86'400'000);
  r.integer_or("redis_keepalive_pool", 100, 1, 1'000'000);
  return policy;
}

RedisScriptRunner& redis_runner(Executor ex, CountPolicy policy, const RedisSettings& redis,
                                const RedisClusterSettings& cluster) {
  if (policy == CountPolicy::redis_cluster) return RedisClusters::of_this_thread().get(ex, cluster);
  return RedisClients::of_this_thread().get(ex, redis);
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

  c.policy = read_redis_policy(r, c.redis, c.cluster);

  c.allow_degradation = r.boolean_or("allow_degradation", false);
  c.show_limit_quota_header = r.boolean_or("show_limit_quota_header", true);
  c.group = r.string_or("group", "");
  if (r.has("group") && c.group.empty()) r.error("group", "must not be empty");
  r.ignore("_meta");
  r.finish();
  return c;
}

}  // namespace portico::limit
