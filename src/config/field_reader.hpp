// Validation helpers: read typed fields out of JSON objects, collecting every error with its
// field path (`routes[2].upstream.nodes[0].port: must be 1..65535`) instead of stopping at the
// first, and reporting unknown fields (a typo must not be silently ignored).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portico::config {

using nlohmann::json;

struct ConfigError {
  std::string path;
  std::string message;
};

class Errors {
 public:
  void add(std::string path, std::string message) {
    list_.push_back({std::move(path), std::move(message)});
  }
  bool empty() const { return list_.empty(); }
  size_t size() const { return list_.size(); }
  const std::vector<ConfigError>& list() const { return list_; }
  // One error per line: "path: message".
  std::string to_string() const;

 private:
  std::vector<ConfigError> list_;
};

// "10s", "500ms", "2m", "1h" or a bare number of seconds. Returns nullopt when malformed.
std::optional<double> parse_duration(const json& value);
// "32k", "1m", "2g" (powers of 1024) or a bare number of bytes. Returns nullopt when malformed.
std::optional<int64_t> parse_size(const json& value);

class ObjectReader {
 public:
  // Records "must be an object" when `value` is not one; getters then return their defaults.
  ObjectReader(const json& value, std::string path, Errors& errors);
  ObjectReader(const ObjectReader&) = delete;
  ObjectReader& operator=(const ObjectReader&) = delete;

  bool valid() const { return object_ != nullptr; }
  bool has(std::string_view key) const;
  const std::string& path() const { return path_; }
  std::string child_path(std::string_view key) const;
  Errors& errors() { return errors_; }

  // Marks `key` as known and returns its value (nullptr when absent or null).
  const json* raw(std::string_view key);
  // Accepts a field without using it (APISIX metadata like desc/labels/create_time).
  void ignore(std::string_view key) { raw(key); }

  std::optional<std::string> string(std::string_view key);
  std::string string_or(std::string_view key, std::string fallback);
  std::optional<int64_t> integer(std::string_view key, int64_t min, int64_t max);
  int64_t integer_or(std::string_view key, int64_t fallback, int64_t min, int64_t max);
  bool boolean_or(std::string_view key, bool fallback);
  double duration_or(std::string_view key, double fallback_seconds, double min, double max);
  int64_t size_or(std::string_view key, int64_t fallback_bytes, int64_t min, int64_t max);
  // A string or a list of strings, normalised to a list.
  std::vector<std::string> string_list(std::string_view key);
  // An id as APISIX allows it: a string or a non-negative integer.
  std::optional<std::string> id(std::string_view key);

  void error(std::string_view key, std::string message);
  // Reports every key no getter asked for. Call once, after reading all known fields.
  void finish();

 private:
  const json* object_ = nullptr;
  std::string path_;
  Errors& errors_;
  std::vector<std::string_view> seen_;
};

}  // namespace portico::config
