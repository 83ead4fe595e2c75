#include "stream/stream_plugins.hpp"

namespace portico::stream {

bool StreamPlugins::admits(const std::array<uint8_t, 16>& client) const {
  return !ip_restriction || ips.allows(client);
}

std::shared_ptr<const StreamPlugins> parse_stream_plugins(const config::json& plugins,
                                                          const std::string& route_id,
                                                          const std::string& path,
                                                          config::Errors& errors) {
  if (!plugins.is_object()) {
    errors.add(path, "must be an object");
    return nullptr;
  }
  if (plugins.empty()) return nullptr;
  auto p = std::make_shared<StreamPlugins>();
  size_t before = errors.size();
  for (auto it = plugins.begin(); it != plugins.end(); ++it) {
    std::string field = path + "." + it.key();
    config::ObjectReader r(it.value(), field, errors);
    r.ignore("_meta");
    if (it.key() == "ip-restriction") {
      p->ip_restriction = true;
      p->ips = plugins::read_ip_lists(r);
    } else if (it.key() == "limit-conn") {
      p->limit_conn = true;
      if (!r.has("conn")) r.error("conn", "is required (an integer > 0)");
      p->conn = r.integer("conn", 1, 1000000000).value_or(1);
      if (!r.has("burst")) r.error("burst", "is required (an integer >= 0)");
      p->burst = r.integer("burst", 0, 1000000000).value_or(0);
      std::string key = r.string_or("key", "remote_addr");
      if (key != "remote_addr" && key != "server_addr")
        r.error("key", "must be remote_addr or server_addr");
      p->key_is_server_addr = key == "server_addr";
      std::string type = r.string_or("key_type", "var");
      if (type != "var") r.error("key_type", "must be var on stream routes");
      // Connections past conn (within burst) wait before their upstream is connected; without
      // default_conn_delay (APISIX requires it) they are admitted at once.
      p->delay = plugins::ConnDelay::read(r, false);
      r.ignore("rejected_code");
      r.ignore("allow_degradation");
    } else {
      errors.add(field, "unknown stream plugin (stream routes run ip-restriction and limit-conn)");
      continue;
    }
    r.finish();
  }
  if (errors.size() != before) return nullptr;
  if (p->limit_conn) p->counts = plugins::conn_counts("stream_routes/" + route_id + "#limit-conn");
  return p;
}

}  // namespace portico::stream
