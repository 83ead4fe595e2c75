// tlv-bridge's long-polling requests over HTTP (docs/bridge.md "Long polling"): which operation
// a request asks for, and getting it served on the worker that owns the session, whichever
// worker the request landed on.
#pragma once

#include <memory>

#include "core/asio.hpp"
#include "plugins/plugin.hpp"
#include "plugins/tlv_bridge/bridge_config.hpp"

namespace portico::plugins {

// The header that carries a session id ("new" to open one): a header, not the URL, so the id (a
// bearer secret) never reaches access logs.
inline constexpr std::string_view kSessionHeader = "X-Tlv-Session";

// Serves one long-polling request; the answer is left in ctx.reply.
Task<> run_long_polling(std::shared_ptr<const TlvBridgeConfig> config, Takeover& io, Context& ctx);

}  // namespace portico::plugins
