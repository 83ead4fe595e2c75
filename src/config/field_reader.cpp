#include "config/field_reader.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

namespace portico::config {

std::string Errors::to_string() const {
  std::string out;
  for (const auto& e : list_) {
    out += e.path.empty() ? e.message : e.path + ": " + e.message;
    out += '\n';
  }
  return out;
}

namespace {
// Splits "10ms" into number 10 and unit "ms".
bool split_number_unit(const std::string& s, double& number, std::string& unit) {
  const char* b = s.data();
  const char* e = b + s.size();
  auto [p, ec] = std::from_chars(b, e, number);
  if (ec != std::errc() || p == b) return false;
  unit.assign(p, e);
  return true;
}
}  // namespace

std::optional<double> parse_duration(const json& v) {
  if (v.is_number()) return v.get<double>();
  if (!v.is_string()) return std::nullopt;
  double n;
  std::string unit;
  if (!split_number_unit(v.get<std::string>(), n, unit)) return std::nullopt;
  if (unit.empty() || unit == "s") return n;
  if (unit == "ms") return n / 1000.0;
  if (unit == "m") return n * 60.0;
  if (unit == "h") return n * 3600.0;
  return std::nullopt;
}

std::optional<int64_t> parse_size(const json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (!v.is_string()) return std::nullopt;
  double n;
  std::string unit;
  if (!split_number_unit(v.get<std::string>(), n, unit) || n < 0) return std::nullopt;
  double mult = 1;
  if (unit == "k" || unit == "K")
    mult = 1024.0;
  else if (unit == "m" || unit == "M")
    mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "G")
    mult = 1024.0 * 1024 * 1024;
  else if (!unit.empty())
    return std::nullopt;
  return static_cast<int64_t>(n * mult);
}

ObjectReader::ObjectReader(const json& value, std::string path, Errors& errors)
    : path_(std::move(path)), errors_(errors) {
  if (value.is_object())
    object_ = &value;
  else
    errors_.add(path_, "must be an object");
}

bool ObjectReader::has(std::string_view key) const {
  if (!object_) return false;
  auto it = object_->find(key);
  return it != object_->end() && !it->is_null();
}

std::string ObjectReader::child_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

void ObjectReader::error(std::string_view key, std::string message) {
  errors_.add(child_path(key), std::move(message));
}

const json* ObjectReader::raw(std::string_view key) {
  if (!object_) return nullptr;
  auto it = object_->find(key);
  if (it == object_->end()) return nullptr;
  seen_.push_back(it.key());
  return it->is_null() ? nullptr : &*it;
}

std::optional<std::string> ObjectReader::string(std::string_view key) {
  const json* v = raw(key);
  if (!v) return std::nullopt;
  if (!v->is_string()) {
    error(key, "must be a string");
    return std::nullopt;
  }
  return v->get<std::string>();
}

std::string ObjectReader::string_or(std::string_view key, std::string fallback) {
  auto v = string(key);
  return v ? *v : std::move(fallback);
}

std::optional<int64_t> ObjectReader::integer(std::string_view key, int64_t min, int64_t max) {
  const json* v = raw(key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) {
    error(key, "must be an integer");
    return std::nullopt;
  }
  int64_t n = v->get<int64_t>();
  if (n < min || n > max) {
    error(key, "must be " + std::to_string(min) + ".." + std::to_string(max));
    return std::nullopt;
  }
  return n;
}

int64_t ObjectReader::integer_or(std::string_view key, int64_t fallback, int64_t min, int64_t max) {
  auto v = integer(key, min, max);
  return v ? *v : fallback;
}

bool ObjectReader::boolean_or(std::string_view key, bool fallback) {
  const json* v = raw(key);
  if (!v) return fallback;
  if (!v->is_boolean()) {
    error(key, "must be true or false");
    return fallback;
  }
  return v->get<bool>();
}

double ObjectReader::duration_or(std::string_view key, double fallback, double min, double max) {
  const json* v = raw(key);
  if (!v) return fallback;
  auto d = parse_duration(*v);
  if (!d || !std::isfinite(*d)) {
    error(key, "must be a duration in seconds or like \"10s\", \"500ms\", \"1h\"");
    return fallback;
  }
  if (*d < min || *d > max) {
    error(key,
          "must be between " + std::to_string(min) + " and " + std::to_string(max) + " seconds");
    return fallback;
  }
  return *d;
}

int64_t ObjectReader::size_or(std::string_view key, int64_t fallback, int64_t min, int64_t max) {
  const json* v = raw(key);
  if (!v) return fallback;
  auto s = parse_size(*v);
  if (!s) {
    error(key, "must be a size in bytes or like \"32k\", \"1m\", \"2g\"");
    return fallback;
  }
  if (*s < min || *s > max) {
    error(key, "must be " + std::to_string(min) + ".." + std::to_string(max) + " bytes");
    return fallback;
  }
  return *s;
}

std::vector<std::string> ObjectReader::string_list(std::string_view key) {
  std::vector<std::string> out;
  const json* v = raw(key);
  if (!v) return out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
    return out;
  }
  if (!v->is_array()) {
    error(key, "must be a string or a list of strings");
    return out;
  }
  for (size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    if (!item.is_string()) {
      errors_.add(child_path(key) + "[" + std::to_string(i) + "]", "must be a string");
      continue;
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

std::optional<std::string> ObjectReader::id(std::string_view key) {
  const json* v = raw(key);
  if (!v) return std::nullopt;
  if (v->is_number_unsigned()) return std::to_string(v->get<uint64_t>());  // (past INT64_MAX too)
  if (v->is_number_integer() && v->get<int64_t>() >= 0) return std::to_string(v->get<int64_t>());
  if (v->is_string() && !v->get<std::string>().empty()) {
    const auto& s = v->get_ref<const std::string&>();
    if (s.size() > 64) {
      error(key, "must be at most 64 characters");
      return std::nullopt;
    }
    for (char c : s) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
        error(key, "must contain only letters, digits, '-', '_' and '.'");
        return std::nullopt;
      }
    }
    return s;
  }
  error(key, "must be a non-empty string or a non-negative integer");
  return std::nullopt;
}

void ObjectReader::finish() {
  if (!object_) return;
  for (auto it = object_->begin(); it != object_->end(); ++it) {
    if (std::find(seen_.begin(), seen_.end(), it.key()) == seen_.end())
      errors_.add(child_path(it.key()), "unknown field");
  }
}

}  // namespace portico::config
