// Long-lived state tables by scope ("routes/r1#limit-req"): kept while some plugin instance
// holds them, so a config change that keeps the scope keeps the state.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace portico::plugins {

template <class Table>
std::shared_ptr<Table> scoped_table(const std::string& scope) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<Table>> tables;
  std::lock_guard lock(mutex);
  auto& slot = tables[scope];
  auto table = slot.lock();
  if (!table) {
    table = std::make_shared<Table>();
    slot = table;
  }
  std::erase_if(tables, [](const auto& kv) { return kv.second.expired(); });
  return table;
}

}  // namespace portico::plugins
