// ASCII case folding for protocol tokens (header names, Cache-Control directives): locale-free,
// bytes above 0x7f left as they are.
#pragma once

#include <string>
#include <string_view>

namespace portico {

inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace portico
