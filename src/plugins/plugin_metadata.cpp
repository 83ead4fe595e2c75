#include "plugins/plugin_metadata.hpp"

#include "plugins/log/log_entry.hpp"
#include "plugins/registry.hpp"

namespace portico::plugins {

const PluginMetadata* find_metadata(const MetadataTable* table, std::string_view plugin) {
  if (!table) return nullptr;
  auto it = table->find(plugin);
  return it == table->end() ? nullptr : it->second.get();
}

std::shared_ptr<const PluginMetadata> validate_plugin_metadata(const config::json& value,
                                                               const std::string& path,
                                                               config::Errors& errors) {
  auto out = std::make_shared<PluginMetadata>();
  config::ObjectReader r(value, path, errors);
  if (!r.valid()) return out;
  for (auto key : {"create_time", "update_time"}) r.ignore(key);  // (the Admin API's stamps)
  std::string name = r.string_or("id", "");
  const PluginType* type = find_plugin_type(name);
  if (!type) {
    r.error("id", "must name a plugin (the metadata's plugin)");
  } else if (type->read_metadata) {
    out->settings = type->read_metadata(r);
  } else if (!type->takes_metadata) {
    r.error("id", name + " takes no plugin metadata (the loggers', opentelemetry's and " +
                      "limit-count's are supported)");
  } else if (const config::json* f = r.raw("log_format")) {
    if (!valid_log_format(*f))
      r.error("log_format",
              "must be an object of names to \"$variable\", text or objects (up to 5 levels)");
    else if (!f->empty())
      out->log_format = *f;
  }
  r.finish();
  return out;
}

}  // namespace portico::plugins
