#include "plugins/waf/uri_blocker.hpp"

#include <set>

namespace portico::plugins::waf {

using config::Errors;
using config::json;
using config::ObjectReader;

namespace {

// ALLOWEMPTY: under PCRE a rule like "a*" matches every URI, and APISIX then blocks everything;
// we keep that meaning rather than reject the rule.
unsigned flags_for(bool case_insensitive) {
  return HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY | (case_insensitive ? HS_FLAG_CASELESS : 0);
}

std::string check_pattern(const std::string& pattern, unsigned flags) {
  hs_expr_info_t* info = nullptr;
  hs_compile_error_t* error = nullptr;
  if (hs_expression_info(pattern.c_str(), flags, &info, &error) == HS_SUCCESS) {
    free(info);
    return "";
  }
  std::string message = error ? error->message : "invalid regex";
  hs_free_compile_error(error);
  return message;
}

int stop_at_first_match(unsigned, unsigned long long, unsigned long long, unsigned, void* found) {
  *static_cast<bool*>(found) = true;
  return 1;
}

}  // namespace

UriBlocker::~UriBlocker() { hs_free_database(db_); }

std::shared_ptr<const UriBlocker> UriBlocker::compile(const json& conf, const std::string& path,
                                                      Errors& errors) {
  const size_t errors_before = errors.size();
  ObjectReader r(conf, path, errors);
  if (!r.valid()) return nullptr;
  r.ignore("_meta");
  r.ignore("category");  // APISIX 3.x's plugin classification, informational
  std::shared_ptr<UriBlocker> blocker(new UriBlocker());
  const bool case_insensitive = r.boolean_or("case_insensitive", false);
  const unsigned flags = flags_for(case_insensitive);
  blocker->rejected_code_ = static_cast<int>(r.integer_or("rejected_code", 403, 200, 599));
  if (auto msg = r.string("rejected_msg")) {
    if (msg->empty())
      r.error("rejected_msg", "must not be empty");
    else
      blocker->rejected_body_ = json{{"error_msg", *msg}}.dump();
  }

  std::vector<std::string> rules;
  const std::string rules_path = r.child_path("block_rules");
  const json* v = r.raw("block_rules");
  if (!v) {
    r.error("block_rules", "is required");
  } else if (!v->is_array() || v->empty()) {
    // APISIX accepts [] and then joins nothing into "", which matches every URI.
    r.error("block_rules", "must be a non-empty list of regexes");
  } else {
    std::set<std::string> seen;
    for (size_t i = 0; i < v->size(); ++i) {
      const std::string item_path = rules_path + "[" + std::to_string(i) + "]";
      const json& item = (*v)[i];
      if (!item.is_string() || item.get_ref<const std::string&>().empty() ||
          item.get_ref<const std::string&>().size() > 4096) {
        errors.add(item_path, "must be a regex of 1..4096 characters");
        continue;
      }
      const std::string& rule = item.get_ref<const std::string&>();
      if (!seen.insert(rule).second) {
        errors.add(item_path, "duplicate rule");
        continue;
      }
      if (auto problem = check_pattern(rule, flags); !problem.empty()) {
        errors.add(item_path, problem);
        continue;
      }
      rules.push_back(rule);
    }
  }
  r.finish();
  if (errors.size() > errors_before) return nullptr;

  std::vector<const char*> patterns;
  std::vector<unsigned> all_flags(rules.size(), flags);
  std::vector<unsigned> ids;
  for (size_t i = 0; i < rules.size(); ++i) {
    patterns.push_back(rules[i].c_str());
    ids.push_back(static_cast<unsigned>(i));
  }
  hs_compile_error_t* error = nullptr;
  if (hs_compile_multi(patterns.data(), all_flags.data(), ids.data(),
                       static_cast<unsigned>(patterns.size()), HS_MODE_BLOCK, nullptr,
                       &blocker->db_, &error) != HS_SUCCESS) {
    const std::string where = error && error->expression >= 0
                                  ? rules_path + "[" + std::to_string(error->expression) + "]"
                                  : rules_path;
    errors.add(where, error ? error->message : "cannot compile");
    hs_free_compile_error(error);
    blocker->db_ = nullptr;
    return nullptr;
  }
  blocker->scratch_ = register_databases({blocker->db_});
  return blocker;
}

bool UriBlocker::blocks(std::string_view request_uri) const {
  hs_scratch_t* scratch = thread_scratch(*scratch_);
  if (!scratch) return true;
  bool found = false;
  const hs_error_t rc = hs_scan(db_, request_uri.data(), static_cast<unsigned>(request_uri.size()),
                                0, scratch, stop_at_first_match, &found);
  return found || (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED);
}

}  // namespace portico::plugins::waf
