#include "plugins/waf/policy.hpp"

#include <gtest/gtest.h>

using namespace portico::plugins::waf;
using nlohmann::json;
using portico::config::Errors;

namespace {

std::string errors_of(const std::string& conf) {
  Errors errors;
  auto policy = Policy::compile(json::parse(conf), "plugins.waf", errors);
  EXPECT_EQ(policy == nullptr, !errors.empty());
  return errors.to_string();
}

std::shared_ptr<const Policy> compile_ok(const std::string& conf) {
  Errors errors;
  auto policy = Policy::compile(json::parse(conf), "plugins.waf", errors);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  return policy;
}

}  // namespace

TEST(WafPolicy, EmptyConfigMeansTheBuiltInSetWithDefaults) {
  auto policy = compile_ok("{}");
  ASSERT_TRUE(policy);
  EXPECT_GE(policy->rules().size(), 50u);
  EXPECT_EQ(policy->max_body(), 64u * 1024);
  EXPECT_TRUE(policy->scans_body());
  EXPECT_TRUE(policy->scans_header("User-Agent"));
  EXPECT_TRUE(policy->scans_header("referer"));
  EXPECT_FALSE(policy->scans_header("Accept"));
}

TEST(WafPolicy, ErrorsNameTheirField) {
  EXPECT_EQ(errors_of(R"({"rulesets": ["php", "php-injection", "php-injection"]})"),
            "plugins.waf.rulesets[0]: unknown rule set (known: php-injection)\n"
            "plugins.waf.rulesets[2]: listed twice\n");
  EXPECT_EQ(errors_of(R"({"rules": [{"id": "a", "pattern": "x", "targets": ["uri", "query"]}]})"),
            "plugins.waf.rules[0].targets[1]: unknown target (known: uri, args, headers, "
            "cookies, body)\n");
  EXPECT_EQ(errors_of(R"({"rules": [{"pattern": "x", "action": "deny", "colour": 1}]})"),
            "plugins.waf.rules[0].id: is required\n"
            "plugins.waf.rules[0].action: must be block or log\n"
            "plugins.waf.rules[0].colour: unknown field\n");
  EXPECT_EQ(errors_of(R"({"max_body": -1, "mode": "audit", "headers": ["bad name"]})"),
            "plugins.waf.max_body: must be 0..16777216 bytes\n"
            "plugins.waf.headers[0]: must be a header name\n"
            "plugins.waf.mode: must be block or log\n");
  EXPECT_EQ(errors_of(R"({"oversize_body": "truncate"})"),
            "plugins.waf.oversize_body: must be reject or pass\n");
  EXPECT_EQ(errors_of(R"({"disabled_rules": ["php-nope"]})"),
            "plugins.waf.disabled_rules[0]: no rule has id \"php-nope\"\n");
  EXPECT_EQ(errors_of(R"({"rulesets": []})"),
            "plugins.waf: no rules: name rulesets or give rules\n");
}

TEST(WafPolicy, BadPatternsAreReportedWithVectorscansMessage) {
  const std::string errors = errors_of(R"({"rulesets": [], "rules": [
      {"id": "ok", "pattern": "abc"},
      {"id": "unbalanced", "pattern": "a(b"},
      {"id": "backref", "pattern": "(a)\\1"},
      {"id": "empty", "pattern": "x*"}]})");
  EXPECT_NE(errors.find("plugins.waf.rules[1].pattern: Missing close parenthesis"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("plugins.waf.rules[2].pattern: "), std::string::npos) << errors;
  EXPECT_NE(errors.find("plugins.waf.rules[3].pattern: matches empty input"), std::string::npos)
      << errors;
  EXPECT_EQ(errors.find("rules[0]"), std::string::npos) << errors;
}

TEST(WafPolicy, RuleIdsAreUniqueAcrossBuiltInAndUserRules) {
  EXPECT_EQ(errors_of(R"({"rules": [{"id": "php-eval", "pattern": "x"},
                                    {"id": 7, "pattern": "y"}, {"id": "7", "pattern": "z"}]})"),
            "plugins.waf.rules[0].id: \"php-eval\" is already used by another rule\n"
            "plugins.waf.rules[2].id: \"7\" is already used by another rule\n");
}

TEST(WafPolicy, UserRulesKeepTheirTargetsAndActions) {
  auto policy = compile_ok(R"({"rulesets": [], "max_body": "1k", "headers": ["X-Api-Key"],
      "rules": [{"id": "r1", "pattern": "secret", "targets": ["headers"], "action": "log"},
                {"id": "r2", "pattern": "Bad", "targets": ["uri", "args"], "caseless": false}]})");
  ASSERT_TRUE(policy);
  ASSERT_EQ(policy->rules().size(), 2u);
  EXPECT_EQ(policy->rules()[0].targets, uint8_t(Target::Headers));
  EXPECT_EQ(policy->rules()[0].action, Action::Log);
  EXPECT_EQ(policy->rules()[1].targets, uint8_t(Target::Uri) | uint8_t(Target::Args));
  EXPECT_FALSE(policy->rules()[1].caseless);
  EXPECT_EQ(policy->max_body(), 1024u);
  EXPECT_FALSE(policy->scans_body());  // no rule looks at the body
  EXPECT_FALSE(policy->scans(Target::Cookies));
  EXPECT_TRUE(policy->scans_header("x-api-key"));
  EXPECT_FALSE(policy->scans_header("User-Agent"));
}

TEST(WafPolicy, ZeroMaxBodyMeansNoBodyScan) {
  auto policy = compile_ok(R"({"max_body": 0})");
  ASSERT_TRUE(policy);
  EXPECT_FALSE(policy->scans_body());
}

TEST(WafPolicy, LogModeTurnsEveryRuleIntoLogOnly) {
  auto policy = compile_ok(R"({"mode": "log", "rules": [{"id": "u", "pattern": "x"}]})");
  ASSERT_TRUE(policy);
  for (const auto& rule : policy->rules()) EXPECT_EQ(rule.action, Action::Log) << rule.id;
}

TEST(WafPolicy, DisabledRulesAreLeftOut) {
  auto policy = compile_ok(R"({"disabled_rules": ["php-superglobal"]})");
  ASSERT_TRUE(policy);
  for (const auto& rule : policy->rules()) EXPECT_NE(rule.id, "php-superglobal");
}

TEST(WafPolicy, IdenticalConfigsShareOneCompiledPolicy) {
  auto a = compile_ok(R"({"rulesets": ["php-injection"], "max_body": 100})");
  auto b = compile_ok(R"({"max_body": 100, "rulesets": ["php-injection"]})");
  auto c = compile_ok(R"({"rulesets": ["php-injection"], "max_body": 101})");
  EXPECT_EQ(a.get(), b.get());
  EXPECT_NE(a.get(), c.get());
}
