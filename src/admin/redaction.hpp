// Secrets in configuration objects (TLS private keys, plugin credentials, passwords) are shown
// as "******" wherever a reader may not need them: /v1/config, and Admin API reads by viewers.
#pragma once

#include "config/object_store.hpp"

namespace portico::admin {

inline constexpr const char* kRedacted = "******";

config::json redact_secrets(config::Kind kind, config::json value);

}  // namespace portico::admin
