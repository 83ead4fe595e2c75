// plugin_metadata objects (APISIX): a plugin's settings shared by all its instances, keyed by
// the plugin's name. The loggers take a `log_format` there (every logger instance without one of
// its own writes entries in that one); other plugins read their own fields
// (PluginType::read_metadata: opentelemetry's collector).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/field_reader.hpp"
#include "plugins/metadata_table.hpp"

namespace portico::plugins {

// A plugin's own metadata, as its read_metadata made it.
struct MetadataSettings {
  virtual ~MetadataSettings() = default;
};

struct PluginMetadata {
  std::optional<config::json> log_format;
  std::shared_ptr<const MetadataSettings> settings;  // PluginType::read_metadata's
};

// The metadata of `plugin` in `table` (either may be absent).
const PluginMetadata* find_metadata(const MetadataTable* table, std::string_view plugin);

// Checks {id: a plugin that takes metadata, log_format or the plugin's own fields}; errors
// under `path`.
std::shared_ptr<const PluginMetadata> validate_plugin_metadata(const config::json& value,
                                                               const std::string& path,
                                                               config::Errors& errors);

}  // namespace portico::plugins
