#include "plugins/waf/uri_blocker.hpp"

#include <gtest/gtest.h>

using nlohmann::json;
using portico::config::Errors;
using portico::plugins::waf::UriBlocker;

namespace {

std::shared_ptr<const UriBlocker> compile(const std::string& conf,
                                          std::string* errors_out = nullptr) {
  Errors errors;
  auto blocker = UriBlocker::compile(json::parse(conf), "plugins.uri-blocker", errors);
  if (errors_out)
    *errors_out = errors.to_string();
  else
    EXPECT_TRUE(errors.empty()) << errors.to_string();
  return blocker;
}

std::string errors_of(const std::string& conf) {
  std::string errors;
  EXPECT_FALSE(compile(conf, &errors));
  return errors;
}

}  // namespace

TEST(UriBlocker, MatchesTheRawUriIncludingQueryUnanchored) {
  auto b = compile(R"({"block_rules": ["root.exe", "root.m+"]})");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->blocks("/root.exe?a=a"));
  EXPECT_TRUE(b->blocks("/x/rootXmmm"));
  EXPECT_TRUE(b->blocks("/ok?file=root.exe"));  // the query is part of request_uri
  EXPECT_FALSE(b->blocks("/root%2Eexe"));       // like APISIX: matched as received, not decoded
  EXPECT_FALSE(b->blocks("/ROOT.EXE"));         // case-sensitive by default
  EXPECT_FALSE(b->blocks("/index.html"));
  EXPECT_EQ(b->rejected_code(), 403);
  EXPECT_EQ(b->rejected_body(), "");
}

TEST(UriBlocker, CaseInsensitiveCodeAndMessage) {
  auto b = compile(
      R"({"block_rules": ["^/admin"], "case_insensitive": true, "rejected_code": 451,
          "rejected_msg": "access is not allowed"})");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->blocks("/ADMIN/users"));
  EXPECT_FALSE(b->blocks("/public/admin"));  // ^ anchors at the start of the URI
  EXPECT_EQ(b->rejected_code(), 451);
  EXPECT_EQ(b->rejected_body(), R"({"error_msg":"access is not allowed"})");
}

TEST(UriBlocker, EmptyMatchingRuleBlocksEverythingAsUnderPcre) {
  auto b = compile(R"({"block_rules": ["x*"]})");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->blocks("/anything"));
}

TEST(UriBlocker, SchemaErrorsNameTheirField) {
  EXPECT_EQ(errors_of("{}"), "plugins.uri-blocker.block_rules: is required\n");
  EXPECT_EQ(errors_of(R"({"block_rules": []})"),
            "plugins.uri-blocker.block_rules: must be a non-empty list of regexes\n");
  EXPECT_EQ(errors_of(R"({"block_rules": ["a", "", "a", 3], "rejected_code": 100,
                          "rejected_msg": "", "extra": 1})"),
            "plugins.uri-blocker.rejected_code: must be 200..599\n"
            "plugins.uri-blocker.rejected_msg: must not be empty\n"
            "plugins.uri-blocker.block_rules[1]: must be a regex of 1..4096 characters\n"
            "plugins.uri-blocker.block_rules[2]: duplicate rule\n"
            "plugins.uri-blocker.block_rules[3]: must be a regex of 1..4096 characters\n"
            "plugins.uri-blocker.extra: unknown field\n");
  const std::string bad = errors_of(R"({"block_rules": ["ok", "a(b"]})");
  EXPECT_EQ(bad.rfind("plugins.uri-blocker.block_rules[1]: ", 0), 0u) << bad;
  EXPECT_NE(bad.find("parenthesis"), std::string::npos) << bad;
}
