#include "config/common_fields.hpp"

#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <charconv>

#include "plugins/plugin_set.hpp"

namespace portico::config {

void ignore_metadata(ObjectReader& r) {
  for (auto key : {"desc", "labels", "create_time", "update_time"}) r.ignore(key);
}

void reject_plugins(ObjectReader& r) {
  const json* plugins = r.raw("plugins");
  if (!plugins) return;
  if (!plugins->is_object()) {
    r.error("plugins", "must be an object");
    return;
  }
  for (auto it = plugins->begin(); it != plugins->end(); ++it)
    r.errors().add(r.child_path("plugins") + "." + it.key(), "unknown plugin");
}

PluginSetPtr read_plugins(ObjectReader& r, std::string_view kind, const std::string& id,
                          bool for_consumer) {
  const json* plugins = r.raw("plugins");
  if (!plugins) return nullptr;
  return plugins::compile_plugin_set(*plugins, plugins::Scope{std::string(kind), id},
                                     r.child_path("plugins"), r.errors(), for_consumer);
}

bool valid_host_chars(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  for (char c : h)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_'))
      return false;
  return true;
}

bool valid_host_pattern(std::string_view h) {
  if (h.substr(0, 2) == "*.") h.remove_prefix(2);
  return valid_host_chars(h);
}

bool valid_cidr(const std::string& s) {
  // A zone id (fe80::1%eth0) names an interface, which a client address never carries: the
  // router could not match it, and a route left without its address condition opens to all.
  if (s.find('%') != std::string::npos) return false;
  size_t slash = s.find('/');
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(s.substr(0, slash), ec);
  if (ec) return false;
  if (slash == std::string::npos) return true;
  int bits = -1;
  std::string_view b(s.data() + slash + 1, s.size() - slash - 1);
  auto [p, e] = std::from_chars(b.data(), b.data() + b.size(), bits);
  if (e != std::errc() || p != b.data() + b.size()) return false;
  return bits >= 0 && bits <= (addr.is_v4() ? 32 : 128);
}

}  // namespace portico::config
