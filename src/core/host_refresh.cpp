#include "core/host_refresh.hpp"

#include "config/host_table.hpp"
#include "core/log.hpp"

namespace portico {

namespace {

std::string listed(const std::vector<asio::ip::address>& addresses) {
  std::string out;
  for (const auto& a : addresses) out += (out.empty() ? "" : ", ") + a.to_string();
  return out;
}

}  // namespace

Task<> refresh_host_names(const config::NodeConfig& node,
                          const std::shared_ptr<const config::Snapshot>& running, const bool& stop,
                          std::function<void()> changed) {
  Timer timer(co_await asio::this_coro::executor);
  asio::ip::basic_resolver<asio::ip::tcp, Executor> resolver(co_await asio::this_coro::executor);
  config::HostTable& table = config::host_table();
  while (!stop) {
    const double every = node.dns_refresh;
    timer.expires_after(
        std::chrono::milliseconds(every > 0 ? static_cast<int64_t>(every * 1000) : 1000));
    auto [ec] = co_await timer.async_wait(await_ec);
    if (ec || stop) co_return;
    if (every <= 0 || !running) continue;
    const std::set<std::string> names = running->host_names;
    table.keep_only(names);
    bool any = false;
    for (const std::string& name : names) {
      auto [rec, results] = co_await resolver.async_resolve(name, "", await_ec);
      if (stop) co_return;
      std::vector<asio::ip::address> found;
      if (!rec) found = config::usable_addresses(results);
      const std::string error = rec ? rec.message() : found.empty() ? "no address" : "";
      const config::HostTable::Entry before = table.known(name);
      if (!table.update(name, found, error)) {
        if (!error.empty() && before.error.empty())
          log::warn("dns: cannot resolve \"" + name + "\" (" + error + "); its nodes keep " +
                    (before.addresses.empty() ? "being left out" : listed(before.addresses)));
        continue;
      }
      log::info("dns: \"" + name + "\" resolves to " + listed(found) +
                (before.addresses.empty() ? "" : " (was " + listed(before.addresses) + ")"));
      any = true;
    }
    if (any) changed();
  }
}

}  // namespace portico
