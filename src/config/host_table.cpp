#include "config/host_table.hpp"

#include <algorithm>

#include "core/deadline.hpp"

namespace portico::config {

std::vector<asio::ip::address> usable_addresses(const asio::ip::tcp::resolver::results_type& r) {
  std::vector<asio::ip::address> out;
  for (const auto& entry : r) {
    asio::ip::address a = entry.endpoint().address();
    if (out.empty() || a.is_v6() == out.front().is_v6()) out.push_back(a);
  }
  // Sorted before the cut: DNS servers rotate the order of their answers, which changes nothing
  // (and a cut before sorting would keep another subset each time).
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() > HostTable::kMaxAddresses) out.resize(HostTable::kMaxAddresses);
  return out;
}

HostTable::Entry HostTable::lookup(const std::string& name) {
  {
    std::lock_guard lock(mutex_);
    looked_up_ms_[name] = steady_now_ms();
    auto it = entries_.find(name);
    if (it != entries_.end() && !it->second.addresses.empty()) return it->second;
  }
  std::string error;
  std::vector<asio::ip::address> found = resolve_host(name, error);
  std::lock_guard lock(mutex_);
  auto [it, inserted] = entries_.try_emplace(name);
  record(it->second, inserted, std::move(found), error);
  return it->second;
}

std::vector<asio::ip::address> resolve_host(const std::string& name, std::string& error) {
  asio::io_context ctx;
  asio::ip::tcp::resolver resolver(ctx);
  error_code ec;
  auto results = resolver.resolve(name, "", ec);
  if (ec) {
    error = ec.message();
    return {};
  }
  auto found = usable_addresses(results);
  if (found.empty()) error = "no address";
  return found;
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
  return record(it->second, inserted, std::move(found), error);
}

bool HostTable::record(Entry& e, bool inserted, std::vector<asio::ip::address> found,
                       const std::string& error) {
  if (inserted) e.version = next_version_++;
  const bool failed = !error.empty() || found.empty();
  e.error = failed ? (error.empty() ? "no address" : error) : "";
  if (failed || found == e.addresses) return false;
  e.addresses = std::move(found);
  if (!inserted) e.version = next_version_++;
  return true;
}

void HostTable::keep_only(const std::set<std::string>& used) {
  std::lock_guard lock(mutex_);
  const int64_t now = steady_now_ms();
  auto lately = [&](const std::string& name) {
    auto it = looked_up_ms_.find(name);
    return it != looked_up_ms_.end() && now - it->second < kLookupGraceMs;
  };
  std::erase_if(entries_,
                [&](const auto& kv) { return !used.count(kv.first) && !lately(kv.first); });
  // (by age, not by the entries: a lookup may be resolving a name it has not entered yet)
  std::erase_if(looked_up_ms_, [&](const auto& kv) { return now - kv.second >= kLookupGraceMs; });
}

HostTable& host_table() {
  static HostTable table;
  return table;
}

}  // namespace portico::config
