// tlv-bridge (Portico; priority 506 like APISIX's grpc-transcode, after auth and rate limits):
// a route's clients speak JSON over WebSocket and the route's upstream nodes are TLV backends
// (TLV.md). The gateway terminates the WebSocket and holds one TCP connection to a backend per
// session: text messages are JSON envelopes converted with the message types of a `protos`
// object, binary messages raw TLV frames. Pushes from the backend reach the browser as they come.
#include <algorithm>

#include "bridge/websocket_frames.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"
#include "plugins/tlv_bridge/http_rpc.hpp"
#include "plugins/tlv_bridge/long_polling.hpp"
#include "plugins/tlv_bridge/websocket_session.hpp"

namespace portico::plugins {
namespace {

class TlvBridge final : public Plugin, public std::enable_shared_from_this<TlvBridge> {
 public:
  TlvBridgeConfig config;

  // A browser names the page that opened a WebSocket or sent a POST; with allow_origins set, a
  // page of another origin is refused (it would ride the user's cookies). Clients that are not
  // browsers send no Origin and are not affected.
  bool origin_allowed(const Context& ctx) const {
    std::string_view origin = ctx.header("Origin");
    return config.allow_origins.empty() || origin.empty() ||
           std::find(config.allow_origins.begin(), config.allow_origins.end(), origin) !=
               config.allow_origins.end();
  }

  // A long-polling request (it names a session, or "new").
  Step access_polling(Context& ctx) const {
    if (!config.long_polling) {
      ctx.respond_error(400, "tlv-bridge: long polling is off on this route");
      return Step::Respond;
    }
    if (ctx.req->upgrade_websocket) {
      ctx.respond_error(400, "tlv-bridge: a WebSocket handshake names no polling session");
      return Step::Respond;
    }
    if (!origin_allowed(ctx)) {
      ctx.respond_error(403, "tlv-bridge: origin not allowed");
      return Step::Respond;
    }
    if (ctx.req->content_length > static_cast<int64_t>(config.max_message)) {
      ctx.respond_error(413, "tlv-bridge: the envelopes are over max_message");
      return Step::Respond;
    }
    ctx.takeover = this;
    return Step::Continue;
  }

  Step access(Context& ctx) const override {
    if (!ctx.header(kSessionHeader).empty()) return access_polling(ctx);
    if (!ctx.req->upgrade_websocket) {
      if (!config.http_rpc || ctx.req->method != "POST") {
        ctx.respond_error(400, config.http_rpc ? "tlv-bridge: expects a WebSocket upgrade or a "
                                                 "POST of one JSON envelope"
                                               : "tlv-bridge: this route takes WebSocket "
                                                 "connections (Upgrade: websocket)");
        return Step::Respond;
      }
      if (!origin_allowed(ctx)) {
        ctx.respond_error(403, "tlv-bridge: origin not allowed");
        return Step::Respond;
      }
      if (ctx.req->content_length > static_cast<int64_t>(config.max_message)) {
        ctx.respond_error(413, "tlv-bridge: the envelope is over max_message");
        return Step::Respond;
      }
      ctx.takeover = this;
      return Step::Continue;
    }
    if (ctx.req->method != "GET" || ctx.req->has_body()) {
      ctx.respond_error(400, "tlv-bridge: a WebSocket handshake is a GET without a body");
      return Step::Respond;
    }
    if (ctx.header("Sec-WebSocket-Version") != "13") {
      ctx.respond_error(400, "tlv-bridge: Sec-WebSocket-Version must be 13");
      return Step::Respond;
    }
    if (!bridge::valid_ws_key(ctx.header("Sec-WebSocket-Key"))) {
      ctx.respond_error(400, "tlv-bridge: Sec-WebSocket-Key must be base64 of 16 bytes");
      return Step::Respond;
    }
    if (!origin_allowed(ctx)) {
      ctx.respond_error(403, "tlv-bridge: origin not allowed");
      return Step::Respond;
    }
    ctx.takeover = this;
    return Step::Continue;
  }

  // The whole envelope of an RPC is read (and seen by body-phase plugins such as the WAF).
  size_t body_limit() const override {
    return config.http_rpc || config.long_polling ? config.max_message : 0;
  }

  Task<bool> take_over(Context& ctx, Takeover& io) const override {
    if (!ctx.header(kSessionHeader).empty()) {
      // Sessions outlive the request: they keep this instance (their config) alive.
      std::shared_ptr<const TlvBridgeConfig> shared(shared_from_this(), &config);
      co_await run_long_polling(std::move(shared), io, ctx);
      co_return true;
    }
    if (!ctx.req->upgrade_websocket) {
      co_await run_tlv_rpc(config, io, ctx);
      co_return true;
    }
    co_return co_await run_websocket_tlv_session(config, io,
                                                 std::string(ctx.header("Sec-WebSocket-Key")), ctx);
  }

  void check_references(CompileChecks& checks, const std::string& path,
                        Errors& errors) const override {
    auto it = checks.protos.find(config.proto_id);
    if (it == checks.protos.end()) {
      errors.add(path + ".proto_id", "unknown proto \"" + config.proto_id + "\"");
      return;
    }
    bridge::CmdTypes types;
    std::string error;
    if (!types.bind(config.types, it->second, error)) errors.add(path + ".types", error);
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope& scope, const std::string& path,
                                     Errors& errors) {
  size_t before = errors.size();
  auto p = std::make_shared<TlvBridge>();
  p->config = parse_tlv_bridge_config(conf, scope, path, errors);
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& tlv_bridge_plugin() {
  static const PluginType type{"tlv-bridge", 506, &create, nullptr, true};
  return type;
}

}  // namespace portico::plugins
