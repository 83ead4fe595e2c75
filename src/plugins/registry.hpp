// Every plugin Portico knows, by name. Adding a plugin: one file under src/plugins/ defining
// `const PluginType& <name>_plugin()`, and one line in src/plugins/all_plugins.inc.
#pragma once

#include <string_view>
#include <vector>

#include "plugins/plugin.hpp"

namespace portico::plugins {

const PluginType* find_plugin_type(std::string_view name);
const std::vector<const PluginType*>& all_plugin_types();

}  // namespace portico::plugins
