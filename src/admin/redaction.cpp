#include "admin/redaction.hpp"

namespace portico::admin {
namespace {

bool is_secret_field(const std::string& name) {
  return name == "password" || name == "secret" || name == "secret_key" || name == "key" ||
         name == "keys" || name == "private_key" || name == "token" || name == "client_secret";
}

void redact_plugins(config::json& plugins) {
  if (!plugins.is_object()) return;
  for (auto& [name, conf] : plugins.items())
    if (conf.is_object())
      for (auto& [field, v] : conf.items())
        if (is_secret_field(field)) v = kRedacted;
}

}  // namespace

config::json redact_secrets(config::Kind kind, config::json value) {
  if (!value.is_object()) return value;
  if (kind == config::Kind::Ssls)
    for (const char* field : {"key", "keys"})
      if (value.contains(field)) value[field] = kRedacted;
  if (value.contains("plugins")) redact_plugins(value["plugins"]);
  return value;
}

}  // namespace portico::admin
