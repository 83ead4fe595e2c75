// Connections accepted on node.stream_listen: matched to a stream route, then proxied as plain
// TCP or frame by frame (tlv). Callback-driven, no coroutine: an idle connection holds no
// buffer and no coroutine frame, only its sockets and a few hundred bytes of state.
#pragma once

#include "config/node_config.hpp"
#include "core/asio.hpp"

namespace portico {
class Worker;
}

namespace portico::stream {

// The Worker's connection handler for listeners with `stream` set.
void start_stream_session(Worker& worker, Socket&& socket, const config::ListenAddress& listener);

}  // namespace portico::stream
