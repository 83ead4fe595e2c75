// ip-restriction (APISIX priority 3000, access): allow only listed client networks
// (whitelist) or refuse listed ones (blacklist), on the address real-ip settled on.
#include "plugins/context.hpp"
#include "plugins/ip_lists.hpp"
#include "plugins/plugin.hpp"
#include "router/route_rule.hpp"

namespace portico::plugins {
namespace {

class IpRestriction final : public Plugin {
 public:
  IpLists lists;
  std::string message = "Your IP address is not allowed";
  int status = 403;

  Step access(Context& ctx) const override {
    if (lists.allows(ctx.client_bytes)) return Step::Continue;
    ctx.respond_message(status, message);
    return Step::Respond;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<IpRestriction>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  p->lists = read_ip_lists(r);
  p->message = read_message(r, p->message);
  p->status = static_cast<int>(r.integer_or("response_code", 403, 403, 404));
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& ip_restriction_plugin() {
  static const PluginType type{"ip-restriction", 3000, &create};
  return type;
}

}  // namespace portico::plugins
