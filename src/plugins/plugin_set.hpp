// Plugin configs compiled into instances: the `plugins` map of one object (PluginSet), and the
// ordered list that runs for a route (Chain) after merging service, plugin config and route.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "plugins/plugin.hpp"

namespace portico::plugins {

// An authentication plugin's per-consumer config, looked up by `lookup_key` (key-auth's key,
// jwt-auth's key claim). Plugins that need more (jwt secrets) derive from it.
struct Credential {
  virtual ~Credential() = default;
  std::string lookup_key;
};

struct PluginEntry {
  const PluginType* type = nullptr;
  std::shared_ptr<const Plugin> plugin;  // null for a consumer's credential entry
  std::shared_ptr<const Credential> credential;
  bool disabled = false;  // `_meta.disable`: declared, but does not run
};

// The `plugins` map of one object, each entry validated into an instance.
struct PluginSet {
  std::vector<PluginEntry> entries;  // by priority, highest first
  const PluginEntry* find(std::string_view name) const;
};

// Validates a `plugins` object. For consumers, authentication plugins compile their
// consumer-side config into a credential. Returns null (with errors) when anything is wrong.
std::shared_ptr<const PluginSet> compile_plugin_set(const json& plugins, const Scope& scope,
                                                    const std::string& path, Errors& errors,
                                                    bool for_consumer = false);

// The plugins that run for a route, highest priority first.
struct Chain {
  std::vector<const PluginEntry*> entries;
  std::vector<std::shared_ptr<const PluginSet>> sources;  // keeps `entries` alive
  size_t body_limit = 0;                                  // largest body_limit() of the chain
  bool checks_references = false;  // some entry names other objects (Plugin::check_references)
  bool empty() const { return entries.empty(); }
};

// APISIX's precedence: a plugin in the route wins over the same plugin in its plugin config,
// which wins over the service's. Null sets are skipped; returns null when nothing runs.
std::shared_ptr<const Chain> merge_chain(const std::shared_ptr<const PluginSet>& service,
                                         const std::shared_ptr<const PluginSet>& plugin_config,
                                         const std::shared_ptr<const PluginSet>& route);

// Runs Plugin::check_references of the chain's plugins that have one (under
// "<path>.plugins.<name>"); returns whether none added an error.
bool check_chain_references(const Chain& chain, CompileChecks& checks, const std::string& path,
                            Errors& errors);

// Every global rule's plugins, in rule order; within the result, by priority.
std::shared_ptr<const Chain> merge_global_rules(
    const std::vector<std::shared_ptr<const PluginSet>>& rules);

}  // namespace portico::plugins
