#include "plugins/auth/jwt.hpp"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

using namespace portico::plugins::auth;
using portico::config::Errors;
using portico::config::json;

namespace {

constexpr int64_t kNow = 1'700'000'000;

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

struct KeyPair {
  std::string public_pem;
  std::string private_pem;
};

// Fresh keys for this run, made by OpenSSL (RSA 2048, EC P-256), once per process.
const KeyPair& rsa_keys() {
  static const KeyPair keys = [] {
    EVP_PKEY* pkey = EVP_RSA_gen(2048);
    KeyPair k{pem_of(pkey, false), pem_of(pkey, true)};
    EVP_PKEY_free(pkey);
    return k;
  }();
  return keys;
}

const KeyPair& ec_keys(int which = 0) {
  static const KeyPair keys[2] = {[] {
                                    EVP_PKEY* pkey = EVP_EC_gen("P-256");
                                    KeyPair k{pem_of(pkey, false), pem_of(pkey, true)};
                                    EVP_PKEY_free(pkey);
                                    return k;
                                  }(),
                                  [] {
                                    EVP_PKEY* pkey = EVP_EC_gen("P-256");
                                    KeyPair k{pem_of(pkey, false), pem_of(pkey, true)};
                                    EVP_PKEY_free(pkey);
                                    return k;
                                  }()};
  return keys[which];
}

std::shared_ptr<const JwtKey> public_key(JwtAlgorithm alg, const std::string& pem) {
  std::string error;
  auto key = JwtKey::public_pem(alg, pem, error);
  EXPECT_TRUE(key) << error;
  return key;
}

std::shared_ptr<const JwtKey> private_key(JwtAlgorithm alg, const std::string& pem) {
  std::string error;
  auto key = JwtKey::private_pem(alg, pem, error);
  EXPECT_TRUE(key) << error;
  return key;
}

std::string sign(const json& payload, const JwtKey& key) {
  std::string error;
  auto token = sign_jwt(payload, key, error);
  EXPECT_TRUE(token) << error;
  return token.value_or("");
}

// nullopt when the token parses and verifies; the error kind otherwise.
std::optional<JwtError::Kind> check(const std::string& text, const JwtKey& key, int64_t now = kNow,
                                    int64_t leeway = 0) {
  JwtError error;
  auto token = parse_jwt(text, error);
  if (!token) return error.kind;
  auto failure = verify_jwt(*token, key, now, leeway);
  if (failure) return failure->kind;
  return std::nullopt;
}

// Replaces part `index` (0 header, 1 payload, 2 signature) of a compact token.
std::string with_part(const std::string& token, int index, const std::string& part) {
  size_t dot1 = token.find('.');
  size_t dot2 = token.find('.', dot1 + 1);
  std::string parts[3] = {token.substr(0, dot1), token.substr(dot1 + 1, dot2 - dot1 - 1),
                          token.substr(dot2 + 1)};
  parts[index] = part;
  return parts[0] + "." + parts[1] + "." + parts[2];
}

const json kPayload = {{"key", "user-key"}, {"exp", kNow + 60}};

}  // namespace

TEST(Jwt, VerifiesAKnownHs256Token) {
  // The example token of jwt.io, signed with "your-256-bit-secret".
  const std::string token =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
      "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
      "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
  auto key = JwtKey::hmac(JwtAlgorithm::HS256, "your-256-bit-secret");
  EXPECT_EQ(check(token, *key), std::nullopt);
  EXPECT_EQ(check(token, *JwtKey::hmac(JwtAlgorithm::HS256, "another secret")),
            JwtError::Kind::BadSignature);
}

TEST(Jwt, VerifiesTheRfc7515Es256ExampleWithRawRAndS) {
  // RFC 7515 A.3: the signature is r||s (64 bytes), not DER.
  const std::string token =
      "eyJhbGciOiJFUzI1NiJ9."
      "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cn"
      "VlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
  std::string point = "\x04" + *base64url_decode("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU") +
                      *base64url_decode("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0");
  char group[] = "prime256v1";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
      OSSL_PARAM_construct_end()};
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  EVP_PKEY* pkey = nullptr;
  ASSERT_EQ(EVP_PKEY_fromdata_init(ctx), 1);
  ASSERT_EQ(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
  auto key = public_key(JwtAlgorithm::ES256, pem_of(pkey, false));
  EVP_PKEY_free(pkey);
  EVP_PKEY_CTX_free(ctx);

  EXPECT_EQ(check(token, *key, 1300819300), std::nullopt);
  EXPECT_EQ(check(token, *key, 1300819380), JwtError::Kind::Expired);
  EXPECT_EQ(check(with_part(token, 2,
                            "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8"
                            "ISlSApmWQxfKTUJqPP3-Kg6NU1A"),
                  *key, 1300819300),
            JwtError::Kind::BadSignature);
}

TEST(Jwt, SignsAndVerifiesEachAlgorithm) {
  struct Alg {
    JwtAlgorithm alg;
    std::shared_ptr<const JwtKey> signer;
    std::shared_ptr<const JwtKey> verifier;
    size_t signature_bytes;
  };
  auto hs256 = JwtKey::hmac(JwtAlgorithm::HS256, "s3cret");
  auto hs512 = JwtKey::hmac(JwtAlgorithm::HS512, "s3cret");
  std::vector<Alg> algs = {
      {JwtAlgorithm::HS256, hs256, hs256, 32},
      {JwtAlgorithm::HS512, hs512, hs512, 64},
      {JwtAlgorithm::RS256, private_key(JwtAlgorithm::RS256, rsa_keys().private_pem),
       public_key(JwtAlgorithm::RS256, rsa_keys().public_pem), 256},
      {JwtAlgorithm::ES256, private_key(JwtAlgorithm::ES256, ec_keys().private_pem),
       public_key(JwtAlgorithm::ES256, ec_keys().public_pem), 64},
  };
  for (const auto& a : algs) {
    SCOPED_TRACE(std::string(to_string(a.alg)));
    std::string token = sign(kPayload, *a.signer);
    JwtError error;
    auto parsed = parse_jwt(token, error);
    ASSERT_TRUE(parsed) << error.reason;
    EXPECT_EQ(parsed->alg, to_string(a.alg));
    EXPECT_EQ(parsed->header["typ"], "JWT");
    EXPECT_EQ(parsed->signature.size(), a.signature_bytes);
    EXPECT_EQ(parsed->string_claim("key"), "user-key");
    EXPECT_EQ(verify_jwt(*parsed, *a.verifier, kNow), std::nullopt);
    EXPECT_EQ(check(token, *a.signer), std::nullopt);  // a private key verifies too
  }
}

TEST(Jwt, RefusesTamperedPayloadOrSignature) {
  auto hs = JwtKey::hmac(JwtAlgorithm::HS256, "s3cret");
  auto rs_pub = public_key(JwtAlgorithm::RS256, rsa_keys().public_pem);
  auto es_pub = public_key(JwtAlgorithm::ES256, ec_keys().public_pem);
  std::vector<std::pair<std::string, const JwtKey*>> tokens = {
      {sign(kPayload, *hs), hs.get()},
      {sign(kPayload, *private_key(JwtAlgorithm::RS256, rsa_keys().private_pem)), rs_pub.get()},
      {sign(kPayload, *private_key(JwtAlgorithm::ES256, ec_keys().private_pem)), es_pub.get()},
  };
  json other = kPayload;
  other["key"] = "admin-key";
  for (const auto& [token, key] : tokens) {
    SCOPED_TRACE(token);
    EXPECT_EQ(check(with_part(token, 1, base64url_encode(other.dump())), *key),
              JwtError::Kind::BadSignature);
    JwtError error;
    std::string signature = *base64url_decode(token.substr(token.rfind('.') + 1));
    signature[signature.size() / 2] ^= 0x01;
    EXPECT_EQ(check(with_part(token, 2, base64url_encode(signature)), *key),
              JwtError::Kind::BadSignature);
    EXPECT_EQ(check(with_part(token, 2, ""), *key), JwtError::Kind::BadSignature);
  }
  // Another EC key of the same curve does not verify.
  std::string es_token = tokens[2].first;
  EXPECT_EQ(check(es_token, *public_key(JwtAlgorithm::ES256, ec_keys(1).public_pem)),
            JwtError::Kind::BadSignature);
}

TEST(Jwt, TheConsumersAlgorithmDecidesNotTheTokens) {
  auto rs_pub = public_key(JwtAlgorithm::RS256, rsa_keys().public_pem);
  // The classic confusion: an HS256 token whose HMAC key is the RSA public key's PEM text.
  std::string forged = sign(kPayload, *JwtKey::hmac(JwtAlgorithm::HS256, rsa_keys().public_pem));
  EXPECT_EQ(check(forged, *rs_pub), JwtError::Kind::AlgorithmMismatch);
  // HS512 token, HS256 consumer, same secret.
  std::string hs512 = sign(kPayload, *JwtKey::hmac(JwtAlgorithm::HS512, "s3cret"));
  EXPECT_EQ(check(hs512, *JwtKey::hmac(JwtAlgorithm::HS256, "s3cret")),
            JwtError::Kind::AlgorithmMismatch);
  // An RS256 token relabelled ES256.
  std::string rs = sign(kPayload, *private_key(JwtAlgorithm::RS256, rsa_keys().private_pem));
  EXPECT_EQ(check(with_part(rs, 0, base64url_encode(R"({"alg":"ES256"})")),
                  *public_key(JwtAlgorithm::ES256, ec_keys().public_pem)),
            JwtError::Kind::BadSignature);
}

TEST(Jwt, RefusesAlgNoneWhateverTheKey) {
  std::string unsigned_token = base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." +
                               base64url_encode(kPayload.dump()) + ".";
  JwtError error;
  ASSERT_TRUE(parse_jwt(unsigned_token, error));  // well-formed, but never verified
  EXPECT_EQ(check(unsigned_token, *JwtKey::hmac(JwtAlgorithm::HS256, "")),
            JwtError::Kind::AlgorithmMismatch);
  EXPECT_EQ(check(unsigned_token, *public_key(JwtAlgorithm::RS256, rsa_keys().public_pem)),
            JwtError::Kind::AlgorithmMismatch);
  std::string none_upper = with_part(unsigned_token, 0, base64url_encode(R"({"alg":"NONE"})"));
  EXPECT_EQ(check(none_upper, *JwtKey::hmac(JwtAlgorithm::HS256, "")),
            JwtError::Kind::AlgorithmMismatch);
}

TEST(Jwt, ChecksExpAndNbfWithLeeway) {
  auto key = JwtKey::hmac(JwtAlgorithm::HS256, "s3cret");
  auto token = [&](json claims) { return sign(claims, *key); };
  EXPECT_EQ(check(token({{"exp", kNow + 1}}), *key), std::nullopt);
  EXPECT_EQ(check(token({{"exp", kNow}}), *key), JwtError::Kind::Expired);  // exp is exclusive
  EXPECT_EQ(check(token({{"exp", kNow - 30}}), *key), JwtError::Kind::Expired);
  EXPECT_EQ(check(token({{"exp", kNow - 30}}), *key, kNow, 31), std::nullopt);
  EXPECT_EQ(check(token({{"exp", kNow - 30}}), *key, kNow, 30), JwtError::Kind::Expired);
  EXPECT_EQ(check(token({{"nbf", kNow}}), *key), std::nullopt);
  EXPECT_EQ(check(token({{"nbf", kNow + 10}}), *key), JwtError::Kind::NotYetValid);
  EXPECT_EQ(check(token({{"nbf", kNow + 10}}), *key, kNow, 10), std::nullopt);
  EXPECT_EQ(check(token({{"nbf", kNow - 10}, {"exp", kNow + 10}}), *key), std::nullopt);
  EXPECT_EQ(check(token({{"exp", kNow + 0.5}}), *key), std::nullopt);  // NumericDate may be real
  EXPECT_EQ(check(token({{"key", "k"}}), *key), std::nullopt);         // both claims are optional
  EXPECT_EQ(check(token({{"exp", "tomorrow"}}), *key), JwtError::Kind::BadClaim);
  EXPECT_EQ(check(token({{"nbf", nullptr}}), *key), JwtError::Kind::BadClaim);

  JwtError error;
  auto parsed = parse_jwt(token({{"exp", 1300819380}}), error);
  ASSERT_TRUE(parsed);
  auto failure = verify_jwt(*parsed, *key, kNow);
  ASSERT_TRUE(failure);
  EXPECT_EQ(failure->reason, "'exp' claim expired at Tue, 22 Mar 2011 18:43:00 GMT");
  EXPECT_EQ(failure->client_message(), "failed to verify jwt");
}

TEST(Jwt, RefusesMalformedTokensAsInvalid) {
  auto key = JwtKey::hmac(JwtAlgorithm::HS256, "s3cret");
  std::string good = sign(kPayload, *key);
  std::string header = good.substr(0, good.find('.'));
  std::vector<std::string> malformed = {
      "",
      "abc",
      header + "." + base64url_encode(kPayload.dump()),          // two parts
      good + ".extra",                                           // four parts
      "!!!." + good.substr(good.find('.') + 1),                  // bad base64
      with_part(good, 1, "eyJrZXkiOiJ1c2VyIn0*"),                // bad base64 character
      with_part(good, 1, base64url_encode("{\"key\": ")),        // truncated JSON
      with_part(good, 1, base64url_encode("[1, 2]")),            // not an object
      with_part(good, 0, base64url_encode("not json")),          // header not JSON
      with_part(good, 0, base64url_encode(R"({"typ":"JWT"})")),  // no alg
      with_part(good, 0, base64url_encode(R"({"alg":256})")),    // alg not a string
      with_part(good, 2, "A"),                                   // impossible length
      std::string(16 * 1024, 'a') + "." + good,                  // too long
      with_part(good, 1,
                base64url_encode("{\"key\": " + std::string(2000, '[') + std::string(2000, ']') +
                                 "}")),  // nested too deeply
  };
  for (const auto& text : malformed) {
    SCOPED_TRACE(text.substr(0, 80));
    JwtError error;
    EXPECT_FALSE(parse_jwt(text, error));
    EXPECT_EQ(error.kind, JwtError::Kind::Malformed);
    EXPECT_FALSE(error.reason.empty());
    EXPECT_EQ(error.client_message(), "JWT token invalid");
  }
}

TEST(Jwt, KeyClaimMustBeAString) {
  auto key = JwtKey::hmac(JwtAlgorithm::HS256, "s3cret");
  JwtError error;
  EXPECT_EQ(parse_jwt(sign({{"key", 42}}, *key), error)->string_claim("key"), std::nullopt);
  EXPECT_EQ(parse_jwt(sign({{"sub", "x"}}, *key), error)->string_claim("key"), std::nullopt);
  EXPECT_EQ(parse_jwt(sign({{"sub", "x"}}, *key), error)->string_claim("sub"), "x");
}

TEST(Jwt, KeysMustFitTheirAlgorithm) {
  std::string error;
  EXPECT_FALSE(JwtKey::public_pem(JwtAlgorithm::ES256, rsa_keys().public_pem, error));
  EXPECT_EQ(error, "ES256 needs an EC P-256 key");
  EXPECT_FALSE(JwtKey::public_pem(JwtAlgorithm::RS256, ec_keys().public_pem, error));
  EXPECT_EQ(error, "RS256 needs an RSA key");
  EXPECT_FALSE(JwtKey::public_pem(JwtAlgorithm::RS256, "not a pem", error));
  EXPECT_FALSE(JwtKey::private_pem(JwtAlgorithm::RS256, rsa_keys().public_pem, error));
  EVP_PKEY* p384 = EVP_EC_gen("P-384");
  EXPECT_FALSE(JwtKey::public_pem(JwtAlgorithm::ES256, pem_of(p384, false), error));
  EVP_PKEY_free(p384);
  // A public key cannot sign.
  EXPECT_FALSE(sign_jwt(kPayload, *public_key(JwtAlgorithm::RS256, rsa_keys().public_pem), error));
}

TEST(Jwt, ReadsPublicKeysInPkcs1AndCertificateForm) {
  auto signer = private_key(JwtAlgorithm::RS256, rsa_keys().private_pem);
  std::string token = sign(kPayload, *signer);
  EVP_PKEY* pkey = nullptr;
  {
    BIO* bio = BIO_new_mem_buf(rsa_keys().private_pem.data(), -1);
    pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
  }
  ASSERT_TRUE(pkey);

  // "BEGIN RSA PUBLIC KEY" (PKCS#1).
  OSSL_ENCODER_CTX* ectx =
      OSSL_ENCODER_CTX_new_for_pkey(pkey, EVP_PKEY_PUBLIC_KEY, "PEM", "type-specific", nullptr);
  unsigned char* data = nullptr;
  size_t len = 0;
  ASSERT_EQ(OSSL_ENCODER_to_data(ectx, &data, &len), 1);
  std::string pkcs1(reinterpret_cast<char*>(data), len);
  OPENSSL_free(data);
  OSSL_ENCODER_CTX_free(ectx);
  ASSERT_NE(pkcs1.find("BEGIN RSA PUBLIC KEY"), std::string::npos);
  EXPECT_EQ(check(token, *public_key(JwtAlgorithm::RS256, pkcs1)), std::nullopt);

  // A self-signed certificate carrying the key.
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, pkey);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("jwt"), -1, -1, 0);
  X509_set_issuer_name(cert, X509_get_subject_name(cert));
  ASSERT_GT(X509_sign(cert, pkey, EVP_sha256()), 0);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* pem = nullptr;
  long pem_len = BIO_get_mem_data(bio, &pem);
  std::string cert_pem(pem, static_cast<size_t>(pem_len));
  BIO_free(bio);
  X509_free(cert);
  EVP_PKEY_free(pkey);
  EXPECT_EQ(check(token, *public_key(JwtAlgorithm::RS256, cert_pem)), std::nullopt);
}

TEST(Jwt, Base64HelpersRoundTrip) {
  using namespace std::string_literals;
  for (std::string s : {""s, "f"s, "fo"s, "foo"s, "foob"s, "fooba"s, "\xff\xfe\x00\x01"s}) {
    EXPECT_EQ(base64url_decode(base64url_encode(s)), s);
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  EXPECT_EQ(base64_decode("+/8="), "\xfb\xff");
  EXPECT_EQ(base64_decode("+/8"), "\xfb\xff");
  EXPECT_EQ(base64_decode("-_8"), std::nullopt);
  EXPECT_EQ(strip_bearer("Bearer abc"), "abc");
  EXPECT_EQ(strip_bearer("bearer abc"), "abc");
  EXPECT_EQ(strip_bearer("abc"), "abc");
}
