#include "router/route_index.hpp"

#include <gtest/gtest.h>

#include "router/route_explain.hpp"

using namespace portico::router;

namespace {

RouteRule rule(std::string id, std::vector<std::string> uris, std::vector<std::string> hosts = {},
               int priority = 0) {
  static size_t order = 0;
  RouteRule r;
  r.id = std::move(id);
  r.uris = std::move(uris);
  r.hosts = std::move(hosts);
  r.priority = priority;
  r.order = order++;
  return r;
}

// The index shares its rules; tests build them as values.
RouteIndex index_of(std::vector<RouteRule> rules) {
  std::vector<std::shared_ptr<const RouteRule>> shared;
  for (auto& r : rules) shared.push_back(std::make_shared<RouteRule>(std::move(r)));
  return RouteIndex(std::move(shared));
}

std::string match(const RouteIndex& idx, std::string_view path, std::string_view host = "",
                  std::string_view method = "GET", std::string_view remote = "127.0.0.1") {
  MatchInput in;
  in.method = method;
  in.host = host;
  in.path = path;
  in.remote = address_bytes(remote);
  in.has_remote = true;
  int r = idx.match(in);
  return r == RouteIndex::kNoMatch ? "-" : idx.rules()[static_cast<size_t>(r)]->id;
}

}  // namespace

TEST(RouteIndex, ExactBeatsPrefixAndParam) {
  RouteIndex idx = index_of(
      {rule("prefix", {"/api/*"}), rule("param", {"/api/:x"}), rule("exact", {"/api/users"})});
  EXPECT_EQ(match(idx, "/api/users"), "exact");
  EXPECT_EQ(match(idx, "/api/other"), "param");
  EXPECT_EQ(match(idx, "/api/a/b"), "prefix");
}

TEST(RouteIndex, LongestLiteralPrefixWins) {
  RouteIndex idx = index_of({rule("short", {"/a/*"}), rule("long", {"/a/b/*"}),
                             rule("partial", {"/a/b/cd*"}), rule("root", {"/*"})});
  EXPECT_EQ(match(idx, "/a/b/cde"), "partial");
  EXPECT_EQ(match(idx, "/a/b/c"), "long");
  EXPECT_EQ(match(idx, "/a/x"), "short");
  EXPECT_EQ(match(idx, "/zzz"), "root");
  EXPECT_EQ(match(idx, "/a/"), "short");  // "/a/*" matches an empty rest
  EXPECT_EQ(match(idx, "/a"), "root");    // but not "/a" itself
}

TEST(RouteIndex, PrefixWithoutSlashMatchesInsideSegment) {
  RouteIndex idx = index_of({rule("files", {"/file*"})});
  EXPECT_EQ(match(idx, "/file"), "files");
  EXPECT_EQ(match(idx, "/files/x"), "files");
  EXPECT_EQ(match(idx, "/fil"), "-");
}

TEST(RouteIndex, ParamSegments) {
  RouteIndex idx = index_of({rule("profile", {"/user/:id/profile"}), rule("user", {"/user/:id"}),
                             rule("any", {"/user/:id/*"})});
  EXPECT_EQ(match(idx, "/user/42"), "user");
  EXPECT_EQ(match(idx, "/user/42/profile"), "profile");
  EXPECT_EQ(match(idx, "/user/42/photos/1"), "any");
  EXPECT_EQ(match(idx, "/user/"), "-");  // a parameter needs a non-empty segment
  EXPECT_EQ(match(idx, "/user//profile"), "-");
}

TEST(RouteIndex, ParamBeatsPrefixOfSameLiteralLength) {
  RouteIndex idx = index_of({rule("prefix", {"/user/*"}), rule("param", {"/user/:id"})});
  EXPECT_EQ(match(idx, "/user/7"), "param");
  EXPECT_EQ(match(idx, "/user/7/x"), "prefix");
}

// A parameter's name is not a literal character: renaming it changes nothing, and priority
// decides between patterns that differ only in parameter names.
TEST(RouteIndex, ParameterNamesDoNotCountAsLiteralCharacters) {
  for (const char* name : {":id", ":an_identifier_longer_than_the_other"}) {
    RouteIndex idx = index_of({rule("generic", {"/v1/:collection_name/:item"}),
                               rule("profile", {std::string("/v1/") + name + "/profile"})});
    EXPECT_EQ(match(idx, "/v1/42/profile"), "profile") << name;
  }
  RouteIndex idx = index_of({rule("by_id", {"/v1/:id"}, {}, 10), rule("by_name", {"/v1/:name"})});
  EXPECT_EQ(match(idx, "/v1/42"), "by_id");
}

TEST(RouteIndex, PriorityBreaksTiesForTheSameUri) {
  RouteIndex idx = index_of({rule("low", {"/p/*"}, {}, 1), rule("high", {"/p/*"}, {}, 10),
                             rule("first", {"/q"}), rule("second", {"/q"})});
  EXPECT_EQ(match(idx, "/p/x"), "high");
  EXPECT_EQ(match(idx, "/q"), "first");  // equal priority: the earlier route
}

TEST(RouteIndex, RoutesOfOneEtcdTransactionKeepTheirOrder) {
  // Routes put in one etcd transaction share a create revision (their order): the one that
  // came first (the store lists them by id) wins, however many there are.
  std::vector<RouteRule> rules;
  for (int i = 0; i < 40; ++i) {
    rules.push_back(rule("exact" + std::to_string(100 + i), {"/same"}));
    rules.back().order = 7;
    rules.push_back(rule("prefix" + std::to_string(100 + i), {"/pre/*"}));
    rules.back().order = 7;
  }
  RouteIndex idx = index_of(std::move(rules));
  EXPECT_EQ(match(idx, "/same"), "exact100");
  EXPECT_EQ(match(idx, "/pre/x"), "prefix100");
}

TEST(RouteIndex, PriorityDoesNotBeatAMoreSpecificUri) {
  RouteIndex idx =
      index_of({rule("broad", {"/api/*"}, {}, 100), rule("narrow", {"/api/v1/*"}, {}, 0)});
  EXPECT_EQ(match(idx, "/api/v1/x"), "narrow");
}

TEST(RouteIndex, HostSpecificityComesFirst) {
  RouteIndex idx = index_of({rule("any", {"/login"}), rule("wild", {"/*"}, {"*.example.com"}),
                             rule("deep", {"/*"}, {"*.api.example.com"}),
                             rule("exact", {"/*"}, {"api.example.com"})});
  EXPECT_EQ(match(idx, "/login", "api.example.com"), "exact");
  EXPECT_EQ(match(idx, "/login", "www.example.com"), "wild");
  EXPECT_EQ(match(idx, "/login", "v1.api.example.com"), "deep");
  EXPECT_EQ(match(idx, "/login", "example.com"), "any");  // "*.x" needs a subdomain
  EXPECT_EQ(match(idx, "/login", "other.org"), "any");
  EXPECT_EQ(match(idx, "/x", "API.Example.com:8080"), "exact");  // case and port ignored
}

TEST(RouteIndex, FallsBackToLessSpecificHostWhenUriMisses) {
  RouteIndex idx = index_of({rule("hosted", {"/only"}, {"a.com"}), rule("generic", {"/*"})});
  EXPECT_EQ(match(idx, "/other", "a.com"), "generic");
  EXPECT_EQ(match(idx, "/only", "a.com"), "hosted");
}

TEST(RouteIndex, MethodsAndRemoteAddrsSkipToTheNextCandidate) {
  RouteRule post = rule("post", {"/m"});
  post.methods = method_bit("POST");
  RouteRule internal = rule("internal", {"/m"}, {}, 5);
  Cidr c;
  ASSERT_TRUE(Cidr::parse("10.0.0.0/8", c));
  internal.remote_addrs.push_back(c);
  RouteIndex idx = index_of({post, internal, rule("fallback", {"/*"})});
  EXPECT_EQ(match(idx, "/m", "", "POST"), "post");
  EXPECT_EQ(match(idx, "/m", "", "GET"), "fallback");
  EXPECT_EQ(match(idx, "/m", "", "GET", "10.1.2.3"), "internal");
  EXPECT_EQ(match(idx, "/m", "", "POST", "10.1.2.3"), "internal");  // higher priority
}

TEST(RouteIndex, DisabledRoutesNeverMatch) {
  RouteRule off = rule("off", {"/x"});
  off.enabled = false;
  RouteIndex idx = index_of({off});
  EXPECT_EQ(match(idx, "/x"), "-");
}

TEST(RouteIndex, ManyRoutes) {
  std::vector<RouteRule> rules;
  for (int i = 0; i < 10000; ++i) {
    rules.push_back(rule("e" + std::to_string(i), {"/exact/" + std::to_string(i)}));
    rules.push_back(rule("p" + std::to_string(i), {"/prefix/" + std::to_string(i) + "/*"}));
    rules.push_back(
        rule("h" + std::to_string(i), {"/*"}, {"h" + std::to_string(i) + ".example.com"}));
  }
  RouteIndex idx = index_of(std::move(rules));
  EXPECT_EQ(match(idx, "/exact/9999"), "e9999");
  EXPECT_EQ(match(idx, "/prefix/123/x/y"), "p123");
  EXPECT_EQ(match(idx, "/any", "h77.example.com"), "h77");
  EXPECT_EQ(match(idx, "/nothing"), "-");
}

TEST(CidrTest, V4AndV6) {
  Cidr c;
  ASSERT_TRUE(Cidr::parse("192.168.1.0/24", c));
  EXPECT_TRUE(c.contains(address_bytes("192.168.1.77")));
  EXPECT_FALSE(c.contains(address_bytes("192.168.2.1")));
  ASSERT_TRUE(Cidr::parse("2001:db8::/32", c));
  EXPECT_TRUE(c.contains(address_bytes("2001:db8::1")));
  EXPECT_FALSE(c.contains(address_bytes("2001:db9::1")));
  ASSERT_TRUE(Cidr::parse("10.0.0.1", c));
  EXPECT_TRUE(c.contains(address_bytes("10.0.0.1")));
  EXPECT_FALSE(c.contains(address_bytes("10.0.0.2")));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/33", c));
  EXPECT_FALSE(Cidr::parse("nonsense", c));
}

TEST(RouteExplain, NamesTheWinnerAndNearMisses) {
  RouteRule post = rule("post-only", {"/e"});
  post.methods = method_bit("POST");
  post.method_names = {"POST"};
  RouteIndex idx = index_of({post, rule("other-uri", {"/zzz"}), rule("catch-all", {"/*"})});
  MatchInput in;
  in.method = "GET";
  in.path = "/e";
  auto e = explain(idx, in);
  ASSERT_NE(e.winner, RouteIndex::kNoMatch);
  std::string text = format_explanation(idx, e);
  EXPECT_NE(text.find("match: route catch-all"), std::string::npos) << text;
  EXPECT_NE(text.find("route post-only: method GET not in [POST]"), std::string::npos) << text;
  EXPECT_NE(text.find("route other-uri: uri \"/e\" does not match [/zzz]"), std::string::npos)
      << text;
}
