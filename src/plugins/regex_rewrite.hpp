// APISIX writes regex replacements the nginx way ("$1"); RE2 rewrites use "\\1".
#pragma once

#include <cctype>
#include <string>

namespace portico::plugins {

inline std::string nginx_rewrite_to_re2(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '$' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out += '\\';
      continue;
    }
    if (s[i] == '\\') out += '\\';
    out += s[i];
  }
  return out;
}

}  // namespace portico::plugins
