// Host names in upstream nodes. A compile that meets a name for the first time resolves it
// (blocking its own thread: the compile thread, or a YAML load); after that the control thread
// resolves every name in use again each `node.dns_refresh` seconds, without blocking (Asio runs
// getaddrinfo on its resolver thread). Each name's address list carries a version: a compiled
// upstream remembers the versions it was built from (HostStamp), so when a refresh changes a
// name only the upstreams using it are compiled again; the others keep their balancer state.
//
// A name stands for every address it resolves to (of the family of the first answer: a
// "localhost" that also answers ::1 must not add a node nothing listens on), each a node with
// the name's weight, as nginx's `server name;` does. A refresh that fails keeps the addresses
// it had: a DNS outage must not take nodes away.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/asio.hpp"

namespace portico::config {

struct HostStamp {
  std::string name;
  uint64_t version = 0;
};

class HostTable {
 public:
  static constexpr size_t kMaxAddresses = 32;

  struct Entry {
    std::vector<asio::ip::address> addresses;  // empty: the name never resolved
    uint64_t version = 0;
    std::string error;  // why the last resolution failed ("" when it succeeded)
  };

  // What `name` resolves to, resolving it (blocking) when it never resolved yet (a name that
  // failed is tried again by every compile that needs it).
  Entry lookup(const std::string& name);
  // What the table holds for `name` (version 0: nothing), without resolving it.
  Entry known(const std::string& name) const;
  // Whether every stamp is its name's current version (a name no longer known is not current).
  bool current(const std::vector<HostStamp>& stamps) const;
  // Records a resolution's answer (`error` empty on success) and returns true when the name's
  // addresses changed. A failure keeps the addresses the name had, and is no change.
  bool update(const std::string& name, std::vector<asio::ip::address> found,
              const std::string& error);
  // Forgets the names not in `used` (no longer in any compiled upstream), except those a
  // compile looked up lately: its snapshot may not be running yet.
  void keep_only(const std::set<std::string>& used);

  static constexpr int64_t kLookupGraceMs = 10 * 60 * 1000;

 private:
  mutable std::mutex mutex_;
  // Records an answer; the caller holds mutex_.
  bool record(Entry& e, bool inserted, std::vector<asio::ip::address> found,
              const std::string& error);

  std::unordered_map<std::string, Entry> entries_;
  std::unordered_map<std::string, int64_t> looked_up_ms_;  // the last lookup() of each name
  uint64_t next_version_ = 1;  // one counter for all: a name forgotten and met again never
                               // gets back a version an old stamp holds
};

HostTable& host_table();

// Resolves `name` now, blocking: its addresses as HostTable keeps them, or none and `error`.
std::vector<asio::ip::address> resolve_host(const std::string& name, std::string& error);

// The addresses a resolver answered, as HostTable keeps them: the first answer's family, each
// once, at most kMaxAddresses, sorted.
std::vector<asio::ip::address> usable_addresses(const asio::ip::tcp::resolver::results_type& r);

}  // namespace portico::config
