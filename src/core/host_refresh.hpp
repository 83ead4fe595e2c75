// The control thread's side of config/host_table.hpp: every node.dns_refresh seconds it
// resolves the host names of the running config's nodes again, without blocking (getaddrinfo
// runs on Asio's resolver thread), and asks for a compile when one of them changed. Names no
// longer in the running config are forgotten.
#pragma once

#include <functional>
#include <memory>

#include "config/node_config.hpp"
#include "config/snapshot.hpp"
#include "core/asio.hpp"

namespace portico {

// `node` and `running` are read at every round (a reload may change them); `changed` runs on the
// control thread after a round in which a name's addresses changed. Ends when `stop` is set.
Task<> refresh_host_names(const config::NodeConfig& node,
                          const std::shared_ptr<const config::Snapshot>& running, const bool& stop,
                          std::function<void()> changed);

}  // namespace portico
