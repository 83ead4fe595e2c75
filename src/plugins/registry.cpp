#include "plugins/registry.hpp"

#include <algorithm>

namespace portico::plugins {

#define PORTICO_PLUGIN(fn) const PluginType& fn##_plugin();
#include "plugins/all_plugins.inc"
#undef PORTICO_PLUGIN

const std::vector<const PluginType*>& all_plugin_types() {
  static const std::vector<const PluginType*> types = [] {
    std::vector<const PluginType*> v{
#define PORTICO_PLUGIN(fn) &fn##_plugin(),
#include "plugins/all_plugins.inc"
#undef PORTICO_PLUGIN
    };
    std::sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->priority > b->priority; });
    return v;
  }();
  return types;
}

const PluginType* find_plugin_type(std::string_view name) {
  for (const PluginType* t : all_plugin_types())
    if (t->name == name) return t;
  return nullptr;
}

}  // namespace portico::plugins
