// node.listen entries: "ip:port" strings and the object form with PROXY protocol settings.
#include <gtest/gtest.h>

#include "config/node_config.hpp"
#include "config/yaml_json.hpp"
#include "router/route_rule.hpp"

using namespace portico::config;

namespace {

NodeConfig parse(const std::string& yaml, Errors& errors) {
  return parse_node_config(yaml_to_json(yaml), "/tmp/x/config.yaml", errors);
}

std::string errors_of(const std::string& yaml) {
  Errors errors;
  parse(yaml, errors);
  return errors.to_string();
}

bool trusts(const ListenAddress& a, const char* ip) {
  return a.trusts(portico::router::address_bytes(ip));
}

}  // namespace

TEST(NodeListen, StringsAndObjectsMix) {
  Errors errors;
  NodeConfig c = parse(R"(
node:
  listen:
    - "127.0.0.1:9080"
    - {addr: "127.0.0.1:9081", proxy_protocol: true}
    - {addr: "[::1]:9082", proxy_protocol: true, trusted_addresses: ["10.0.0.0/8", "2001:db8::/32"]}
    - {addr: "0.0.0.0:9083"}
)",
                       errors);
  ASSERT_TRUE(errors.empty()) << errors.to_string();
  ASSERT_EQ(c.listen.size(), 4u);
  EXPECT_FALSE(c.listen[0].proxy_protocol);
  EXPECT_TRUE(c.listen[1].proxy_protocol);
  EXPECT_EQ(c.listen[1].port, 9081);
  EXPECT_EQ(c.listen[2].host, "::1");
  EXPECT_EQ(c.listen[2].trusted_addresses,
            (std::vector<std::string>{"10.0.0.0/8", "2001:db8::/32"}));
  EXPECT_FALSE(c.listen[3].proxy_protocol);
}

TEST(NodeListen, DefaultTrustIsLoopbackAndPrivateRangesOnly) {
  Errors errors;
  NodeConfig c =
      parse("node: {listen: [{addr: \"127.0.0.1:9081\", proxy_protocol: true}]}", errors);
  ASSERT_TRUE(errors.empty()) << errors.to_string();
  const ListenAddress& a = c.listen.at(0);
  for (const char* ip : {"127.0.0.1", "127.255.0.9", "::1", "10.1.2.3", "172.16.0.1",
                         "172.31.255.255", "192.168.7.7", "fc00::1", "fdff::9"})
    EXPECT_TRUE(trusts(a, ip)) << ip;
  for (const char* ip : {"8.8.8.8", "172.32.0.1", "172.15.255.255", "192.169.0.1", "100.64.0.1",
                         "169.254.1.1", "2001:db8::1", "fe80::1", "::"})
    EXPECT_FALSE(trusts(a, ip)) << ip;
}

TEST(NodeListen, ConfiguredTrustReplacesTheDefault) {
  Errors errors;
  NodeConfig c = parse(R"(
node: {listen: [{addr: "127.0.0.1:9081", proxy_protocol: true, trusted_addresses: ["10.0.0.0/8", "2001:db8::7"]}]}
)",
                       errors);
  ASSERT_TRUE(errors.empty()) << errors.to_string();
  const ListenAddress& a = c.listen.at(0);
  EXPECT_TRUE(trusts(a, "10.9.9.9"));
  EXPECT_TRUE(trusts(a, "2001:db8::7"));
  EXPECT_FALSE(trusts(a, "2001:db8::8"));
  EXPECT_FALSE(trusts(a, "127.0.0.1"));
}

TEST(NodeListen, ObjectFormErrorsNameTheField) {
  struct Case {
    const char* yaml;
    const char* error;
  };
  for (const Case& t : {
           Case{"node: {listen: [{addr: nowhere, proxy_protocol: true}]}",
                "node.listen[0].addr: must be \"ip:port\""},
           Case{"node: {listen: [{proxy_protocol: true}]}", "node.listen[0].addr: is required"},
           Case{"node: {listen: [\"127.0.0.1:1\", {addr: \"127.0.0.1:2\", proxy_protocl: true}]}",
                "node.listen[1].proxy_protocl: unknown field"},
           Case{"node: {listen: [{addr: \"127.0.0.1:2\", proxy_protocol: yes please}]}",
                "node.listen[0].proxy_protocol: must be true or false"},
           Case{"node: {listen: [{addr: \"127.0.0.1:2\", proxy_protocol: true, "
                "trusted_addresses: [\"10.0.0.0/8\", \"10.0.0.0/33\"]}]}",
                "node.listen[0].trusted_addresses[1]: must be an IP address or CIDR"},
           Case{"node: {listen: [{addr: \"127.0.0.1:2\", trusted_addresses: [lan]}]}",
                "node.listen[0].trusted_addresses[0]: must be an IP address or CIDR"},
           Case{"node: {listen: [{addr: \"127.0.0.1:2\", proxy_protocol: true, "
                "trusted_addresses: []}]}",
                "node.listen[0].trusted_addresses: needs at least one address"},
           Case{"node: {listen: [42]}", "node.listen[0]: must be \"ip:port\" or {addr"},
           Case{"node: {listen: {addr: \"127.0.0.1:70000\"}}", "node.listen.addr: must be"},
       }) {
    std::string e = errors_of(t.yaml);
    EXPECT_NE(e.find(t.error), std::string::npos)
        << t.yaml << "\nwant: " << t.error << "\ngot: " << e;
  }
}
