// Consumers as authentication plugins find them: by plugin name and credential key.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/plugin_set.hpp"

namespace portico::plugins {

struct Consumer {
  std::string username;
  std::string group_id;  // its consumer group, whose plugins it takes unless it has its own
  std::shared_ptr<const PluginSet> plugins;  // credentials and the consumer's own plugins
};

// APISIX's precedence: the consumer's own plugin wins over its group's of the same name.
std::shared_ptr<const PluginSet> merge_group_plugins(const PluginSet& own, const PluginSet& group);

class ConsumerTable {
 public:
  // Indexes every credential of every consumer. Two consumers with the same credential for one
  // plugin are a config error (the request could not tell them apart).
  void add(std::shared_ptr<const Consumer> consumer, const std::string& path, Errors& errors);

  struct Found {
    const Consumer* consumer = nullptr;
    const Credential* credential = nullptr;
  };
  Found find(std::string_view plugin, std::string_view key) const;
  // The owning pointer of a consumer found here (for sessions that outlive the table).
  std::shared_ptr<const Consumer> share(const Consumer* consumer) const;
  bool empty() const { return by_key_.empty(); }

 private:
  std::vector<std::shared_ptr<const Consumer>> consumers_;
  std::map<std::string, std::map<std::string, Found, std::less<>>, std::less<>> by_key_;
};

}  // namespace portico::plugins
