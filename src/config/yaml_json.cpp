#include "config/yaml_json.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace portico::config {
namespace {

// YAML 1.2 core schema for plain (unquoted) scalars; quoted scalars always stay strings.
nlohmann::json scalar(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;  // quoted
  if (s == "~" || s == "null" || s == "Null" || s == "NULL" || s.empty()) return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  const char* digits = (*b == '-' || *b == '+') ? b + 1 : b;
  if (digits < e && *digits >= '0' && *digits <= '9') {
    int64_t i = 0;
    auto [p, ec] = std::from_chars(*b == '+' ? b + 1 : b, e, i);
    if (ec == std::errc() && p == e) return i;
    double d = 0;
    auto [p2, ec2] = std::from_chars(*b == '+' ? b + 1 : b, e, d);
    if (ec2 == std::errc() && p2 == e) return d;
  }
  return s;
}

nlohmann::json convert(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return scalar(node);
    case YAML::NodeType::Sequence: {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& item : node) arr.push_back(convert(item));
      return arr;
    }
    case YAML::NodeType::Map: {
      nlohmann::json obj = nlohmann::json::object();
      for (const auto& kv : node) {
        std::string key = kv.first.Scalar();
        if (obj.contains(key)) {
          auto m = kv.first.Mark();
          throw std::runtime_error("line " + std::to_string(m.line + 1) + ": duplicate key '" +
                                   key + "'");
        }
        obj[key] = convert(kv.second);
      }
      return obj;
    }
  }
  return nullptr;
}

}  // namespace

nlohmann::json yaml_to_json(const std::string& text) {
  try {
    return convert(YAML::Load(text));
  } catch (const YAML::Exception& e) {
    throw std::runtime_error("YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                             ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

nlohmann::json load_yaml_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  try {
    return yaml_to_json(ss.str());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

}  // namespace portico::config
