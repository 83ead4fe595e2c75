// Validation of jwt-auth's route-side and consumer-side config (APISIX 3.x schemas).
#include <openssl/evp.h>

#include <limits>

#include "plugins/auth/jwt.hpp"

namespace portico::plugins::auth {

using config::Errors;
using config::json;
using config::ObjectReader;

std::optional<JwtAuthConfig> parse_jwt_auth_config(const json& conf, const std::string& path,
                                                   Errors& errors) {
  size_t before = errors.size();
  JwtAuthConfig out;
  ObjectReader r(conf, path, errors);
  auto non_empty = [&](std::string_view key, std::string fallback) {
    std::string v = r.string_or(key, fallback);
    if (v.empty()) {
      r.error(key, "must not be empty");
      return fallback;
    }
    return v;
  };
  out.header = non_empty("header", out.header);
  out.query = non_empty("query", out.query);
  out.cookie = non_empty("cookie", out.cookie);
  out.hide_credentials = r.boolean_or("hide_credentials", false);
  out.key_claim_name = non_empty("key_claim_name", out.key_claim_name);
  out.store_in_ctx = r.boolean_or("store_in_ctx", false);
  r.ignore("_meta");  // APISIX's per-plugin metadata (disable, priority, filter)
  r.finish();
  if (errors.size() != before) return std::nullopt;
  return out;
}

std::optional<JwtConsumerConfig> parse_jwt_consumer_config(const json& conf,
                                                           const std::string& path,
                                                           Errors& errors) {
  size_t before = errors.size();
  JwtConsumerConfig out;
  ObjectReader r(conf, path, errors);
  if (!r.valid()) return std::nullopt;

  if (!r.has("key")) r.error("key", "is required");
  if (auto key = r.string("key"); key && key->empty())
    r.error("key", "must not be empty");
  else if (key)
    out.key = *key;
  std::string alg_name = r.string_or("algorithm", "HS256");
  auto alg = parse_jwt_algorithm(alg_name);
  if (!alg) r.error("algorithm", "must be one of HS256, HS512, RS256, ES256");
  out.algorithm = alg.value_or(JwtAlgorithm::HS256);
  out.exp = r.integer_or("exp", 86400, 1, std::numeric_limits<int32_t>::max());
  out.lifetime_grace_period =
      r.integer_or("lifetime_grace_period", 0, 0, std::numeric_limits<int32_t>::max());
  bool base64_secret = r.boolean_or("base64_secret", false);
  auto secret = r.string("secret");
  auto public_key = r.string("public_key");
  auto private_key = r.string("private_key");
  r.finish();
  if (!alg) return std::nullopt;

  if (out.algorithm == JwtAlgorithm::HS256 || out.algorithm == JwtAlgorithm::HS512) {
    // APISIX invents a random secret when none is given and stores it through the Admin API;
    // a config file has no such write-back, so the secret must be there.
    if (!secret || secret->empty()) {
      r.error("secret", "is required for " + alg_name);
    } else if (base64_secret) {
      auto decoded = base64_decode(*secret);
      if (!decoded || decoded->empty())
        r.error("secret", "base64_secret required but the secret is not in base64 format");
      else
        out.verify_key = JwtKey::hmac(out.algorithm, std::move(*decoded));
    } else {
      out.verify_key = JwtKey::hmac(out.algorithm, *secret);
    }
    out.sign_key = out.verify_key;
  } else {
    std::string error;
    if (!public_key) {
      r.error("public_key", "is required for " + alg_name);
    } else if (!(out.verify_key = JwtKey::public_pem(out.algorithm, *public_key, error))) {
      r.error("public_key", error);
    }
    if (private_key) {
      if (!(out.sign_key = JwtKey::private_pem(out.algorithm, *private_key, error)))
        r.error("private_key", error);
      else if (out.verify_key && EVP_PKEY_eq(out.verify_key->pkey(), out.sign_key->pkey()) != 1)
        r.error("private_key", "does not belong to public_key");
    }
  }
  if (errors.size() != before) return std::nullopt;
  return out;
}

}  // namespace portico::plugins::auth
