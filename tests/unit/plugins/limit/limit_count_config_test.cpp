#include "plugins/limit/limit_count_config.hpp"

#include <gtest/gtest.h>

using namespace portico::limit;
using nlohmann::json;
using portico::config::Errors;

namespace {

const std::string kPath = "routes[0].plugins.limit-count";

LimitCountConfig parse_ok(const json& conf) {
  Errors errors;
  LimitCountConfig c = parse_limit_count_config(conf, kPath, errors);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  return c;
}

// The errors, one "path: message" per line.
std::string errors_of(const json& conf) {
  Errors errors;
  parse_limit_count_config(conf, kPath, errors);
  return errors.to_string();
}

}  // namespace

TEST(LimitCountConfig, DefaultsAreApisix) {
  LimitCountConfig c = parse_ok({{"count", 100}, {"time_window", 60}});
  EXPECT_EQ(c.count, 100);
  EXPECT_EQ(c.time_window, 60);
  EXPECT_EQ(c.window_ms(), 60000);
  EXPECT_EQ(c.window_type, WindowType::fixed);
  EXPECT_EQ(c.key_type, KeyType::var);
  EXPECT_EQ(c.key, "remote_addr");
  EXPECT_EQ(c.rejected_code, 503);
  EXPECT_EQ(c.rejected_msg, "");
  EXPECT_EQ(c.policy, CountPolicy::local);
  EXPECT_FALSE(c.allow_degradation);
  EXPECT_TRUE(c.show_limit_quota_header);
  EXPECT_EQ(c.group, "");
}

TEST(LimitCountConfig, ReadsEveryField) {
  LimitCountConfig c = parse_ok({{"count", 5},
                                 {"time_window", 1},
                                 {"window_type", "sliding"},
                                 {"key_type", "var_combination"},
                                 {"key", "$remote_addr $http_x_user"},
                                 {"rejected_code", 429},
                                 {"rejected_msg", "slow down"},
                                 {"policy", "redis"},
                                 {"allow_degradation", true},
                                 {"show_limit_quota_header", false},
                                 {"group", "api"},
                                 {"redis_host", "10.0.0.5"},
                                 {"redis_port", 6380},
                                 {"redis_username", "limiter"},
                                 {"redis_password", "pw"},
                                 {"redis_database", 2},
                                 {"redis_timeout", 250},
                                 {"redis_ssl", false}});
  EXPECT_EQ(c.window_type, WindowType::sliding);
  EXPECT_EQ(c.key_type, KeyType::var_combination);
  EXPECT_EQ(c.key, "$remote_addr $http_x_user");
  EXPECT_EQ(c.rejected_code, 429);
  EXPECT_EQ(c.rejected_msg, "slow down");
  EXPECT_EQ(c.policy, CountPolicy::redis);
  EXPECT_TRUE(c.allow_degradation);
  EXPECT_FALSE(c.show_limit_quota_header);
  EXPECT_EQ(c.group, "api");
  EXPECT_EQ(c.redis.host, "10.0.0.5");
  EXPECT_EQ(c.redis.port, 6380);
  EXPECT_EQ(c.redis.username, "limiter");
  EXPECT_EQ(c.redis.password, "pw");
  EXPECT_EQ(c.redis.database, 2);
  EXPECT_EQ(c.redis.timeout_ms, 250);
}

TEST(LimitCountConfig, RedisDefaults) {
  LimitCountConfig c =
      parse_ok({{"count", 1}, {"time_window", 1}, {"policy", "redis"}, {"redis_host", "r"}});
  EXPECT_EQ(c.redis.host, "r");
  EXPECT_EQ(c.redis.port, 6379);
  EXPECT_EQ(c.redis.database, 0);
  EXPECT_EQ(c.redis.timeout_ms, 1000);
  EXPECT_EQ(c.redis.password, "");
  EXPECT_EQ(c.redis.username, "");
}

TEST(LimitCountConfig, CountAndTimeWindowAreRequiredAndPositive) {
  EXPECT_EQ(errors_of(json::object()),
            kPath + ".count: required\n" + kPath + ".time_window: required\n");
  EXPECT_EQ(errors_of({{"count", 0}, {"time_window", 1}}),
            kPath + ".count: must be 1..1000000000000\n");
  EXPECT_EQ(errors_of({{"count", 1}, {"time_window", -5}}),
            kPath + ".time_window: must be 1..31622400\n");
  EXPECT_EQ(errors_of({{"count", "10"}, {"time_window", 1.5}}),
            kPath + ".count: must be an integer\n" + kPath + ".time_window: must be an integer\n");
}

TEST(LimitCountConfig, EnumsNameTheirChoices) {
  json base = {{"count", 1}, {"time_window", 1}};
  json c = base;
  c["key_type"] = "header";
  EXPECT_EQ(errors_of(c), kPath + ".key_type: must be one of var, var_combination, constant\n");
  c = base;
  c["window_type"] = "rolling";
  EXPECT_EQ(errors_of(c), kPath + ".window_type: must be one of fixed, sliding\n");
  c = base;
  c["policy"] = "memcached";
  EXPECT_EQ(errors_of(c), kPath + ".policy: must be one of local, redis, redis-cluster\n");
}

TEST(LimitCountConfig, RedisClusterTakesApisixsFields) {
  json conf = {{"count", 1},
               {"time_window", 1},
               {"policy", "redis-cluster"},
               {"redis_cluster_nodes", {"10.0.0.1:6379", "[::1]:7000", "redis-2.local:7001"}},
               {"redis_cluster_name", "c"},
               {"redis_password", "pw"},
               {"redis_timeout", 250},
               {"redis_keepalive_pool", 10}};
  EXPECT_EQ(errors_of(conf), "");
  Errors errors;
  LimitCountConfig c = parse_limit_count_config(conf, kPath, errors);
  EXPECT_EQ(c.policy, CountPolicy::redis_cluster);
  EXPECT_EQ(c.cluster.nodes.size(), 3u);
  EXPECT_EQ(c.cluster.name, "c");
  EXPECT_EQ(c.cluster.password, "pw");
  EXPECT_EQ(c.cluster.timeout_ms, 250);
  EXPECT_EQ(errors_of({{"count", 1}, {"time_window", 1}, {"policy", "redis-cluster"}}),
            kPath + ".redis_cluster_nodes: required when policy is redis-cluster\n" + kPath +
                ".redis_cluster_name: required when policy is redis-cluster\n");
  EXPECT_EQ(errors_of({{"count", 1},
                       {"time_window", 1},
                       {"policy", "redis-cluster"},
                       {"redis_cluster_nodes", {"10.0.0.1"}},
                       {"redis_cluster_name", "c"},
                       {"redis_cluster_ssl", 1}}),
            kPath + ".redis_cluster_nodes: \"10.0.0.1\" is not host:port\n" + kPath +
                ".redis_cluster_ssl: must be true or false\n");
}

TEST(LimitCountConfig, RedisPolicyNeedsAHost) {
  EXPECT_EQ(errors_of({{"count", 1}, {"time_window", 1}, {"policy", "redis"}}),
            kPath + ".redis_host: required when policy is redis\n");
  EXPECT_EQ(errors_of({{"count", 1}, {"time_window", 1}, {"policy", "redis"}, {"redis_host", ""}}),
            kPath + ".redis_host: required when policy is redis\n");
}

TEST(LimitCountConfig, RedisFieldBounds) {
  json c = {{"count", 1},      {"time_window", 1},     {"policy", "redis"},  {"redis_host", "r"},
            {"redis_port", 0}, {"redis_database", -1}, {"redis_timeout", 0}, {"redis_ssl", "yes"}};
  EXPECT_EQ(errors_of(c), kPath + ".redis_port: must be 1..65535\n" + kPath +
                              ".redis_database: must be 0..1000000\n" + kPath +
                              ".redis_timeout: must be 1..3600000\n" + kPath +
                              ".redis_ssl: must be true or false\n");
}

TEST(LimitCountConfig, RejectedCodeIsAnHttpStatus) {
  EXPECT_EQ(errors_of({{"count", 1}, {"time_window", 1}, {"rejected_code", 199}}),
            kPath + ".rejected_code: must be 200..599\n");
  EXPECT_EQ(errors_of({{"count", 1}, {"time_window", 1}, {"rejected_code", 600}}),
            kPath + ".rejected_code: must be 200..599\n");
  EXPECT_EQ(parse_ok({{"count", 1}, {"time_window", 1}, {"rejected_code", 200}}).rejected_code,
            200);
}

TEST(LimitCountConfig, EmptyStringsAreMistakes) {
  EXPECT_EQ(
      errors_of(
          {{"count", 1}, {"time_window", 1}, {"key", ""}, {"group", ""}, {"rejected_msg", ""}}),
      kPath + ".key: must not be empty\n" + kPath + ".rejected_msg: must not be empty\n" + kPath +
          ".group: must not be empty\n");
}

TEST(LimitCountConfig, UnknownFieldsAndWrongTypesAreReported) {
  std::string e =
      errors_of({{"count", 1}, {"time_window", 1}, {"conut", 2}, {"allow_degradation", "yes"}});
  EXPECT_NE(e.find(kPath + ".conut: unknown field"), std::string::npos) << e;
  EXPECT_NE(e.find(kPath + ".allow_degradation: must be true or false"), std::string::npos) << e;
  EXPECT_EQ(errors_of(json::array()), kPath + ": must be an object\n");
}
