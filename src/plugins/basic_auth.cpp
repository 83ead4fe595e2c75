// basic-auth (APISIX priority 2520, rewrite): the request names its consumer with HTTP Basic
// credentials (RFC 7617); the consumer's plugins then join the route's.
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>

#include "core/base64.hpp"
#include "http/http_parser.hpp"
#include "plugins/consumers.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

// Passwords are compared as SHA-256 digests, in constant time: neither the time an answer
// takes nor its length tells how much of a guess matched.
using PasswordDigest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;

PasswordDigest digest_of(std::string_view password) {
  PasswordDigest d;
  SHA256(reinterpret_cast<const unsigned char*>(password.data()), password.size(), d.data());
  return d;
}

struct Password final : Credential {
  PasswordDigest digest;
};

class BasicAuth final : public Plugin {
 public:
  bool hide_credentials = false;
  std::string challenge;  // WWW-Authenticate on every 401 (RFC 9110 11.6.1)

  Step rewrite(Context& ctx) const override {
    std::string_view header = ctx.header("authorization");
    if (header.empty()) return unauthorized(ctx, "Missing authorization in request");
    // The scheme is case-insensitive (RFC 9110 11.1); APISIX's own check is not, and this
    // accepts what it accepts.
    if (header.size() < 6 || !http::iequals(header.substr(0, 6), "basic "))
      return unauthorized(ctx, "Invalid authorization in request");
    std::string_view encoded = header.substr(6);
    while (!encoded.empty() && encoded.front() == ' ') encoded.remove_prefix(1);
    while (!encoded.empty() && encoded.back() == ' ') encoded.remove_suffix(1);
    auto decoded = base64_decode(encoded, Base64Alphabet::Standard);
    size_t colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos) return unauthorized(ctx, "Invalid authorization in request");
    // The password is everything after the first colon (RFC 7617 2: a user-id cannot hold
    // one, a password can).
    std::string_view user(decoded->data(), colon);
    std::string_view pass = std::string_view(*decoded).substr(colon + 1);
    ConsumerTable::Found found =
        ctx.consumers ? ctx.consumers->find("basic-auth", user) : ConsumerTable::Found{};
    const auto* stored = static_cast<const Password*>(found.credential);
    PasswordDigest given = digest_of(pass);
    if (!stored || CRYPTO_memcmp(stored->digest.data(), given.data(), given.size()) != 0)
      return unauthorized(ctx, "Invalid user authorization");
    ctx.consumer = found.consumer;
    if (hide_credentials)
      ctx.upstream.headers.push_back({HeaderEdit::Op::Remove, "Authorization", ""});
    return Step::Continue;
  }

 private:
  Step unauthorized(Context& ctx, std::string_view message) const {
    ctx.response_headers.push_back({HeaderEdit::Op::Set, "WWW-Authenticate", challenge});
    ctx.respond_message(401, message);
    return Step::Respond;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<BasicAuth>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  p->hide_credentials = r.boolean_or("hide_credentials", false);
  std::string realm = r.string_or("realm", "basic");
  if (realm.empty() || realm.size() > 256 || realm.find_first_of("\"\\\r\n") != std::string::npos ||
      std::any_of(realm.begin(), realm.end(), [](char c) { return c > 0 && c < ' '; }))
    r.error("realm", "must be 1..256 characters without quotes, backslashes or control characters");
  p->challenge = "Basic realm=\"" + realm + "\"";
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

std::shared_ptr<const Credential> consumer_credential(const json& conf, const std::string& path,
                                                      Errors& errors) {
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  std::string user = r.string_or("username", "");
  std::string password = r.string_or("password", "");
  if (user.empty()) r.error("username", "is required");
  if (user.find(':') != std::string::npos) r.error("username", "must not contain ':'");
  if (password.empty()) r.error("password", "is required");
  r.finish();
  if (errors.size() != before) return nullptr;
  auto c = std::make_shared<Password>();
  c->lookup_key = user;
  c->digest = digest_of(password);
  return c;
}

}  // namespace

const PluginType& basic_auth_plugin() {
  static const PluginType type{"basic-auth", 2520, &create, &consumer_credential};
  return type;
}

}  // namespace portico::plugins
