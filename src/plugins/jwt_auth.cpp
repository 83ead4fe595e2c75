// jwt-auth (APISIX priority 2510, rewrite): a JWT in the Authorization header (or `jwt` query
// argument or cookie) names its consumer by the `key` claim and is verified with that
// consumer's secret or public key (src/plugins/auth/jwt.hpp).
#include "core/log.hpp"
#include "http/balancer_key.hpp"
#include "plugins/auth/jwt.hpp"
#include "plugins/consumers.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

Step unauthorized(Context& ctx, std::string_view message) {
  ctx.respond_message(401, message);
  return Step::Respond;
}
using namespace auth;

struct JwtCredential final : Credential {
  JwtConsumerConfig conf;
};

class JwtAuth final : public Plugin {
 public:
  JwtAuthConfig conf;

  Step rewrite(Context& ctx) const override {
    enum class From { Header, Query, Cookie } from = From::Header;
    std::string_view token = strip_bearer(ctx.header(conf.header));
    if (token.empty()) {
      token = http::query_arg(ctx.req->query, conf.query);
      from = From::Query;
    }
    if (token.empty()) {
      token = http::cookie_value(ctx.header("cookie"), conf.cookie);
      from = From::Cookie;
    }
    if (token.empty()) return unauthorized(ctx, kJwtMissingToken);
    JwtError error;
    auto parsed = parse_jwt(token, error);
    if (!parsed) {
      log::debug("jwt-auth: " + error.reason);
      return unauthorized(ctx, kJwtInvalid);
    }
    auto key = parsed->string_claim(conf.key_claim_name);
    if (!key) return unauthorized(ctx, kJwtMissingKey);
    ConsumerTable::Found found =
        ctx.consumers ? ctx.consumers->find("jwt-auth", *key) : ConsumerTable::Found{};
    if (!found.consumer) return unauthorized(ctx, kJwtUnknownKey);
    const auto& cred = static_cast<const JwtCredential&>(*found.credential);
    if (auto bad = verify_jwt(*parsed, *cred.conf.verify_key, ctx.now_ms / 1000,
                              cred.conf.lifetime_grace_period)) {
      log::debug("jwt-auth: " + bad->reason);
      return unauthorized(ctx, bad->client_message());
    }
    ctx.consumer = found.consumer;
    if (conf.hide_credentials) {
      if (from == From::Header)
        ctx.upstream.headers.push_back({HeaderEdit::Op::Remove, conf.header, ""});
      else if (from == From::Query)
        ctx.drop_upstream_arg(conf.query);
      else
        ctx.drop_upstream_cookie(conf.cookie);
    }
    return Step::Continue;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto parsed = parse_jwt_auth_config(conf, path, errors);
  if (!parsed) return nullptr;
  auto p = std::make_shared<JwtAuth>();
  p->conf = std::move(*parsed);
  return p;
}

std::shared_ptr<const Credential> consumer_credential(const json& conf, const std::string& path,
                                                      Errors& errors) {
  auto parsed = parse_jwt_consumer_config(conf, path, errors);
  if (!parsed) return nullptr;
  auto c = std::make_shared<JwtCredential>();
  c->lookup_key = parsed->key;
  c->conf = std::move(*parsed);
  return c;
}

}  // namespace

const PluginType& jwt_auth_plugin() {
  static const PluginType type{"jwt-auth", 2510, &create, &consumer_credential};
  return type;
}

}  // namespace portico::plugins
