// The table of plugin_metadata objects by plugin name (plugin_metadata.hpp), declared apart so
// that the request's Context and the snapshot can name it without the config headers.
#pragma once

#include <map>
#include <memory>
#include <string>

namespace portico::plugins {

struct PluginMetadata;
using MetadataTable = std::map<std::string, std::shared_ptr<const PluginMetadata>, std::less<>>;

}  // namespace portico::plugins
