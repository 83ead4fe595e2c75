#include "plugins/auth/jwt.hpp"

#include "core/base64.hpp"
#include "core/json_depth.hpp"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <array>
#include <cstring>
#include <ctime>

namespace portico::plugins::auth {

using config::json;

namespace {

constexpr size_t kMaxTokenBytes = 16 * 1024;
constexpr size_t kEs256Half = 32;  // P-256: r and s are 32 bytes each in a JWS signature

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
struct SigFree {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};
using EcdsaSig = std::unique_ptr<ECDSA_SIG, SigFree>;

const EVP_MD* digest_of(JwtAlgorithm alg) {
  return alg == JwtAlgorithm::HS512 ? EVP_sha512() : EVP_sha256();
}

std::string http_date(double seconds) {
  if (!(seconds >= 0 && seconds < 253402300800.0)) return std::to_string(seconds);
  time_t t = static_cast<time_t>(seconds);
  tm parts{};
  gmtime_r(&t, &parts);
  char buf[64];
  size_t n = std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &parts);
  return std::string(buf, n);
}

JwtError fail(JwtError::Kind kind, std::string reason) { return JwtError{kind, std::move(reason)}; }

bool key_fits(JwtAlgorithm alg, EVP_PKEY* pkey, std::string& error) {
  if (alg == JwtAlgorithm::RS256) {
    if (EVP_PKEY_is_a(pkey, "RSA")) return true;
    error = "RS256 needs an RSA key";
    return false;
  }
  char group[64] = {};
  size_t len = 0;
  if (EVP_PKEY_is_a(pkey, "EC") && EVP_PKEY_get_group_name(pkey, group, sizeof(group), &len) == 1 &&
      (std::strcmp(group, "prime256v1") == 0 || std::strcmp(group, "P-256") == 0))
    return true;
  error = "ES256 needs an EC P-256 key";
  return false;
}

std::shared_ptr<const JwtKey> decode_pem(JwtAlgorithm alg, std::string_view pem, int selection,
                                         std::string& error) {
  if (alg != JwtAlgorithm::RS256 && alg != JwtAlgorithm::ES256) {
    error = "HS256/HS512 use a secret, not a PEM key";
    return nullptr;
  }
  EVP_PKEY* pkey = nullptr;
  if (selection == EVP_PKEY_PUBLIC_KEY && pem.find("-----BEGIN CERTIFICATE-----") != pem.npos) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* cert = bio ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
    if (cert) pkey = X509_get_pubkey(cert);
    X509_free(cert);
    BIO_free(bio);
  } else {
    OSSL_DECODER_CTX* dctx =
        OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", nullptr, nullptr, selection, nullptr, nullptr);
    auto* data = reinterpret_cast<const unsigned char*>(pem.data());
    size_t len = pem.size();
    if (dctx && OSSL_DECODER_from_data(dctx, &data, &len) != 1) pkey = nullptr;
    OSSL_DECODER_CTX_free(dctx);
  }
  if (!pkey) {
    error = selection == EVP_PKEY_PUBLIC_KEY ? "not a PEM public key or certificate"
                                             : "not a PEM private key";
    return nullptr;
  }
  auto key = std::make_shared<const JwtKey>(alg, std::string(), pkey);
  if (!key_fits(alg, pkey, error)) return nullptr;
  return key;
}

bool hmac(const JwtKey& key, std::string_view data, std::array<unsigned char, 64>& out,
          unsigned& len) {
  static const unsigned char kEmpty = 0;
  const std::string& secret = key.secret();
  const void* k = secret.empty() ? static_cast<const void*>(&kEmpty) : secret.data();
  return HMAC(digest_of(key.algorithm()), k, static_cast<int>(secret.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(),
              &len) != nullptr;
}

// A JWS ES256 signature is r||s; OpenSSL wants DER.
bool es256_raw_to_der(std::string_view raw, std::string& der) {
  if (raw.size() != 2 * kEs256Half) return false;
  EcdsaSig sig(ECDSA_SIG_new());
  auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  BIGNUM* r = BN_bin2bn(bytes, kEs256Half, nullptr);
  BIGNUM* s = BN_bin2bn(bytes + kEs256Half, kEs256Half, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return false;
  der.resize(static_cast<size_t>(len));
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  return i2d_ECDSA_SIG(sig.get(), &p) == len;
}

bool es256_der_to_raw(std::string_view der, std::string& raw) {
  auto* p = reinterpret_cast<const unsigned char*>(der.data());
  EcdsaSig sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return false;
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  raw.assign(2 * kEs256Half, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  return BN_bn2binpad(r, out, kEs256Half) == kEs256Half &&
         BN_bn2binpad(s, out + kEs256Half, kEs256Half) == kEs256Half;
}

bool pkey_verify(const JwtKey& key, std::string_view data, std::string_view signature) {
  std::string der;
  if (key.algorithm() == JwtAlgorithm::ES256) {
    if (!es256_raw_to_der(signature, der)) return false;
    signature = der;
  }
  MdCtx ctx(EVP_MD_CTX_new());
  return ctx && key.pkey() &&
         EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.pkey()) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                          data.size()) == 1;
}

bool pkey_sign(const JwtKey& key, std::string_view data, std::string& signature) {
  MdCtx ctx(EVP_MD_CTX_new());
  size_t len = 0;
  auto* in = reinterpret_cast<const unsigned char*>(data.data());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.pkey()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) != 1)
    return false;
  std::string out(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, in,
                     data.size()) != 1)
    return false;
  out.resize(len);
  if (key.algorithm() == JwtAlgorithm::ES256) return es256_der_to_raw(out, signature);
  signature = std::move(out);
  return true;
}

}  // namespace

void JwtKey::PkeyFree::operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }

std::optional<JwtAlgorithm> parse_jwt_algorithm(std::string_view name) {
  if (name == "HS256") return JwtAlgorithm::HS256;
  if (name == "HS512") return JwtAlgorithm::HS512;
  if (name == "RS256") return JwtAlgorithm::RS256;
  if (name == "ES256") return JwtAlgorithm::ES256;
  return std::nullopt;
}

std::string_view to_string(JwtAlgorithm alg) {
  switch (alg) {
    case JwtAlgorithm::HS256:
      return "HS256";
    case JwtAlgorithm::HS512:
      return "HS512";
    case JwtAlgorithm::RS256:
      return "RS256";
    case JwtAlgorithm::ES256:
      return "ES256";
  }
  return "?";
}

std::shared_ptr<const JwtKey> JwtKey::hmac(JwtAlgorithm alg, std::string secret) {
  return std::make_shared<const JwtKey>(alg, std::move(secret), nullptr);
}

std::shared_ptr<const JwtKey> JwtKey::public_pem(JwtAlgorithm alg, std::string_view pem,
                                                 std::string& error) {
  return decode_pem(alg, pem, EVP_PKEY_PUBLIC_KEY, error);
}

std::shared_ptr<const JwtKey> JwtKey::private_pem(JwtAlgorithm alg, std::string_view pem,
                                                  std::string& error) {
  return decode_pem(alg, pem, EVP_PKEY_KEYPAIR, error);
}

std::string base64url_encode(std::string_view bytes) {
  return portico::base64_encode(bytes, Base64Alphabet::Url);
}

std::optional<std::string> base64url_decode(std::string_view text) {
  return portico::base64_decode(text, Base64Alphabet::Url);
}

std::optional<std::string> base64_decode(std::string_view text) {
  return portico::base64_decode(text, Base64Alphabet::Standard);
}

std::string_view strip_bearer(std::string_view value) {
  if (value.starts_with("Bearer ") || value.starts_with("bearer ")) value.remove_prefix(7);
  return value;
}

std::optional<std::string> JwtToken::string_claim(std::string_view name) const {
  auto it = payload.find(name);
  if (it == payload.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::optional<JwtToken> parse_jwt(std::string_view text, JwtError& error) {
  using Kind = JwtError::Kind;
  if (text.size() > kMaxTokenBytes) {
    error = fail(Kind::Malformed, "token longer than 16 KiB");
    return std::nullopt;
  }
  size_t dot1 = text.find('.');
  size_t dot2 = dot1 == text.npos ? text.npos : text.find('.', dot1 + 1);
  if (dot2 == text.npos || text.find('.', dot2 + 1) != text.npos) {
    error = fail(Kind::Malformed, "invalid jwt string: not three dot-separated parts");
    return std::nullopt;
  }
  auto header = base64url_decode(text.substr(0, dot1));
  auto payload = base64url_decode(text.substr(dot1 + 1, dot2 - dot1 - 1));
  auto signature = base64url_decode(text.substr(dot2 + 1));
  if (!header || !payload || !signature) {
    error = fail(Kind::Malformed, "invalid base64url encoding");
    return std::nullopt;
  }
  JwtToken token;
  if (json_too_deep(*header, kMaxConfigJsonDepth) || json_too_deep(*payload, kMaxConfigJsonDepth)) {
    error = fail(Kind::Malformed, "invalid token: nested too deeply");
    return std::nullopt;
  }
  token.header = json::parse(*header, nullptr, /*allow_exceptions=*/false);
  if (!token.header.is_object()) {
    error = fail(Kind::Malformed, "invalid header: not a JSON object");
    return std::nullopt;
  }
  auto alg = token.header.find("alg");
  if (alg == token.header.end() || !alg->is_string()) {
    error = fail(Kind::Malformed, "invalid header: no \"alg\" string");
    return std::nullopt;
  }
  token.payload = json::parse(*payload, nullptr, /*allow_exceptions=*/false);
  if (!token.payload.is_object()) {
    error = fail(Kind::Malformed, "invalid payload: not a JSON object");
    return std::nullopt;
  }
  token.alg = alg->get<std::string>();
  token.signing_input = std::string(text.substr(0, dot2));
  token.signature = std::move(*signature);
  return token;
}

std::optional<JwtError> verify_jwt(const JwtToken& token, const JwtKey& key, int64_t now,
                                   int64_t leeway) {
  using Kind = JwtError::Kind;
  std::string_view expected = to_string(key.algorithm());
  if (token.alg != expected)  // also refuses "none": no key has that algorithm
    return fail(Kind::AlgorithmMismatch, "token algorithm \"" + token.alg +
                                             "\" is not the consumer's " + std::string(expected));
  bool good;
  if (key.is_hmac()) {
    std::array<unsigned char, 64> mac;
    unsigned len = 0;
    good = hmac(key, token.signing_input, mac, len) && token.signature.size() == len &&
           CRYPTO_memcmp(mac.data(), token.signature.data(), len) == 0;
  } else {
    good = pkey_verify(key, token.signing_input, token.signature);
  }
  if (!good) return fail(Kind::BadSignature, "signature mismatch");

  const double t = static_cast<double>(now);
  const double grace = static_cast<double>(leeway);
  for (std::string_view claim : {"nbf", "exp"}) {
    auto it = token.payload.find(claim);
    if (it == token.payload.end()) continue;
    if (!it->is_number())
      return fail(Kind::BadClaim, "claim " + std::string(claim) + " is not a number");
    double v = it->get<double>();
    if (claim == "nbf" && v > t + grace)
      return fail(Kind::NotYetValid, "'nbf' claim not valid until " + http_date(v));
    if (claim == "exp" && v + grace <= t)
      return fail(Kind::Expired, "'exp' claim expired at " + http_date(v));
  }
  return std::nullopt;
}

std::optional<std::string> sign_jwt(const json& payload, const JwtKey& key, std::string& error) {
  if (!payload.is_object()) {
    error = "payload must be a JSON object";
    return std::nullopt;
  }
  json header = {{"alg", std::string(to_string(key.algorithm()))}, {"typ", "JWT"}};
  std::string token = base64url_encode(header.dump()) + "." + base64url_encode(payload.dump());
  std::string signature;
  if (key.is_hmac()) {
    std::array<unsigned char, 64> mac;
    unsigned len = 0;
    if (hmac(key, token, mac, len)) signature.assign(reinterpret_cast<char*>(mac.data()), len);
  } else if (!key.pkey() || !pkey_sign(key, token, signature)) {
    signature.clear();
  }
  if (signature.empty()) {
    error = "signing failed (RS256/ES256 need a private key)";
    return std::nullopt;
  }
  token += '.';
  token += base64url_encode(signature);
  return token;
}

}  // namespace portico::plugins::auth
