// request-id (APISIX priority 12015): every request carries an id, in a header to the upstream
// and back to the client, and in the access log. An id the client (or a proxy in front) sent is
// kept, so one id follows a request across layers.
#include "plugins/context.hpp"
#include "plugins/header_config.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

class RequestId final : public Plugin {
 public:
  std::string header_name = "X-Request-Id";
  bool include_in_response = true;

  Step rewrite(Context& ctx) const override {
    // A global rule's request-id already chose the id: a route's instance keeps it.
    if (!ctx.request_id.empty()) {
      ctx.upstream.headers.push_back({HeaderEdit::Op::Set, header_name, ctx.request_id});
      return Step::Continue;
    }
    std::string_view sent = ctx.header(header_name);
    if (!sent.empty() && sent.size() <= 256 && valid_header_value(sent))
      ctx.request_id.assign(sent);
    else
      ctx.request_id = make_request_id();
    ctx.upstream.headers.push_back({HeaderEdit::Op::Set, header_name, ctx.request_id});
    return Step::Continue;
  }

  void header_filter(Context& ctx) const override {
    if (include_in_response && !ctx.request_id.empty())
      ctx.response_headers.push_back({HeaderEdit::Op::Set, header_name, ctx.request_id});
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<RequestId>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  p->header_name = r.string_or("header_name", "X-Request-Id");
  if (!valid_header_name(p->header_name)) r.error("header_name", "is not a valid header name");
  p->include_in_response = r.boolean_or("include_in_response", true);
  std::string algorithm = r.string_or("algorithm", "uuid");
  if (algorithm != "uuid") r.error("algorithm", "only \"uuid\" is supported");
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& request_id_plugin() {
  static const PluginType type{"request-id", 12015, &create};
  return type;
}

}  // namespace portico::plugins
