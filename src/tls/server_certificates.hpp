// Server certificates from `ssls` objects, compiled once when the object arrives (an OpenSSL
// context each), and the table the TLS handshake picks from by the client's server name (SNI).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tls/pem.hpp"

struct ssl_ctx_st;
struct ssl_st;

namespace portico::tls {

struct CertificateKeyPair {
  std::vector<X509Ptr> chain;  // the leaf first, then its intermediates
  PkeyPtr key;
};

// An `ssls` object's `client` (APISIX): clients must show a certificate from `ca` (mTLS).
struct ClientVerification {
  std::vector<X509Ptr> ca;  // the certificates a client's chain must end at
  int depth = 1;            // intermediates allowed between the client's and the CA (nginx's)
  // skip_mtls_uri_regex: set, the handshake accepts clients without a good certificate and
  // each HTTP request is checked instead (400 unless its path matches); unset, the handshake
  // itself refuses them.
  std::function<bool(std::string_view path)> skips;
};

// The certificate the gateway shows upstreams that ask for one (upstream tls.client_cert).
struct ClientIdentity {
  CertificateKeyPair pair;
  std::string digest;  // SHA-256 of the leaf: pooled connections are kept apart by it
};
std::shared_ptr<const ClientIdentity> make_client_identity(CertificateKeyPair pair);
// Makes a client connection show `identity` (OpenSSL takes its own references: the identity
// may go with its config afterwards). False when OpenSSL refuses it.
bool use_client_identity(ssl_st* ssl, const ClientIdentity& identity);

// One `ssls` object of type server, ready to serve. Identical objects keep the same instance
// from one config to the next (the object store compiles an object only when it changes).
struct ServerCertificate {
  std::shared_ptr<ssl_ctx_st> context;  // holds every certificate (RSA beside ECDSA, ...)
  std::vector<std::string> snis;        // lower case; "*.example.com" for a wildcard
  int min_version = 0;                  // TLS1_2_VERSION, ... (from ssl_protocols)
  int max_version = 0;
  uint64_t disabled = 0;  // SSL_OP_NO_TLSv1_x for a version inside [min, max] not listed
  std::shared_ptr<const ClientVerification> client;  // null: no client certificate asked for
};

// `protocols`: ssl_protocols values ("TLSv1.2", ...); empty means TLSv1.2 and TLSv1.3 (APISIX's
// default). Null with `error` set when OpenSSL refuses a pair (a key too weak, say).
std::shared_ptr<const ServerCertificate> make_server_certificate(
    std::vector<CertificateKeyPair> pairs, std::vector<std::string> snis,
    const std::vector<std::string>& protocols, std::string& error,
    std::shared_ptr<const ClientVerification> client = nullptr);

// Settings every context that serves clients shares (ALPN http/1.1, the session id context):
// the handshake switches contexts mid-way and reads these from the one it ends on.
void prepare_server_context(ssl_ctx_st* ctx);

// Server names -> certificates: an exact name first, then the wildcard of its parent domain
// (`*.example.com` serves `a.example.com`, not `a.b.example.com` or `example.com`, as a
// certificate's own wildcard matches).
class CertificateTable {
 public:
  // A name already in the table is taken over by `cert` (the newest object wins, so adding a
  // replacement before deleting the old one rotates at once).
  void add(std::shared_ptr<const ServerCertificate> cert);
  // `server_name` in any case, with or without a trailing dot. Null when nothing serves it.
  const ServerCertificate* find(std::string_view server_name) const;
  // For a request's Host, as routes match hosts: the exact name, else the nearest wildcard at
  // any depth (`*.example.com` covers `a.b.example.com` here, as a route host does).
  const ServerCertificate* find_for_host(std::string_view host) const;
  bool empty() const { return certificates_.empty(); }
  // Whether some certificate has a `client` (requests then check their Host against it).
  bool asks_for_client_certificates() const { return asks_for_client_certificates_; }

 private:
  std::vector<std::shared_ptr<const ServerCertificate>> certificates_;
  std::unordered_map<std::string, const ServerCertificate*> by_name_;
  bool asks_for_client_certificates_ = false;
};

}  // namespace portico::tls
