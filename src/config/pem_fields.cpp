#include "config/pem_fields.hpp"

#include <openssl/err.h>

namespace portico::config {
namespace {

using tls::PkeyPtr;
using tls::X509Ptr;

// APISIX's bound on cert and key strings; it also bounds the parsing work per field.
constexpr size_t kMaxPemBytes = 64 * 1024;

const std::string* pem_string(const json& v, const std::string& path, const char* what,
                              Errors& errors) {
  if (!v.is_string()) {
    errors.add(path, std::string("must be a PEM ") + what);
    return nullptr;
  }
  if (v.get_ref<const std::string&>().size() > kMaxPemBytes) {
    errors.add(path, "must be at most " + std::to_string(kMaxPemBytes) + " bytes");
    return nullptr;
  }
  return &v.get_ref<const std::string&>();
}

}  // namespace

std::vector<X509Ptr> check_certificate(const json& v, const std::string& path, Errors& errors) {
  const std::string* pem = pem_string(v, path, "certificate", errors);
  if (!pem) return {};
  auto certs = tls::read_certificates(*pem);
  if (certs.empty()) errors.add(path, "must be a PEM certificate");
  return certs;
}

PkeyPtr check_private_key(const json& v, const std::string& path, Errors& errors) {
  const std::string* pem = pem_string(v, path, "private key", errors);
  if (!pem) return nullptr;
  PkeyPtr key = tls::read_private_key(*pem);
  if (!key) errors.add(path, "must be an unencrypted PEM private key");
  return key;
}

void check_key_matches(std::vector<X509Ptr> chain, PkeyPtr key, const std::string& key_path,
                       const std::string& cert_name, std::vector<tls::CertificateKeyPair>& pairs,
                       Errors& errors) {
  if (chain.empty() || !key) return;
  bool ok = X509_check_private_key(chain.front().get(), key.get()) == 1;
  ERR_clear_error();
  if (!ok)
    errors.add(key_path, "does not match the public key of " + cert_name);
  else
    pairs.push_back({std::move(chain), std::move(key)});
}

}  // namespace portico::config
