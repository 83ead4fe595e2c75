// plugin_metadata objects (APISIX): a plugin's settings shared by all its instances, keyed by
// the plugin's name. The loggers' `log_format` is what Portico's plugins take there: every
// logger instance without a log_format of its own writes entries in that one.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/field_reader.hpp"
#include "plugins/metadata_table.hpp"

namespace portico::plugins {

struct PluginMetadata {
  std::optional<config::json> log_format;
};

// The metadata of `plugin` in `table` (either may be absent).
const PluginMetadata* find_metadata(const MetadataTable* table, std::string_view plugin);

// Checks {id: a plugin that takes metadata, log_format, ...}; errors under `path`.
std::shared_ptr<const PluginMetadata> validate_plugin_metadata(const config::json& value,
                                                               const std::string& path,
                                                               config::Errors& errors);

}  // namespace portico::plugins
