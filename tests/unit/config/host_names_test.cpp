// Host names in upstream nodes: the table's versions, and what a compile makes of a name (every
// address a node; a compiled upstream kept only while its names resolve as they did).
#include <gtest/gtest.h>

#include <algorithm>

#include "config/host_table.hpp"
#include "config/snapshot.hpp"
#include "config/yaml_json.hpp"

using namespace portico;
using namespace portico::config;

namespace {

std::vector<asio::ip::address> addresses(std::initializer_list<const char*> list) {
  std::vector<asio::ip::address> out;
  for (const char* a : list) out.push_back(asio::ip::make_address(a));
  return out;
}

// The names are made up (.test is reserved): the table answers for them, never a resolver.
constexpr const char* kRoutes = R"(
upstreams:
  - id: by-name
    nodes: {"api.portico.test:8080": 3}
  - id: by-address
    nodes: {"127.0.0.1:8081": 1}
  - id: spare
    nodes: {"spare.portico.test:8082": 1}
routes:
  - {id: a, uri: /a, upstream_id: by-name}
  - {id: b, uri: /b, upstream_id: by-address}
  - id: c
    uri: /c
    upstream: {nodes: {"api.portico.test:9000": 1}}
)";

struct Built {
  std::unique_ptr<Snapshot> snap;
  const upstream::UpstreamTarget* target(const std::string& route) const {
    for (const auto& r : snap->routes)
      if (r.id == route) return r.upstream.get();
    return nullptr;
  }
};

Built build(const ObjectStore& store, CompileCache& cache) {
  Errors problems, errors;
  auto snap = build_snapshot(store.config_set(problems), HttpLimits{}, 1, errors, nullptr, &cache);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  return {std::move(snap)};
}

std::vector<std::string> node_addresses(const upstream::UpstreamTarget& t) {
  std::vector<std::string> out;
  for (const auto& n : t.nodes()) out.push_back(n.address);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(HostTable, VersionChangesOnlyWhenTheAddressesDo) {
  HostTable table;
  EXPECT_TRUE(table.update("x.test", addresses({"10.0.0.1"}), ""));
  const uint64_t v1 = table.known("x.test").version;
  EXPECT_FALSE(table.update("x.test", addresses({"10.0.0.1"}), ""));
  EXPECT_TRUE(table.current({{"x.test", v1}}));
  // a failure keeps the addresses and the version: a DNS outage takes no node away
  EXPECT_FALSE(table.update("x.test", {}, "Host not found"));
  EXPECT_EQ(table.known("x.test").addresses, addresses({"10.0.0.1"}));
  EXPECT_EQ(table.known("x.test").error, "Host not found");
  EXPECT_TRUE(table.current({{"x.test", v1}}));
  EXPECT_TRUE(table.update("x.test", addresses({"10.0.0.1", "10.0.0.2"}), ""));
  EXPECT_TRUE(table.known("x.test").error.empty());
  EXPECT_FALSE(table.current({{"x.test", v1}}));
  // forgotten, then met again: never the old version back
  table.keep_only({});
  EXPECT_EQ(table.known("x.test").version, 0u);
  table.update("x.test", addresses({"10.0.0.1"}), "");
  EXPECT_FALSE(table.current({{"x.test", v1}}));
}

TEST(HostTable, ResolverAnswersAreOneFamilyEachOnceSorted) {
  asio::io_context ctx;
  asio::ip::tcp::resolver resolver(ctx);
  auto answer = [](std::initializer_list<const char*> list) {
    std::vector<asio::ip::tcp::endpoint> eps;
    for (const char* a : list) eps.emplace_back(asio::ip::make_address(a), 0);
    return asio::ip::tcp::resolver::results_type::create(eps.begin(), eps.end(), "h", "");
  };
  EXPECT_EQ(usable_addresses(answer({"10.0.0.2", "::1", "10.0.0.1", "10.0.0.2"})),
            addresses({"10.0.0.1", "10.0.0.2"}));
  EXPECT_EQ(usable_addresses(answer({"::2", "10.0.0.1", "::1"})), addresses({"::1", "::2"}));
}

TEST(HostTable, ANameACompileJustLookedUpIsNotForgotten) {
  // keep_only() goes by the running snapshot; a compile whose snapshot is not running yet may
  // have just resolved a name
  HostTable table;
  EXPECT_FALSE(table.lookup("localhost").addresses.empty());
  table.keep_only({});
  EXPECT_NE(table.known("localhost").version, 0u);
}

TEST(HostTable, MoreAddressesThanKeptGiveTheSameNodesInAnyOrder) {
  std::vector<asio::ip::tcp::endpoint> eps;
  for (int i = 1; i <= 40; ++i)
    eps.emplace_back(asio::ip::make_address("10.0.1." + std::to_string(i)), 0);
  auto first = usable_addresses(
      asio::ip::tcp::resolver::results_type::create(eps.begin(), eps.end(), "h", ""));
  std::rotate(eps.begin(), eps.begin() + 17, eps.end());
  auto rotated = usable_addresses(
      asio::ip::tcp::resolver::results_type::create(eps.begin(), eps.end(), "h", ""));
  EXPECT_EQ(first.size(), HostTable::kMaxAddresses);
  EXPECT_EQ(first, rotated);
}

TEST(HostNames, EveryAddressIsANodeAndOnlyUpstreamsOfAChangedNameAreCompiledAgain) {
  host_table().update("api.portico.test", addresses({"10.1.0.1", "10.1.0.2"}), "");
  host_table().update("spare.portico.test", addresses({"10.2.0.1"}), "");
  Errors errors;
  ObjectStore store = store_from_document(yaml_to_json(kRoutes), errors);
  ASSERT_TRUE(errors.empty()) << errors.to_string();
  CompileCache cache;
  Built first = build(store, cache);
  const auto* by_name = first.target("a");
  ASSERT_NE(by_name, nullptr);
  EXPECT_EQ(node_addresses(*by_name), (std::vector<std::string>{"10.1.0.1:8080", "10.1.0.2:8080"}));
  for (const auto& n : by_name->nodes()) {
    EXPECT_EQ(n.weight, 3);                             // the name's weight, for each address
    EXPECT_EQ(n.host_header, "api.portico.test:8080");  // pass_host: node sends the name
  }
  // an upstream no route uses is compiled too: its names are refreshed as well
  EXPECT_EQ(first.snap->host_names,
            (std::set<std::string>{"api.portico.test", "spare.portico.test"}));

  // nothing changed: everything is kept, balancer state and all
  Built same = build(store, cache);
  EXPECT_EQ(same.target("a"), first.target("a"));
  EXPECT_EQ(same.target("b"), first.target("b"));
  EXPECT_EQ(same.target("c"), first.target("c"));

  // the name moves: its upstreams (named and inline) are compiled again, the other is kept
  host_table().update("api.portico.test", addresses({"10.1.0.3"}), "");
  Built moved = build(store, cache);
  EXPECT_NE(moved.target("a"), first.target("a"));
  EXPECT_NE(moved.target("c"), first.target("c"));
  EXPECT_EQ(moved.target("b"), first.target("b"));
  EXPECT_EQ(node_addresses(*moved.target("a")), std::vector<std::string>{"10.1.0.3:8080"});
  EXPECT_EQ(node_addresses(*moved.target("c")), std::vector<std::string>{"10.1.0.3:9000"});

  // a failed resolution changes nothing
  host_table().update("api.portico.test", {}, "Temporary failure in name resolution");
  Built kept = build(store, cache);
  EXPECT_EQ(kept.target("a"), moved.target("a"));
  host_table().keep_only({});
}

TEST(HostNames, AnUnresolvableNameIsAnErrorNamingTheNode) {
  // (an empty label: the resolver refuses it at once, without asking a DNS server)
  Errors errors;
  ObjectStore store = store_from_document(
      yaml_to_json(
          "routes:\n  - {id: r, uri: /r, upstream: {nodes: {\"gone..portico.test:80\": 1}}}\n"),
      errors);
  ASSERT_TRUE(errors.empty());
  Errors problems, build_errors;
  build_snapshot(store.config_set(problems), HttpLimits{}, 1, build_errors);
  EXPECT_NE(build_errors.to_string().find("routes[0].upstream.nodes[0]"), std::string::npos)
      << build_errors.to_string();
  EXPECT_NE(build_errors.to_string().find("cannot resolve host \"gone..portico.test\" ("),
            std::string::npos)
      << build_errors.to_string();
  host_table().keep_only({});
}
