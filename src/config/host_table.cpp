#include "config/host_table.hpp"

#include <algorithm>

namespace portico::config {

std::vector<asio::ip::address> usable_addresses(const asio::ip::tcp::resolver::results_type& r) {
  std::vector<asio::ip::address> out;
  for (const auto& entry : r) {
    asio::ip::address a = entry.endpoint().address();
    if (!out.empty() && a.is_v6() != out.front().is_v6()) continue;
    if (std::find(out.begin(), out.end(), a) != out.end()) continue;
    out.push_back(a);
    if (out.size() == HostTable::kMaxAddresses) break;
  }
  // Sorted: DNS servers rotate the order of their answers, which changes nothing.
  std::sort(out.begin(), out.end());
  return out;
}

HostTable::Entry HostTable::lookup(const std::string& name) {
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(name);
    if (it != entries_.end()) return it->second;
  }
  asio::io_context ctx;
  asio::ip::tcp::resolver resolver(ctx);
  error_code ec;
  auto results = resolver.resolve(name, "", ec);
  std::vector<asio::ip::address> found;
  if (!ec) found = usable_addresses(results);
  const std::string error = ec ? ec.message() : "";
  update(name, std::move(found), error);
  std::lock_guard lock(mutex_);
  return entries_[name];
}

HostTable::Entry HostTable::known(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  return it == entries_.end() ? Entry{} : it->second;
}

bool HostTable::current(const std::vector<HostStamp>& stamps) const {
  if (stamps.empty()) return true;
  std::lock_guard lock(mutex_);
  for (const HostStamp& s : stamps) {
    auto it = entries_.find(s.name);
    if (it == entries_.end() || it->second.version != s.version) return false;
  }
  return true;
}

bool HostTable::update(const std::string& name, std::vector<asio::ip::address> found,
                       const std::string& error) {
  std::lock_guard lock(mutex_);
  auto [it, inserted] = entries_.try_emplace(name);
  Entry& e = it->second;
  const bool failed = !error.empty() || found.empty();
  if (inserted) e.version = next_version_++;
  e.error = failed ? (error.empty() ? "no address" : error) : "";
  if (failed || found == e.addresses) return inserted;
  e.addresses = std::move(found);
  if (!inserted) e.version = next_version_++;
  return true;
}

std::vector<std::string> HostTable::names() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) out.push_back(name);
  return out;
}

void HostTable::keep_only(const std::set<std::string>& used) {
  std::lock_guard lock(mutex_);
  std::erase_if(entries_, [&](const auto& kv) { return !used.count(kv.first); });
}

HostTable& host_table() {
  static HostTable table;
  return table;
}

}  // namespace portico::config
