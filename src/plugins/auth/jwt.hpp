// JWT (compact JWS) verification and signing for the jwt-auth plugin, and its APISIX-compatible
// config (route side and consumer side). Keys are parsed once; tokens are checked against the
// consumer's configured algorithm, never against the algorithm the token claims alone.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/field_reader.hpp"

typedef struct evp_pkey_st EVP_PKEY;

namespace portico::plugins::auth {

// What APISIX answers (401 {"message": ...}) at each step of jwt-auth; the detailed reason of a
// failure goes to the log only.
inline constexpr std::string_view kJwtMissingToken = "Missing JWT token in request";
inline constexpr std::string_view kJwtInvalid = "JWT token invalid";
inline constexpr std::string_view kJwtMissingKey = "missing user key in JWT token";
inline constexpr std::string_view kJwtUnknownKey = "Invalid user key in JWT token";
inline constexpr std::string_view kJwtNotVerified = "failed to verify jwt";

enum class JwtAlgorithm : uint8_t { HS256, HS512, RS256, ES256 };
std::optional<JwtAlgorithm> parse_jwt_algorithm(std::string_view name);
std::string_view to_string(JwtAlgorithm alg);

// A consumer's key, parsed once and shared immutably between workers: the HMAC secret, or an
// RSA / EC P-256 key (public to verify, private to sign; a private key also verifies).
class JwtKey {
 public:
  static std::shared_ptr<const JwtKey> hmac(JwtAlgorithm alg, std::string secret);
  // PEM "PUBLIC KEY", "RSA PUBLIC KEY" or "CERTIFICATE". Null with `error` set when the PEM does
  // not parse or the key does not fit `alg` (RSA for RS256, P-256 for ES256).
  static std::shared_ptr<const JwtKey> public_pem(JwtAlgorithm alg, std::string_view pem,
                                                  std::string& error);
  // PEM "PRIVATE KEY", "RSA PRIVATE KEY" or "EC PRIVATE KEY", for signing.
  static std::shared_ptr<const JwtKey> private_pem(JwtAlgorithm alg, std::string_view pem,
                                                   std::string& error);

  JwtAlgorithm algorithm() const { return alg_; }
  bool is_hmac() const { return alg_ == JwtAlgorithm::HS256 || alg_ == JwtAlgorithm::HS512; }
  const std::string& secret() const { return secret_; }
  EVP_PKEY* pkey() const { return pkey_.get(); }

  struct PkeyFree {
    void operator()(EVP_PKEY* p) const;
  };
  JwtKey(JwtAlgorithm alg, std::string secret, EVP_PKEY* pkey)
      : alg_(alg), secret_(std::move(secret)), pkey_(pkey) {}

 private:
  JwtAlgorithm alg_;
  std::string secret_;
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey_;
};

// Why a token was refused. `reason` is for the log; client_message() is what the client sees.
struct JwtError {
  enum class Kind { Malformed, AlgorithmMismatch, BadSignature, Expired, NotYetValid, BadClaim };
  Kind kind = Kind::Malformed;
  std::string reason;
  std::string_view client_message() const {
    return kind == Kind::Malformed ? kJwtInvalid : kJwtNotVerified;
  }
};

// A token split and decoded, not yet verified: read its key claim to find the consumer, then
// verify it with that consumer's key.
struct JwtToken {
  std::string signing_input;  // "<header>.<payload>" as sent
  std::string signature;      // decoded bytes
  std::string alg;            // the header's claim, checked against the consumer's algorithm
  config::json header;
  config::json payload;
  // A string claim (APISIX's key_claim_name, "key" by default); nullopt when absent or not a
  // string (a consumer key is a string).
  std::optional<std::string> string_claim(std::string_view name) const;
};

// Splits and decodes a compact token (base64url header.payload.signature, JSON object header
// with a string "alg", JSON object payload). Tokens longer than 16 KiB are refused.
std::optional<JwtToken> parse_jwt(std::string_view text, JwtError& error);

// Verifies the signature with `key` (the token's alg must be the key's algorithm; "none" never
// passes), then `exp` and `nbf` (seconds since the epoch) against `now`, allowing `leeway`
// seconds of clock skew. Claims are optional, as in APISIX. nullopt when the token is good.
std::optional<JwtError> verify_jwt(const JwtToken& token, const JwtKey& key, int64_t now,
                                   int64_t leeway = 0);

// Signs `payload` into a compact token with header {"alg": <key's>, "typ": "JWT"}. HS keys sign
// with the secret, RS256/ES256 need a private key. nullopt with `error` set otherwise.
std::optional<std::string> sign_jwt(const config::json& payload, const JwtKey& key,
                                    std::string& error);

std::string base64url_encode(std::string_view bytes);
// Unpadded or padded; nullopt on characters outside the alphabet.
std::optional<std::string> base64url_decode(std::string_view text);
// Standard alphabet (APISIX's base64_secret), padding optional.
std::optional<std::string> base64_decode(std::string_view text);

// The token in an Authorization-style header value, without a "Bearer "/"bearer " prefix.
std::string_view strip_bearer(std::string_view header_value);

// The route-side config of jwt-auth (APISIX 3.x schema): where the token is looked for, in this
// order (header, then query argument, then cookie), and which claim names the consumer.
struct JwtAuthConfig {
  std::string header = "authorization";
  std::string query = "jwt";
  std::string cookie = "jwt";
  bool hide_credentials = false;  // remove the token from the request sent upstream
  std::string key_claim_name = "key";
  bool store_in_ctx = false;  // keep the verified payload for later plugins
};
std::optional<JwtAuthConfig> parse_jwt_auth_config(const config::json& conf,
                                                   const std::string& path, config::Errors& errors);

// The consumer-side config: `key` is the claim value that selects the consumer.
struct JwtConsumerConfig {
  std::string key;
  JwtAlgorithm algorithm = JwtAlgorithm::HS256;
  std::shared_ptr<const JwtKey> verify_key;
  std::shared_ptr<const JwtKey> sign_key;  // HS: the secret; RS/ES: private_key, when given
  int64_t exp = 86400;                     // lifetime of tokens the gateway signs, seconds
  int64_t lifetime_grace_period = 0;       // clock leeway for exp/nbf, seconds
};
std::optional<JwtConsumerConfig> parse_jwt_consumer_config(const config::json& conf,
                                                           const std::string& path,
                                                           config::Errors& errors);

}  // namespace portico::plugins::auth
