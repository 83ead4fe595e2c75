#include "core/log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <stdexcept>

namespace portico::log {
namespace {
std::mutex g_mutex;
FILE* g_out = stderr;
Level g_level = Level::Info;

const char* name(Level l) {
  switch (l) {
    case Level::Debug:
      return "debug";
    case Level::Info:
      return "info";
    case Level::Warn:
      return "warn";
    case Level::Error:
      return "error";
  }
  return "?";
}
}  // namespace

std::string one_line(std::string_view text, size_t max) {
  std::string out(text.substr(0, max));
  for (char& c : out)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) c = ' ';
  return out;
}

std::string utc_timestamp() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

void configure(const std::string& target, std::string_view level) {
  std::lock_guard lock(g_mutex);
  if (level == "debug")
    g_level = Level::Debug;
  else if (level == "warn")
    g_level = Level::Warn;
  else if (level == "error")
    g_level = Level::Error;
  else
    g_level = Level::Info;
  if (target == "-" || target.empty()) return;
  FILE* f = std::fopen(target.c_str(), "a");
  if (!f) throw std::runtime_error("cannot open error log " + target);
  std::setvbuf(f, nullptr, _IOLBF, 0);
  if (g_out != stderr) std::fclose(g_out);
  g_out = f;
}

bool enabled(Level level) { return level >= g_level; }

void write(Level level, std::string_view message) {
  if (!enabled(level)) return;
  std::string line = utc_timestamp() + " [" + name(level) + "] ";
  line.append(message);
  line.push_back('\n');
  std::lock_guard lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), g_out);
  std::fflush(g_out);
}

}  // namespace portico::log
