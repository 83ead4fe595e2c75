#include "config/object_parser.hpp"

#include <gtest/gtest.h>

#include "config/node_config.hpp"
#include "config/yaml_json.hpp"

using namespace portico::config;

namespace {
std::string errors_of(const std::string& yaml) {
  Errors errors;
  parse_config_set(yaml_to_json(yaml), errors);
  return errors.to_string();
}
}  // namespace

TEST(ConfigParser, AcceptsApisixShapes) {
  Errors errors;
  auto set = parse_config_set(yaml_to_json(R"(
upstreams:
  - id: u1
    type: roundrobin
    nodes: {"127.0.0.1:8080": 2, "[::1]:9090": 1, "backend.local": 1}
    timeout: {connect: 1.5, send: 2, read: "500ms"}
    retries: 2
    retry_timeout: 3
    pass_host: rewrite
    upstream_host: api.example.com
    keepalive_pool: {size: 10, idle_timeout: 30, requests: 50}
services:
  - id: s1
    upstream_id: u1
    hosts: [Example.COM]
routes:
  - id: 1
    name: users
    uris: [/users/*, /people/:id]
    methods: [GET, POST]
    remote_addrs: [10.0.0.0/8, "::1"]
    priority: 5
    service_id: s1
    status: 1
    desc: anything
    labels: {team: im}
)"),
                              errors);
  ASSERT_TRUE(errors.empty()) << errors.to_string();
  ASSERT_EQ(set.upstreams.size(), 1u);
  const Upstream& u = *set.upstreams[0];
  ASSERT_EQ(u.nodes.size(), 3u);
  EXPECT_EQ(u.nodes[1].host, "::1");
  EXPECT_EQ(u.nodes[1].port, 9090);
  EXPECT_EQ(u.nodes[2].port, 80);
  EXPECT_DOUBLE_EQ(u.read_timeout, 0.5);
  EXPECT_EQ(u.pass_host, PassHost::Rewrite);
  EXPECT_EQ(u.keepalive_size, 10);
  EXPECT_EQ(set.services[0]->hosts[0], "example.com");
  EXPECT_EQ(set.routes[0]->id, "1");
  EXPECT_EQ(set.routes[0]->uris.size(), 2u);
}

TEST(ConfigParser, ReportsEveryErrorWithItsPath) {
  std::string e = errors_of(R"(
routes:
  - id: 1
    uri: /a
    upstream: {nodes: [{host: 127.0.0.1, port: 70000}]}
  - id: 1
    uri: no-slash
    methods: [FETCH]
    upstream_id: nope
  - uri: /c
    upstream: {nodes: {"127.0.0.1:80": 1}, pass_host: rewrite}
    priority: high
)");
  for (const char* want :
       {"routes[0].upstream.nodes[0].port: must be 1..65535", "routes[1].id: duplicate id \"1\"",
        "routes[1].uris[0]: must start with '/'", "routes[1].methods: unknown method \"FETCH\"",
        "routes[1].upstream_id: unknown upstream \"nope\"", "routes[2].id: is required",
        "routes[2].upstream.upstream_host: is required when pass_host is rewrite",
        "routes[2].priority: must be an integer"})
    EXPECT_NE(e.find(want), std::string::npos) << "missing: " << want << "\nin:\n" << e;
}

TEST(ConfigParser, UnknownFieldsAndPluginsAreErrors) {
  std::string e = errors_of(R"(
routes:
  - id: 1
    uri: /a
    upstream: {nodes: {"127.0.0.1:80": 1}, colour: red}
    plugins: {limit-req: {rate: 1}, no-such-plugin: {}}
    hots: [a.com]
)");
  EXPECT_NE(e.find("routes[0].upstream.colour: unknown field"), std::string::npos) << e;
  EXPECT_NE(e.find("routes[0].plugins.no-such-plugin: unknown plugin"), std::string::npos) << e;
  // A known plugin's schema errors name the plugin's field.
  EXPECT_NE(e.find("routes[0].plugins.limit-req.burst: is required"), std::string::npos) << e;
  EXPECT_NE(e.find("routes[0].hots: unknown field"), std::string::npos) << e;
  EXPECT_NE(errors_of("routez: []").find("routez: unknown field"), std::string::npos);
}

TEST(ConfigParser, RouteNeedsAnUpstream) {
  EXPECT_NE(errors_of("routes: [{id: 1, uri: /a}]").find("routes[0]: needs an upstream"),
            std::string::npos);
}

TEST(ConfigParser, YamlSyntaxErrorsNameTheLine) {
  try {
    yaml_to_json("routes:\n  - {id: 1\n");
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("line"), std::string::npos);
  }
  EXPECT_THROW(yaml_to_json("a: 1\na: 2\n"), std::runtime_error);  // duplicate keys
}

TEST(NodeConfig, DefaultsAndUnits) {
  Errors errors;
  auto c = parse_node_config(yaml_to_json(R"(
node:
  listen: ["127.0.0.1:9080", "[::1]:9081"]
  workers: 3
  client_max_header_size: 16k
  client_max_body_size: 2m
  keepalive_timeout: 1m
config: {file: /etc/portico/routes.yaml}
)"),
                             "/tmp/x/config.yaml", errors);
  ASSERT_TRUE(errors.empty()) << errors.to_string();
  EXPECT_EQ(c.listen.size(), 2u);
  EXPECT_EQ(c.listen[1].host, "::1");
  EXPECT_EQ(c.workers, 3);
  EXPECT_EQ(c.http.client_max_header_size, 16u * 1024);
  EXPECT_EQ(c.http.client_max_body_size, 2 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(c.http.keepalive_timeout, 60);
  EXPECT_DOUBLE_EQ(c.http.client_header_timeout, 60);
  EXPECT_EQ(c.routes_file, "/etc/portico/routes.yaml");
  EXPECT_EQ(c.access_log, "/tmp/x/logs/access.log");
}

TEST(NodeConfig, BadValuesNameTheField) {
  Errors errors;
  parse_node_config(yaml_to_json(R"(
node: {listen: ["nowhere"], workers: many, keepalive_timeout: soon}
config: {provider: zookeeper}
log: {level: loud}
extra: 1
)"),
                    "c.yaml", errors);
  std::string e = errors.to_string();
  for (const char* want :
       {"node.listen[0]: must be \"ip:port\"", "node.workers: must be an integer",
        "node.keepalive_timeout: must be a duration", "config.provider: must be yaml",
        "log.level: must be one of", "extra: unknown field"})
    EXPECT_NE(e.find(want), std::string::npos) << "missing: " << want << "\nin:\n" << e;
}

TEST(ConfigParser, NumericIdsPastInt64StayTheNumberTheyAre) {
  // Not "-1": an upstream_id sent (JSON, Admin API) as a number past INT64_MAX must not name
  // upstream "-1".
  Errors errors;
  parse_config_set(nlohmann::json::parse(R"({
    "upstreams": [{"id": "-1", "nodes": {"127.0.0.1:80": 1}}],
    "routes": [{"id": 1, "uri": "/a", "upstream_id": 18446744073709551615}]})"),
                   errors);
  EXPECT_NE(
      errors.to_string().find("routes[0].upstream_id: unknown upstream \"18446744073709551615\""),
      std::string::npos)
      << errors.to_string();
}
