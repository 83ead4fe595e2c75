// APISIX's `uri-blocker`: refuse requests whose URI (path and query, as received, not decoded:
// APISIX's $request_uri) matches any of `block_rules`. The rules compile into one Vectorscan
// database instead of APISIX's PCRE alternation; a regex Vectorscan cannot run (backreferences,
// lookaround) is a config error naming the rule.
#pragma once

#include <hs/hs.h>

#include <memory>
#include <string>
#include <string_view>

#include "config/field_reader.hpp"
#include "plugins/waf/thread_scratch.hpp"

namespace portico::plugins::waf {

class UriBlocker {
 public:
  // {block_rules: [regex...] (required, non-empty, unique), rejected_code: 200.. (403),
  // rejected_msg: non-empty string, case_insensitive: bool (false)}. nullptr on errors.
  static std::shared_ptr<const UriBlocker> compile(const config::json& conf,
                                                   const std::string& path, config::Errors& errors);
  UriBlocker(const UriBlocker&) = delete;
  UriBlocker& operator=(const UriBlocker&) = delete;
  ~UriBlocker();

  // `request_uri`: the request target as received (origin-form path?query). True also when the
  // scan could not run (Vectorscan out of memory): fail closed.
  bool blocks(std::string_view request_uri) const;

  int rejected_code() const { return rejected_code_; }
  // APISIX's answer: {"error_msg":"<rejected_msg>"} when rejected_msg is set, else empty (the
  // gateway's own page for the status).
  const std::string& rejected_body() const { return rejected_body_; }

 private:
  UriBlocker() = default;
  hs_database_t* db_ = nullptr;
  std::shared_ptr<const ScratchPrototype> scratch_;
  int rejected_code_ = 403;
  std::string rejected_body_;
};

}  // namespace portico::plugins::waf
