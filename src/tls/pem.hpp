// PEM certificates and keys read with OpenSSL, into owning pointers. Shared by the `ssls`
// validation and the TLS certificate compiler.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

namespace portico::tls {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Every certificate in `pem` (a leaf and its chain, or a CA bundle); empty when none parses or
// a block is broken. The OpenSSL error queue is left empty: it is per thread, and a stale entry
// would confuse the next TLS call on it.
std::vector<X509Ptr> read_certificates(const std::string& pem);

// An unencrypted private key, or null (an encrypted key is refused: nothing may prompt for a
// passphrase).
PkeyPtr read_private_key(const std::string& pem);

// A certificate's digest with `md` (EVP_sha1(), EVP_sha256()) in lower-case hex; empty if
// OpenSSL fails.
std::string certificate_digest(X509* cert, const EVP_MD* md);

// The first error on this thread's OpenSSL queue as text (empty if none); clears the queue.
std::string take_openssl_error();

}  // namespace portico::tls
