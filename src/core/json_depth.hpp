// How deeply a JSON text nests arrays and objects, found by a scan before parsing. nlohmann's
// parser is iterative, but dump() and our own converters recurse once per level: text from a
// client, an Admin API caller or etcd is refused past a sane depth instead of being parsed into
// a tree that could exhaust a thread's stack later.
#pragma once

#include <algorithm>
#include <string_view>

namespace portico {

// Configuration objects nest a few levels (vars expressions, plugin configs: well under 20).
inline constexpr int kMaxConfigJsonDepth = 64;

// The deepest nesting in `text` (JSON or not), counting no further than `limit` + 1. Brackets
// inside strings do not count.
inline int json_nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (ch == '\\')
        escaped = true;
      else if (ch == '"')
        in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) break;
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return deepest;
}

inline bool json_too_deep(std::string_view text, int limit) {
  return json_nesting_depth(text, limit) > limit;
}

}  // namespace portico
