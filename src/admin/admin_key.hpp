// First start without an Admin API key: there is no built-in default key (a well-known default
// is how APISIX admin APIs get taken over), so one is generated and saved in the config file.
#pragma once

#include <string>

namespace portico::admin {

// Generates a random key (32 hex characters), saves it under admin.keys with role admin in the
// config file at `config_path` (comments and layout kept), and returns it. When the file cannot
// be written the key still works for this run; a warning says so.
std::string generate_admin_key(const std::string& config_path);

// The config text with `key` added under admin.keys (exposed for tests).
std::string add_admin_key(const std::string& text, const std::string& key);

}  // namespace portico::admin
