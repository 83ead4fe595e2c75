// YAML documents become JSON values first, so YAML files and (later) etcd JSON go through the
// same validation code.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace portico::config {

// Parses YAML text; throws std::runtime_error with line/column on a syntax error.
nlohmann::json yaml_to_json(const std::string& text);
nlohmann::json load_yaml_file(const std::string& path);

}  // namespace portico::config
