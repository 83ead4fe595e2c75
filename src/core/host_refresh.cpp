#include "core/host_refresh.hpp"

#include <atomic>
#include <thread>

#include "config/host_table.hpp"
#include "core/log.hpp"

namespace portico {

namespace {

std::string listed(const std::vector<asio::ip::address>& addresses) {
  std::string out;
  for (const auto& a : addresses) out += (out.empty() ? "" : ", ") + a.to_string();
  return out;
}

struct Answer {
  std::vector<asio::ip::address> found;
  std::string error;
};

// getaddrinfo cannot be cancelled: it runs on a thread of its own that nothing waits for, so a
// shutdown during a DNS outage does not wait out the resolver's timeouts (Asio's resolver
// thread is joined when the io_context goes). The answer is looked for every 50 ms.
Task<Answer> resolve_aside(const std::string& name, const bool& stop) {
  struct Shared {
    std::atomic<bool> done{false};
    Answer answer;
  };
  auto shared = std::make_shared<Shared>();
  try {
    std::thread([shared, name] {
      try {
        shared->answer.found = config::resolve_host(name, shared->answer.error);
      } catch (const std::exception& e) {
        shared->answer.found.clear();
        shared->answer.error = e.what();
      }
      shared->done.store(true, std::memory_order_release);
    }).detach();
  } catch (const std::system_error& e) {
    co_return Answer{{}, std::string("cannot start a resolver thread: ") + e.what()};
  }
  Timer poll(co_await asio::this_coro::executor);
  while (!shared->done.load(std::memory_order_acquire)) {
    if (stop) co_return Answer{{}, "shutting down"};
    poll.expires_after(std::chrono::milliseconds(50));
    co_await poll.async_wait(await_ec);
  }
  co_return std::move(shared->answer);
}

}  // namespace

Task<> refresh_host_names(const config::NodeConfig& node,
                          const std::shared_ptr<const config::Snapshot>& running, const bool& stop,
                          std::function<void()> changed) {
  Timer timer(co_await asio::this_coro::executor);
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
      Answer answer = co_await resolve_aside(name, stop);
      if (stop) co_return;
      std::vector<asio::ip::address>& found = answer.found;
      const std::string& error = answer.error;
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
