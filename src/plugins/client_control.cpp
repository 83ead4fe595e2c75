// client-control (APISIX priority 22000, rewrite): the longest request body a route takes
// (`max_body_size`, nginx's client_max_body_size per route). A body announced longer is refused
// at once with 413; a chunked one as soon as it grows past the size. It can lower the node's
// client_max_body_size, not raise it: that one is checked before any plugin runs.
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

class ClientControl final : public Plugin {
 public:
  int64_t max_body_size = 0;  // 0: no limit (as nginx's 0)

  Step rewrite(Context& ctx) const override {
    if (max_body_size == 0) return Step::Continue;
    if (ctx.req->content_length > max_body_size) {
      ctx.respond_error(413, "request body too large");
      return Step::Respond;
    }
    ctx.max_body_size = max_body_size;
    return Step::Continue;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<ClientControl>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  if (const json* v = r.raw("max_body_size")) {
    if (auto size = config::parse_size(*v); size && *size >= 0)
      p->max_body_size = *size;
    else
      r.error("max_body_size", "must be a size in bytes (0: no limit), e.g. 1048576 or \"1m\"");
  }
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& client_control_plugin() {
  static const PluginType type{"client-control", 22000, &create};
  return type;
}

}  // namespace portico::plugins
