// The WAF's built-in rule sets, by name (`rulesets: ["php-injection"]`). Patterns are Vectorscan
// regexes matched against decoded text (see normalizer.hpp), caseless unless said otherwise.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portico::plugins::waf {

struct BuiltinRule {
  std::string id;  // "php-eval"; unique across all sets
  std::string pattern;
  bool caseless = true;
  std::vector<std::string> more_patterns = {};  // more forms reported as this rule
};

// nullptr when no set has that name.
const std::vector<BuiltinRule>* find_ruleset(std::string_view name);
// For error messages: "php-injection".
std::string ruleset_names();

}  // namespace portico::plugins::waf
