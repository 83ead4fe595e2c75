// real-ip (APISIX priority 23000, rewrite): the client address comes from a header or argument
// set by a trusted proxy in front (X-Forwarded-For), like nginx's realip module. Everything
// after it (X-Forwarded-For/X-Real-IP to the upstream, ip-restriction, limit keys, the access
// log) sees the address it sets. Route matching on remote_addrs happens before plugins and uses
// the connection's address (or the PROXY protocol's), see docs/plugins.md.
#include <boost/asio/ip/address.hpp>

#include "config/common_fields.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"
#include "router/route_rule.hpp"

namespace portico::plugins {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "1.2.3.4", "1.2.3.4:5678", "[::1]:80" or "::1" -> the address; empty when not an address.
std::string_view address_part(std::string_view item) {
  item = trim(item);
  if (item.starts_with('[')) {
    size_t end = item.find(']');
    return end == std::string_view::npos ? std::string_view() : item.substr(1, end - 1);
  }
  size_t colon = item.find(':');
  if (colon != std::string_view::npos && item.find(':', colon + 1) == std::string_view::npos)
    return item.substr(0, colon);  // one colon: IPv4 with a port
  return item;
}

bool valid_address(std::string_view ip) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(std::string(ip), ec);
  return !ec && !ip.empty();
}

class RealIp final : public Plugin {
 public:
  std::string source;
  std::vector<router::Cidr> trusted;  // empty: any peer may set the address
  bool recursive = false;

  Step rewrite(Context& ctx) const override {
    if (!trusted.empty() && !is_trusted(ctx.client_bytes)) return Step::Continue;
    // Every line of the header: a proxy that adds an X-Forwarded-For line of its own, rather
    // than extend the client's, puts the address it saw last, behind what the client wrote.
    thread_local std::string joined;
    std::string_view value = ctx.var_list(source, joined);
    if (value.empty()) return Step::Continue;
    std::string_view chosen;
    if (!recursive) {
      // The last hop's claim (nginx real_ip_recursive off): the rightmost address.
      size_t comma = value.rfind(',');
      chosen = address_part(comma == std::string_view::npos ? value : value.substr(comma + 1));
    } else {
      // From the right, skip addresses of trusted proxies; the first other one is the client.
      // When every address is trusted, the leftmost is the client.
      while (!value.empty()) {
        size_t comma = value.rfind(',');
        std::string_view item =
            address_part(comma == std::string_view::npos ? value : value.substr(comma + 1));
        chosen = item;
        if (!valid_address(item) || !is_trusted(router::address_bytes(item))) break;
        if (comma == std::string_view::npos) break;
        value = value.substr(0, comma);
      }
    }
    if (valid_address(chosen)) ctx.set_client(chosen);
    return Step::Continue;
  }

 private:
  bool is_trusted(const std::array<uint8_t, 16>& addr) const {
    for (const auto& c : trusted)
      if (c.contains(addr)) return true;
    return false;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<RealIp>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  auto source = r.string("source");
  if (!source || source->empty())
    r.error("source", "is required (e.g. \"http_x_forwarded_for\")");
  else
    p->source = *source;
  for (const auto& t : r.string_list("trusted_addresses")) {
    router::Cidr c;
    if (!router::Cidr::parse(t, c))
      r.error("trusted_addresses", "invalid IP or CIDR \"" + t + "\"");
    else
      p->trusted.push_back(c);
  }
  p->recursive = r.boolean_or("recursive", false);
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& real_ip_plugin() {
  static const PluginType type{"real-ip", 23000, &create};
  return type;
}

}  // namespace portico::plugins
