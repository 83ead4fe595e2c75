#include "admin/redaction.hpp"

namespace portico::admin {
namespace {

// Plugin fields that hold credentials, at any depth of a plugin's config (limit-count's
// redis_password, an edge function's nested secrets).
bool is_secret_field(const std::string& name) {
  return name == "key" || name == "keys" || name == "private_key" || name == "token" ||
         name == "client_secret" || name == "secret_key" || name.ends_with("password") ||
         name.ends_with("secret");
}

void redact_plugin_values(config::json& v) {
  if (v.is_object()) {
    for (auto& [field, inner] : v.items()) {
      if (is_secret_field(field))
        inner = kRedacted;
      else
        redact_plugin_values(inner);
    }
  } else if (v.is_array()) {
    for (auto& inner : v) redact_plugin_values(inner);
  }
}

// An upstream's tls.client_key, wherever an upstream sits: the object itself, inline in a
// route, service or stream route, or in a TLV sub-route.
void redact_client_keys(config::json& v) {
  if (v.is_object()) {
    for (auto& [field, inner] : v.items()) {
      if (field == "client_key")
        inner = kRedacted;
      else
        redact_client_keys(inner);
    }
  } else if (v.is_array()) {
    for (auto& inner : v) redact_client_keys(inner);
  }
}

}  // namespace

config::json redact_secrets(config::Kind kind, config::json value) {
  if (!value.is_object()) return value;
  if (kind == config::Kind::Ssls)
    for (const char* field : {"key", "keys"})
      if (value.contains(field)) value[field] = kRedacted;
  redact_client_keys(value);
  if (value.contains("plugins")) {
    config::json& plugins = value["plugins"];
    if (plugins.is_object())
      for (auto& [name, conf] : plugins.items()) redact_plugin_values(conf);
  }
  return value;
}

}  // namespace portico::admin
