// Long-lived state tables by scope ("routes/r1#limit-req"): kept while some plugin instance
// holds them, so a config change that keeps the scope keeps the state. `args` construct the
// table when there is none yet (file-logger's writer takes its path).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace portico::plugins {

template <class Table, class... Args>
std::shared_ptr<Table> scoped_table(const std::string& scope, const Args&... args) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<Table>> tables;
  std::lock_guard lock(mutex);
  auto& slot = tables[scope];
  auto table = slot.lock();
  if (!table) {
    table = std::make_shared<Table>(args...);
    slot = table;
  }
  std::erase_if(tables, [](const auto& kv) { return kv.second.expired(); });
  return table;
}

}  // namespace portico::plugins
