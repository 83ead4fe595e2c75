#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "plugins/auth/jwt.hpp"

using namespace portico::plugins::auth;
using portico::config::Errors;
using portico::config::json;

namespace {

constexpr int64_t kNow = 1'700'000'000;
const std::string kPath = "consumers[0].plugins.jwt-auth";

std::string pem_of(EVP_PKEY* pkey, bool private_key) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (private_key)
    PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  else
    PEM_write_bio_PUBKEY(bio, pkey);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}

struct EcPair {
  std::string public_pem, private_pem;
};
EcPair ec_pair() {
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  EcPair p{pem_of(pkey, false), pem_of(pkey, true)};
  EVP_PKEY_free(pkey);
  return p;
}

std::optional<JwtConsumerConfig> consumer(const json& conf, std::string* errors_out = nullptr) {
  Errors errors;
  auto out = parse_jwt_consumer_config(conf, kPath, errors);
  EXPECT_EQ(out.has_value(), errors.empty()) << errors.to_string();
  if (errors_out) *errors_out = errors.to_string();
  return out;
}

std::string consumer_error(const json& conf) {
  std::string errors;
  EXPECT_FALSE(consumer(conf, &errors)) << conf.dump();
  return errors;
}

bool verifies(const JwtConsumerConfig& c, const JwtKey& signer) {
  std::string error;
  auto token = sign_jwt({{"key", c.key}, {"exp", kNow + 10}}, signer, error);
  JwtError parse_error;
  auto parsed = parse_jwt(token.value_or(""), parse_error);
  return parsed && !verify_jwt(*parsed, *c.verify_key, kNow, c.lifetime_grace_period);
}

}  // namespace

TEST(JwtConsumerConfig, Hs256WithDefaults) {
  auto c = consumer({{"key", "user-key"}, {"secret", "my-secret"}});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->key, "user-key");
  EXPECT_EQ(c->algorithm, JwtAlgorithm::HS256);
  EXPECT_EQ(c->exp, 86400);
  EXPECT_EQ(c->lifetime_grace_period, 0);
  EXPECT_EQ(c->sign_key, c->verify_key);
  EXPECT_TRUE(verifies(*c, *JwtKey::hmac(JwtAlgorithm::HS256, "my-secret")));
  EXPECT_FALSE(verifies(*c, *JwtKey::hmac(JwtAlgorithm::HS256, "other")));
}

TEST(JwtConsumerConfig, Base64SecretIsDecodedFirst) {
  auto c = consumer({{"key", "k"},
                     {"secret", "c2VjcmV0LWJ5dGVz"},
                     {"base64_secret", true},
                     {"algorithm", "HS512"},
                     {"exp", 60},
                     {"lifetime_grace_period", 5}});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->exp, 60);
  EXPECT_EQ(c->lifetime_grace_period, 5);
  EXPECT_TRUE(verifies(*c, *JwtKey::hmac(JwtAlgorithm::HS512, "secret-bytes")));
  EXPECT_FALSE(verifies(*c, *JwtKey::hmac(JwtAlgorithm::HS512, "c2VjcmV0LWJ5dGVz")));
}

TEST(JwtConsumerConfig, Es256WithPublicKeyAndMatchingPrivateKey) {
  EcPair pair = ec_pair();
  auto verify_only =
      consumer({{"key", "k"}, {"algorithm", "ES256"}, {"public_key", pair.public_pem}});
  ASSERT_TRUE(verify_only);
  EXPECT_FALSE(verify_only->sign_key);
  auto both = consumer({{"key", "k"},
                        {"algorithm", "ES256"},
                        {"public_key", pair.public_pem},
                        {"private_key", pair.private_pem}});
  ASSERT_TRUE(both);
  ASSERT_TRUE(both->sign_key);
  EXPECT_TRUE(verifies(*verify_only, *both->sign_key));
}

TEST(JwtConsumerConfig, RejectsBadConfigNamingTheField) {
  EcPair pair = ec_pair();
  EcPair other = ec_pair();
  struct Case {
    json conf;
    std::string expected;
  };
  std::vector<Case> cases = {
      {{{"secret", "s"}}, kPath + ".key: is required"},
      {{{"key", ""}, {"secret", "s"}}, kPath + ".key: must not be empty"},
      {{{"key", 5}, {"secret", "s"}}, kPath + ".key: must be a string"},
      {{{"key", "k"}}, kPath + ".secret: is required for HS256"},
      {{{"key", "k"}, {"secret", "s"}, {"algorithm", "HS384"}},
       kPath + ".algorithm: must be one of HS256, HS512, RS256, ES256"},
      {{{"key", "k"}, {"secret", "s"}, {"algorithm", "none"}},
       kPath + ".algorithm: must be one of"},
      {{{"key", "k"}, {"secret", "not base64!"}, {"base64_secret", true}},
       kPath + ".secret: base64_secret required but the secret is not in base64 format"},
      {{{"key", "k"}, {"secret", "s"}, {"exp", 0}}, kPath + ".exp: must be 1.."},
      {{{"key", "k"}, {"secret", "s"}, {"lifetime_grace_period", -1}},
       kPath + ".lifetime_grace_period: must be 0.."},
      {{{"key", "k"}, {"secret", "s"}, {"secrte", "typo"}}, kPath + ".secrte: unknown field"},
      {{{"key", "k"}, {"algorithm", "RS256"}}, kPath + ".public_key: is required for RS256"},
      {{{"key", "k"}, {"algorithm", "RS256"}, {"public_key", "garbage"}},
       kPath + ".public_key: not a PEM public key or certificate"},
      {{{"key", "k"}, {"algorithm", "RS256"}, {"public_key", pair.public_pem}},
       kPath + ".public_key: RS256 needs an RSA key"},
      {{{"key", "k"},
        {"algorithm", "ES256"},
        {"public_key", pair.public_pem},
        {"private_key", other.private_pem}},
       kPath + ".private_key: does not belong to public_key"},
      {json::array(), kPath + ": must be an object"},
  };
  for (const auto& c : cases) {
    std::string errors = consumer_error(c.conf);
    EXPECT_NE(errors.find(c.expected), std::string::npos)
        << c.conf.dump() << "\nexpected: " << c.expected << "\ngot: " << errors;
  }
}

TEST(JwtAuthConfig, DefaultsFollowApisix) {
  Errors errors;
  auto c = parse_jwt_auth_config(json::object(), "routes[0].plugins.jwt-auth", errors);
  ASSERT_TRUE(c) << errors.to_string();
  EXPECT_EQ(c->header, "authorization");
  EXPECT_EQ(c->query, "jwt");
  EXPECT_EQ(c->cookie, "jwt");
  EXPECT_FALSE(c->hide_credentials);
  EXPECT_EQ(c->key_claim_name, "key");
  EXPECT_FALSE(c->store_in_ctx);

  c = parse_jwt_auth_config({{"header", "x-token"},
                             {"key_claim_name", "sub"},
                             {"hide_credentials", true},
                             {"_meta", {{"disable", false}}}},
                            "p", errors);
  ASSERT_TRUE(c) << errors.to_string();
  EXPECT_EQ(c->header, "x-token");
  EXPECT_EQ(c->key_claim_name, "sub");
  EXPECT_TRUE(c->hide_credentials);
}

TEST(JwtAuthConfig, RejectsBadFields) {
  Errors errors;
  EXPECT_FALSE(
      parse_jwt_auth_config({{"key_claim_name", ""}, {"hide_credentials", "yes"}, {"heder", "x"}},
                            "routes[0].plugins.jwt-auth", errors));
  std::string text = errors.to_string();
  EXPECT_NE(text.find("routes[0].plugins.jwt-auth.key_claim_name: must not be empty"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("routes[0].plugins.jwt-auth.hide_credentials: must be true or false"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("routes[0].plugins.jwt-auth.heder: unknown field"), std::string::npos)
      << text;
}
