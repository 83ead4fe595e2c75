// key-auth (APISIX priority 2500, rewrite): the request names its consumer with a key in a
// header (default `apikey`) or query argument; the consumer's plugins then join the route's.
#include "http/balancer_key.hpp"
#include "plugins/consumers.hpp"
#include "plugins/context.hpp"
#include "plugins/header_config.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

Step unauthorized(Context& ctx, std::string_view message) {
  ctx.respond_message(401, message);
  return Step::Respond;
}

class KeyAuth final : public Plugin {
 public:
  std::string header = "apikey";
  std::string query = "apikey";
  bool hide_credentials = false;

  Step rewrite(Context& ctx) const override {
    bool from_header = true;
    std::string_view key = ctx.header(header);
    if (key.empty()) {
      key = http::query_arg(ctx.req->query, query);
      from_header = false;
    }
    if (key.empty()) return unauthorized(ctx, "Missing API key in request");
    ConsumerTable::Found found =
        ctx.consumers ? ctx.consumers->find("key-auth", key) : ConsumerTable::Found{};
    if (!found.consumer) return unauthorized(ctx, "Invalid API key in request");
    ctx.consumer = found.consumer;
    if (hide_credentials) {
      if (from_header)
        ctx.upstream.headers.push_back({HeaderEdit::Op::Remove, header, ""});
      else
        ctx.drop_upstream_arg(query);
    }
    return Step::Continue;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<KeyAuth>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  p->header = r.string_or("header", "apikey");
  p->query = r.string_or("query", "apikey");
  if (!valid_header_name(p->header)) r.error("header", "is not a valid header name");
  if (p->query.empty()) r.error("query", "must not be empty");
  p->hide_credentials = r.boolean_or("hide_credentials", false);
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

std::shared_ptr<const Credential> consumer_credential(const json& conf, const std::string& path,
                                                      Errors& errors) {
  config::ObjectReader r(conf, path, errors);
  auto key = r.string("key");
  if (!key || key->empty()) r.error("key", "is required");
  r.finish();
  if (!key || key->empty()) return nullptr;
  auto c = std::make_shared<Credential>();
  c->lookup_key = *key;
  return c;
}

}  // namespace

const PluginType& key_auth_plugin() {
  static const PluginType type{"key-auth", 2500, &create, &consumer_credential};
  return type;
}

}  // namespace portico::plugins
