// The error log: levelled lines, written synchronously (they are rare). Never put secrets here.
#pragma once

#include <string>
#include <string_view>

namespace portico::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

// "-" means stderr. Throws std::runtime_error when the file cannot be opened.
void configure(const std::string& target, std::string_view level);
bool enabled(Level level);
void write(Level level, std::string_view message);

inline void debug(std::string_view m) {
  if (enabled(Level::Debug)) write(Level::Debug, m);
}
inline void info(std::string_view m) { write(Level::Info, m); }
inline void warn(std::string_view m) { write(Level::Warn, m); }
inline void error(std::string_view m) { write(Level::Error, m); }

// "2026-11-27T11:04:47.123Z"
std::string utc_timestamp();

// `text` (at most `max` bytes of it) as part of one log line: control characters other than tab
// become spaces, so text from a request or from an edge function cannot start a forged line.
std::string one_line(std::string_view text, size_t max);

}  // namespace portico::log
