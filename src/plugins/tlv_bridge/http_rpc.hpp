// tlv-bridge's HTTP RPC: a POST of one JSON envelope becomes one TLV frame to a backend, and the
// backend's reply (cmd + 1, the same seq) becomes the JSON answer. For web and server-side
// callers of request/response commands that need no session (profile, history, ...).
#pragma once

#include "plugins/plugin.hpp"
#include "plugins/tlv_bridge/bridge_config.hpp"

namespace portico::plugins {

// Always answers in ctx.reply: 200 with the reply envelope, 400 with an error envelope for a
// message the bridge refuses, 502 when no backend accepts a connection or it closes first, 504
// when no reply comes within rpc_timeout.
Task<> run_tlv_rpc(const TlvBridgeConfig& config, Takeover& io, Context& ctx);

}  // namespace portico::plugins
