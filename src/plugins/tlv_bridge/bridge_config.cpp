#include "plugins/tlv_bridge/bridge_config.hpp"

#include <algorithm>
#include <map>
#include <mutex>

#include "plugins/limit/leaky_bucket.hpp"
#include "stream/tlv_policy.hpp"

namespace portico::plugins {
namespace {

// One count per route for the life of the process, so a config change does not reset it.
std::shared_ptr<PollSessionCount> poll_session_count(const std::string& route_key) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<PollSessionCount>> counts;
  std::lock_guard lock(mutex);
  std::weak_ptr<PollSessionCount>& slot = counts[route_key];
  std::shared_ptr<PollSessionCount> count = slot.lock();
  if (!count) {
    count = std::make_shared<PollSessionCount>();
    slot = count;
  }
  return count;
}

}  // namespace

bool PollSessionCount::take(const std::string& client, int64_t most, int64_t most_per_client) {
  std::lock_guard lock(mutex_);
  int64_t& mine = per_client_[client];
  if (total_ >= most || mine >= most_per_client) {
    if (mine == 0) per_client_.erase(client);
    return false;
  }
  ++total_;
  ++mine;
  return true;
}

void PollSessionCount::give_back(const std::string& client) {
  std::lock_guard lock(mutex_);
  --total_;
  auto it = per_client_.find(client);
  if (it != per_client_.end() && --it->second <= 0) per_client_.erase(it);
}

TlvBridgeConfig parse_tlv_bridge_config(const config::json& conf, const Scope& scope,
                                        const std::string& path, config::Errors& errors) {
  TlvBridgeConfig c;
  config::ObjectReader r(conf, path, errors);
  c.proto_id = r.id("proto_id").value_or("");
  if (!r.has("proto_id") && r.valid())
    r.error("proto_id", "is required (the id of a protos object)");
  if (const config::json* framing = r.raw("framing"))
    c.framing = stream::parse_tlv_framing(*framing, r.child_path("framing"), errors);
  if (const config::json* types = r.raw("types")) {
    if (!types->is_object()) {
      r.error("types",
              "must be an object of cmd -> message type, e.g. {\"0x1001\": \"pkg.Login\"}");
    } else {
      for (const auto& [key, name] : types->items()) {
        std::string item = r.child_path("types") + "." + key;
        auto cmd = stream::read_cmd(config::json(key));
        if (!cmd)
          errors.add(item, "the key must be a command (a number or \"0x...\")");
        else if (!name.is_string() || name.get<std::string>().empty())
          errors.add(item, "must be a message type name, e.g. \"pkg.LoginRequest\"");
        else if (std::any_of(c.types.begin(), c.types.end(),
                             [&](const auto& t) { return t.first == *cmd; }))
          errors.add(item, "names cmd " + std::to_string(*cmd) + " a second time");
        else
          c.types.emplace_back(*cmd, name.get<std::string>());
      }
    }
  }
  c.idle_timeout = r.duration_or("idle_timeout", c.idle_timeout, 1, 86400);
  uint64_t status_max =
      c.framing.status.present()
          ? (c.framing.status.width >= 4 ? 0xFFFFFFFFull
                                         : (1ull << (8 * c.framing.status.width)) - 1)
          : 0xFFFFFFFFull;
  c.error_status = static_cast<uint32_t>(
      r.integer_or("error_status", c.error_status, 0, static_cast<int64_t>(status_max)));
  c.max_message = static_cast<size_t>(
      r.size_or("max_message", static_cast<int64_t>(c.max_message), 1024, 64ll * 1024 * 1024));
  c.send_proxy_protocol = r.boolean_or("send_proxy_protocol", false);
  c.allow_origins = r.string_list("allow_origins");
  c.subprotocols = r.string_list("subprotocols");
  config::json policy = config::json::object();
  for (const char* key : {"rate_limit", "commands"})
    if (const config::json* v = r.raw(key)) policy[key] = *v;
  if (!policy.empty()) {
    auto route = std::make_shared<stream::CompiledStreamRoute>();
    route->id = scope.key();
    route->tlv = stream::parse_tlv_protocol(&policy, path, errors);
    if (route->tlv->per_user.enabled())
      route->user_buckets = bucket_table(scope.key() + "#tlv-bridge");
    if (route->tlv->per_connection.enabled())
      c.rpc_client_buckets = bucket_table(scope.key() + "#tlv-bridge-rpc");
    c.policy = std::move(route);
  }
  c.http_rpc = r.boolean_or("http_rpc", c.http_rpc);
  c.rpc_timeout = r.duration_or("rpc_timeout", c.rpc_timeout, 0.001, 3600);
  c.rpc_keepalive = r.boolean_or("rpc_keepalive", c.rpc_keepalive);
  if (c.rpc_keepalive && c.send_proxy_protocol)
    r.error("rpc_keepalive",
            "cannot go with send_proxy_protocol (a PROXY header names one client "
            "per connection)");
  c.long_polling = r.boolean_or("long_polling", c.long_polling);
  c.poll_wait = r.duration_or("poll_wait", c.poll_wait, 0.1, 600);
  c.max_poll_sessions = r.integer_or("max_poll_sessions", c.max_poll_sessions, 1, 1000000);
  c.max_poll_sessions_per_client =
      r.integer_or("max_poll_sessions_per_client", c.max_poll_sessions_per_client, 1, 1000000);
  c.max_poll_memory =
      r.size_or("max_poll_memory", c.max_poll_memory, int64_t{1} << 20, int64_t{1} << 40);
  // A client waiting in a poll is not idle, but between polls it must come back in time.
  if (c.long_polling && c.poll_wait >= c.idle_timeout)
    r.error("poll_wait", "must be shorter than idle_timeout");
  c.route_key = scope.key();
  c.poll_sessions = poll_session_count(c.route_key);
  r.finish();
  return c;
}

}  // namespace portico::plugins
