// Host names the gateway's own calls connect to (forward-auth's service, limit-count's Redis),
// resolved from a worker. A worker's io_context runs without locks (one thread), where Asio's
// resolver cannot work, so getaddrinfo runs on a short-lived thread of its own and the caller
// polls for the answer. Answers are kept for 30 s; past that the old one is used while a new
// lookup runs, so steady traffic never waits on DNS.
#pragma once

#include <string>
#include <vector>

#include "core/asio.hpp"

namespace portico {

struct NameLookup {
  std::vector<asio::ip::address> addresses;  // empty: see error
  std::string error;
};

// An address literal is answered at once; a name from the cache or a lookup within `timeout`.
Task<NameLookup> lookup_name(const std::string& name, double timeout);

}  // namespace portico
