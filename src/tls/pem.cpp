#include "tls/pem.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "core/hex.hpp"

namespace portico::tls {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr memory_bio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Never asks for a passphrase: without this OpenSSL would prompt on the terminal for an
// encrypted key.
int no_passphrase(char*, int, int, void*) { return -1; }

}  // namespace

std::vector<X509Ptr> read_certificates(const std::string& pem) {
  std::vector<X509Ptr> certs;
  BioPtr bio = memory_bio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr))
    certs.emplace_back(x);
  // Reading ends with "no start line" after the last block; any other error is a broken one.
  unsigned long err = ERR_peek_last_error();
  bool clean_end = ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  if (!clean_end) certs.clear();
  return certs;
}

PkeyPtr read_private_key(const std::string& pem) {
  BioPtr bio = memory_bio(pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  ERR_clear_error();
  return key;
}

std::string take_openssl_error() {
  unsigned long err = ERR_get_error();
  ERR_clear_error();
  if (err == 0) return {};
  const char* reason = ERR_reason_error_string(err);
  return reason ? reason : "error " + std::to_string(err);
}

std::string certificate_digest(X509* cert, const EVP_MD* md) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (X509_digest(cert, md, digest, &size) != 1) return {};
  return hex::encode(digest, size);
}

}  // namespace portico::tls
