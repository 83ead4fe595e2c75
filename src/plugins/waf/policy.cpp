#include "plugins/waf/policy.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "plugins/waf/builtin_rules.hpp"

namespace portico::plugins::waf {

using config::Errors;
using config::json;
using config::ObjectReader;

namespace {

constexpr std::string_view kTargetNames[] = {"uri", "args", "headers", "cookies", "body"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string::npos;
  });
}

unsigned hs_flags(const Rule& rule) {
  // SINGLEMATCH: one report per rule per scan is all a verdict needs, and it spares callbacks.
  // Not for a rule limited to some targets: the head is scanned in one pass, and its one report
  // could fall in a part it does not cover (the same text first in the path, say), hiding the
  // match that counts.
  unsigned single = rule.targets == kAllTargets ? HS_FLAG_SINGLEMATCH : 0;
  return single | (rule.caseless ? HS_FLAG_CASELESS : 0);
}

struct Compiled {
  hs_database_t* db = nullptr;
  std::string error;
  int failed_rule = -1;  // index into rules, when the error is about one pattern
};

// One database of the rules `wanted` selects; hs ids are indexes into `rules`.
Compiled compile_database(const std::vector<Rule>& rules, bool (*wanted)(const Rule&),
                          unsigned mode) {
  std::vector<const char*> patterns;
  std::vector<unsigned> flags;
  std::vector<unsigned> ids;
  for (size_t i = 0; i < rules.size(); ++i) {
    if (!wanted(rules[i])) continue;
    patterns.push_back(rules[i].pattern.c_str());
    for (const std::string& more : rules[i].more_patterns) patterns.push_back(more.c_str());
    flags.resize(patterns.size(), hs_flags(rules[i]));
    ids.resize(patterns.size(), static_cast<unsigned>(i));
  }
  Compiled out;
  if (patterns.empty()) return out;
  hs_compile_error_t* error = nullptr;
  if (hs_compile_multi(patterns.data(), flags.data(), ids.data(),
                       static_cast<unsigned>(patterns.size()), mode, nullptr, &out.db,
                       &error) != HS_SUCCESS) {
    out.error = error ? error->message : "compile failed";
    if (error && error->expression >= 0) out.failed_rule = static_cast<int>(ids[error->expression]);
    hs_free_compile_error(error);
    out.db = nullptr;
  }
  return out;
}

// Syntax and width checks of one user pattern, so every bad pattern is reported, not only the
// first one hs_compile_multi stops at.
std::string check_pattern(const Rule& rule) {
  hs_expr_info_t* info = nullptr;
  hs_compile_error_t* error = nullptr;
  if (hs_expression_info(rule.pattern.c_str(), hs_flags(rule), &info, &error) != HS_SUCCESS) {
    std::string message = error ? error->message : "invalid pattern";
    hs_free_compile_error(error);
    return message;
  }
  const bool empty = info->min_width == 0;
  free(info);  // allocated with the misc allocator, malloc by default
  return empty ? "matches empty input, so it would match every request" : "";
}

uint8_t read_targets(ObjectReader& r) {
  const std::string path = r.child_path("targets");
  const json* v = r.raw("targets");
  if (!v) return kAllTargets;
  if (!v->is_array() || v->empty()) {
    r.errors().add(path, "must be a non-empty list of: uri, args, headers, cookies, body");
    return kAllTargets;
  }
  uint8_t bits = 0;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    auto known = item.is_string() ? std::find(std::begin(kTargetNames), std::end(kTargetNames),
                                              item.get<std::string>())
                                  : std::end(kTargetNames);
    if (known == std::end(kTargetNames)) {
      r.errors().add(path + "[" + std::to_string(i) + "]",
                     "unknown target (known: uri, args, headers, cookies, body)");
      continue;
    }
    bits |= static_cast<uint8_t>(1u << (known - std::begin(kTargetNames)));
  }
  return bits;
}

void read_rulesets(ObjectReader& r, std::vector<Rule>& rules) {
  const std::string path = r.child_path("rulesets");
  const json* v = r.raw("rulesets");
  static const json kDefault = json::array({"php-injection"});
  if (!v) v = &kDefault;  // `waf: {}` protects with the built-in set
  if (!v->is_array()) {
    r.errors().add(path, "must be a list of rule set names (" + ruleset_names() + ")");
    return;
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    const std::string item_path = path + "[" + std::to_string(i) + "]";
    const auto* set = item.is_string() ? find_ruleset(item.get<std::string>()) : nullptr;
    if (!set) {
      r.errors().add(item_path, "unknown rule set (known: " + ruleset_names() + ")");
    } else if (!seen.insert(item.get<std::string>()).second) {
      r.errors().add(item_path, "listed twice");
    } else {
      for (const auto& b : *set)
        rules.push_back(
            Rule{b.id, b.pattern, kAllTargets, Action::Block, b.caseless, -1, b.more_patterns});
    }
  }
}

void read_user_rules(ObjectReader& r, std::vector<Rule>& rules) {
  const std::string path = r.child_path("rules");
  const json* v = r.raw("rules");
  if (!v) return;
  if (!v->is_array()) {
    r.errors().add(path, "must be a list of {id, pattern, targets, action}");
    return;
  }
  for (size_t i = 0; i < v->size(); ++i) {
    ObjectReader rule_reader((*v)[i], path + "[" + std::to_string(i) + "]", r.errors());
    if (!rule_reader.valid()) continue;
    Rule rule;
    auto id = rule_reader.id("id");
    if (!id && !rule_reader.has("id")) rule_reader.error("id", "is required");
    auto pattern = rule_reader.string("pattern");
    if (!pattern && !rule_reader.has("pattern")) rule_reader.error("pattern", "is required");
    rule.targets = read_targets(rule_reader);
    const std::string action = rule_reader.string_or("action", "block");
    if (action != "block" && action != "log") rule_reader.error("action", "must be block or log");
    rule.action = action == "log" ? Action::Log : Action::Block;
    rule.caseless = rule_reader.boolean_or("caseless", true);
    rule_reader.finish();
    if (!id || !pattern) continue;
    if (std::any_of(rules.begin(), rules.end(), [&](const Rule& o) { return o.id == *id; })) {
      rule_reader.error("id", "\"" + *id + "\" is already used by another rule");
      continue;
    }
    rule.id = *id;
    rule.config_index = static_cast<int>(i);
    rule.pattern = *pattern;
    if (auto problem = check_pattern(rule); !problem.empty()) {
      rule_reader.error("pattern", problem);
      continue;
    }
    rules.push_back(std::move(rule));
  }
}

// Compiled policies by their config text; weak, so a policy no route uses goes away.
std::mutex cache_mutex;
std::map<std::string, std::weak_ptr<const Policy>, std::less<>> cache;

}  // namespace

std::string_view target_name(Target target) {
  const auto bit = static_cast<unsigned>(target);
  for (unsigned i = 0; i < std::size(kTargetNames); ++i)
    if (bit == 1u << i) return kTargetNames[i];
  return "?";
}

bool Policy::scans_header(std::string_view name) const {
  for (const auto& h : headers_) {
    if (h.size() == name.size() && std::equal(h.begin(), h.end(), name.begin(), [](char a, char b) {
          return a == std::tolower(static_cast<unsigned char>(b));
        }))
      return true;
  }
  return false;
}

Policy::~Policy() {
  hs_free_database(block_db_);
  hs_free_database(stream_db_);
}

std::shared_ptr<const Policy> Policy::compile(const json& conf, const std::string& path,
                                              Errors& errors) {
  const std::string key = conf.dump();
  std::lock_guard lock(cache_mutex);
  if (auto it = cache.find(key); it != cache.end())
    if (auto shared = it->second.lock()) return shared;

  const size_t errors_before = errors.size();
  ObjectReader r(conf, path, errors);
  if (!r.valid()) return nullptr;
  r.ignore("_meta");  // APISIX's per-plugin metadata (disable, priority) is the framework's
  std::shared_ptr<Policy> policy(new Policy());
  auto& rules = policy->rules_;
  read_rulesets(r, rules);
  read_user_rules(r, rules);
  policy->max_body_ = static_cast<size_t>(r.size_or("max_body", kDefaultMaxBody, 0, kMaxMaxBody));
  const std::string oversize = r.string_or("oversize_body", "reject");
  if (oversize != "reject" && oversize != "pass")
    r.error("oversize_body", "must be reject or pass");
  policy->reject_oversize_ = oversize == "reject";

  if (!r.has("headers")) {
    policy->headers_ = {"user-agent", "referer"};
  } else if (const json* v = r.raw("headers"); !v->is_array()) {
    r.error("headers", "must be a list of header names");
  } else {
    for (size_t i = 0; i < v->size(); ++i) {
      const json& item = (*v)[i];
      if (!item.is_string() || !is_token(item.get<std::string>()))
        errors.add(r.child_path("headers") + "[" + std::to_string(i) + "]",
                   "must be a header name");
      else
        policy->headers_.push_back(lower(item.get<std::string>()));
    }
  }

  const std::string mode = r.string_or("mode", "block");
  if (mode != "block" && mode != "log") r.error("mode", "must be block or log");
  policy->log_only_ = mode == "log";

  std::vector<std::string> disabled = r.string_list("disabled_rules");
  for (size_t i = 0; i < disabled.size(); ++i) {
    auto it = std::find_if(rules.begin(), rules.end(),
                           [&](const Rule& rule) { return rule.id == disabled[i]; });
    if (it == rules.end())
      errors.add(r.child_path("disabled_rules") + "[" + std::to_string(i) + "]",
                 "no rule has id \"" + disabled[i] + "\"");
    else
      rules.erase(it);
  }
  r.finish();
  if (errors.size() > errors_before) return nullptr;
  if (rules.empty()) {
    errors.add(path, "no rules: name rulesets or give rules");
    return nullptr;
  }

  for (Rule& rule : rules) {
    if (mode == "log") rule.action = Action::Log;
    policy->targets_ |= rule.targets;
  }
  Compiled block = compile_database(
      rules, [](const Rule&) { return true; }, HS_MODE_BLOCK);
  Compiled stream;
  if (block.db && policy->max_body_ > 0)
    stream = compile_database(
        rules, [](const Rule& rule) { return (rule.targets & uint8_t(Target::Body)) != 0; },
        HS_MODE_STREAM);
  policy->block_db_ = block.db;
  policy->stream_db_ = stream.db;
  for (const Compiled* failed : {&block, &stream}) {
    if (failed->error.empty()) continue;
    // Patterns were checked one by one above; what is left is about the set (too large) or a
    // mode (streaming), still reported against the rule Vectorscan names.
    std::string where = path;
    if (failed->failed_rule >= 0) {
      const Rule& rule = rules[failed->failed_rule];
      where = rule.config_index < 0
                  ? r.child_path("rulesets")
                  : r.child_path("rules") + "[" + std::to_string(rule.config_index) + "].pattern";
    }
    errors.add(where, failed->error);
    return nullptr;
  }
  policy->scratch_ = register_databases({policy->block_db_, policy->stream_db_});
  policy->counters_ = std::make_unique<std::atomic<uint64_t>[]>(rules.size());
  cache[key] = policy;
  // Forget configs whose policies are gone, so the cache is bounded by the live ones.
  std::erase_if(cache, [](const auto& entry) { return entry.second.expired(); });
  return policy;
}

}  // namespace portico::plugins::waf
