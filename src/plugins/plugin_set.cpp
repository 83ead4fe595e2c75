#include "plugins/plugin_set.hpp"

#include <algorithm>

#include "plugins/consumers.hpp"
#include "plugins/registry.hpp"

namespace portico::plugins {
namespace {

bool by_priority(const PluginEntry* a, const PluginEntry* b) {
  return a->type->priority > b->type->priority;
}

// `_meta` is APISIX's per-plugin metadata; only `disable` changes behaviour here. It is taken
// out of the conf before the plugin sees it.
bool read_meta(json& conf, const std::string& path, Errors& errors) {
  if (!conf.is_object()) return false;
  auto it = conf.find("_meta");
  if (it == conf.end()) return false;
  bool disabled = false;
  config::ObjectReader meta(*it, path + "._meta", errors);
  disabled = meta.boolean_or("disable", false);
  meta.ignore("priority");  // APISIX 3.x custom priority: not supported, accepted and ignored
  meta.ignore("filter");
  meta.ignore("error_response");
  meta.finish();
  conf.erase(it);
  return disabled;
}

void add_chain_entries(Chain& chain, const std::shared_ptr<const PluginSet>& set) {
  chain.sources.push_back(set);
  for (const PluginEntry& e : set->entries) {
    if (e.disabled || !e.plugin) continue;
    chain.entries.push_back(&e);
    chain.body_limit = std::max(chain.body_limit, e.plugin->body_limit());
    chain.checks_references |= e.type->checks_references;
  }
}

}  // namespace

const PluginEntry* PluginSet::find(std::string_view name) const {
  for (const PluginEntry& e : entries)
    if (e.type->name == name) return &e;
  return nullptr;
}

std::shared_ptr<const PluginSet> compile_plugin_set(const json& plugins, const Scope& scope,
                                                    const std::string& path, Errors& errors,
                                                    bool for_consumer) {
  if (!plugins.is_object()) {
    errors.add(path, "must be an object");
    return nullptr;
  }
  size_t before = errors.size();
  auto set = std::make_shared<PluginSet>();
  for (auto it = plugins.begin(); it != plugins.end(); ++it) {
    std::string field = path + "." + it.key();
    const PluginType* type = find_plugin_type(it.key());
    if (!type) {
      errors.add(field, "unknown plugin");
      continue;
    }
    json conf = it.value().is_null() ? json::object() : it.value();
    if (!conf.is_object()) {
      errors.add(field, "must be an object");
      continue;
    }
    PluginEntry entry;
    entry.type = type;
    entry.disabled = read_meta(conf, field, errors);
    if (for_consumer && type->consumer_credential) {
      entry.credential = type->consumer_credential(conf, field, errors);
    } else {
      entry.plugin = type->create(conf, scope, field, errors);
    }
    set->entries.push_back(std::move(entry));
  }
  if (errors.size() != before) return nullptr;
  std::stable_sort(set->entries.begin(), set->entries.end(),
                   [](const PluginEntry& a, const PluginEntry& b) {
                     return a.type->priority > b.type->priority;
                   });
  return set;
}

std::shared_ptr<const Chain> merge_chain(const std::shared_ptr<const PluginSet>& service,
                                         const std::shared_ptr<const PluginSet>& plugin_config,
                                         const std::shared_ptr<const PluginSet>& route) {
  auto chain = std::make_shared<Chain>();
  // From the highest precedence down; a name already taken is skipped.
  for (const auto* set : {&route, &plugin_config, &service}) {
    if (!*set) continue;
    chain->sources.push_back(*set);
    for (const PluginEntry& e : (*set)->entries) {
      bool taken = std::any_of(chain->entries.begin(), chain->entries.end(),
                               [&](const PluginEntry* x) { return x->type == e.type; });
      if (!taken) chain->entries.push_back(&e);
    }
  }
  // Disabled entries took their name (a route disabling a service's plugin), then drop out.
  std::erase_if(chain->entries, [](const PluginEntry* e) { return e->disabled || !e->plugin; });
  for (const PluginEntry* e : chain->entries) {
    chain->body_limit = std::max(chain->body_limit, e->plugin->body_limit());
    chain->checks_references |= e->type->checks_references;
  }
  std::stable_sort(chain->entries.begin(), chain->entries.end(), by_priority);
  if (chain->entries.empty()) return nullptr;
  return chain;
}

bool check_chain_references(const Chain& chain, CompileChecks& checks, const std::string& path,
                            Errors& errors) {
  size_t before = errors.size();
  for (const PluginEntry* e : chain.entries)
    if (e->type->checks_references)
      e->plugin->check_references(checks, path + ".plugins." + std::string(e->type->name), errors);
  return errors.size() == before;
}

std::shared_ptr<const Chain> merge_global_rules(
    const std::vector<std::shared_ptr<const PluginSet>>& rules) {
  auto chain = std::make_shared<Chain>();
  for (const auto& set : rules)
    if (set) add_chain_entries(*chain, set);
  std::stable_sort(chain->entries.begin(), chain->entries.end(), by_priority);
  if (chain->entries.empty()) return nullptr;
  return chain;
}

std::shared_ptr<const PluginSet> merge_group_plugins(const PluginSet& own, const PluginSet& group) {
  auto merged = std::make_shared<PluginSet>(own);
  for (const PluginEntry& e : group.entries)
    if (!own.find(e.type->name)) merged->entries.push_back(e);
  std::stable_sort(merged->entries.begin(), merged->entries.end(),
                   [](const PluginEntry& a, const PluginEntry& b) {
                     return a.type->priority > b.type->priority;
                   });
  return merged;
}

void ConsumerTable::add(std::shared_ptr<const Consumer> consumer, const std::string& path,
                        Errors& errors) {
  if (consumer->plugins) {
    for (const PluginEntry& e : consumer->plugins->entries) {
      if (!e.credential || e.disabled) continue;
      auto& keys = by_key_[std::string(e.type->name)];
      auto [it, inserted] =
          keys.try_emplace(e.credential->lookup_key, Found{consumer.get(), e.credential.get()});
      if (!inserted)
        errors.add(path + ".plugins." + std::string(e.type->name),
                   "credential already used by consumer \"" + it->second.consumer->username + "\"");
    }
  }
  consumers_.push_back(std::move(consumer));
}

std::shared_ptr<const Consumer> ConsumerTable::share(const Consumer* consumer) const {
  for (const auto& c : consumers_)
    if (c.get() == consumer) return c;
  return nullptr;
}

ConsumerTable::Found ConsumerTable::find(std::string_view plugin, std::string_view key) const {
  auto p = by_key_.find(plugin);
  if (p == by_key_.end()) return {};
  auto k = p->second.find(key);
  return k == p->second.end() ? Found{} : k->second;
}

}  // namespace portico::plugins
