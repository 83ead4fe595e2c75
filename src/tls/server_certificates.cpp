#include "tls/server_certificates.hpp"

#include <openssl/ssl.h>

#include <algorithm>
#include <cctype>

namespace portico::tls {
namespace {

struct Version {
  const char* name;
  int version;
  uint64_t disable_option;
};
constexpr Version kVersions[] = {{"TLSv1.1", TLS1_1_VERSION, SSL_OP_NO_TLSv1_1},
                                 {"TLSv1.2", TLS1_2_VERSION, SSL_OP_NO_TLSv1_2},
                                 {"TLSv1.3", TLS1_3_VERSION, SSL_OP_NO_TLSv1_3}};

void set_versions(ServerCertificate& cert, const std::vector<std::string>& protocols) {
  std::vector<std::string> wanted = protocols;
  if (wanted.empty()) wanted = {"TLSv1.2", "TLSv1.3"};
  for (const Version& v : kVersions) {
    bool on = std::find(wanted.begin(), wanted.end(), v.name) != wanted.end();
    if (on && cert.min_version == 0) cert.min_version = v.version;
    if (on) cert.max_version = v.version;
  }
  for (const Version& v : kVersions) {
    bool inside = v.version > cert.min_version && v.version < cert.max_version;
    if (inside && std::find(wanted.begin(), wanted.end(), v.name) == wanted.end())
      cert.disabled |= v.disable_option;
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Asks the client for a certificate from `client.ca`. Without skips, the handshake refuses a
// client that sends none or a bad one; with them, it goes on and the result is checked per
// request (the verify result stays on the connection for $ssl_client_verify).
bool ask_for_client_certificates(SSL_CTX* ctx, const ClientVerification& client,
                                 std::string& error) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
  bool ok = names != nullptr;
  for (size_t i = 0; ok && i < client.ca.size(); ++i) {
    X509* ca = client.ca[i].get();
    X509_NAME* name = X509_NAME_dup(X509_get_subject_name(ca));
    ok = X509_STORE_add_cert(store, ca) == 1 && name && sk_X509_NAME_push(names, name) > 0;
    if (!ok) X509_NAME_free(name);  // (null-safe)
  }
  if (!ok) {
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    error = "OpenSSL refused the client CA: " + take_openssl_error();
    return false;
  }
  SSL_CTX_set_client_CA_list(ctx, names);  // takes `names`: clients pick a certificate by them
  SSL_CTX_set_verify_depth(ctx, client.depth);
  if (client.skips)
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
  else
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  return true;
}

void digest_der(EVP_MD_CTX* md, X509* cert) {
  unsigned char* der = nullptr;
  int n = i2d_X509(cert, &der);
  if (n > 0) EVP_DigestUpdate(md, der, static_cast<size_t>(n));
  OPENSSL_free(der);
}

}  // namespace

std::shared_ptr<const ServerCertificate> make_server_certificate(
    std::vector<CertificateKeyPair> pairs, std::vector<std::string> snis,
    const std::vector<std::string>& protocols, std::string& error,
    std::shared_ptr<const ClientVerification> client) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) {
    error = "cannot create a TLS context: " + take_openssl_error();
    return nullptr;
  }
  prepare_server_context(ctx.get());
  for (CertificateKeyPair& pair : pairs) {
    STACK_OF(X509)* chain = sk_X509_new_null();
    for (size_t i = 1; i < pair.chain.size(); ++i) sk_X509_push(chain, pair.chain[i].get());
    // Copies what it keeps (up-references): `pair` can go afterwards.
    int ok =
        SSL_CTX_use_cert_and_key(ctx.get(), pair.chain.front().get(), pair.key.get(), chain, 1);
    sk_X509_free(chain);
    if (ok != 1) {
      error = "OpenSSL refused the certificate: " + take_openssl_error();
      return nullptr;
    }
  }
  if (client && !ask_for_client_certificates(ctx.get(), *client, error)) return nullptr;
  // Sessions resume only under the certificate that made them (RFC 6066: not for another
  // server name): the session id context is a digest of the leaf certificates, and of what a
  // client must prove (a session made without a client certificate never resumes where one
  // is required).
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
  for (const CertificateKeyPair& pair : pairs) digest_der(md, pair.chain.front().get());
  if (client) {
    for (const X509Ptr& ca : client->ca) digest_der(md, ca.get());
    const int mode[2] = {client->depth, client->skips ? 1 : 0};
    EVP_DigestUpdate(md, mode, sizeof mode);
  }
  EVP_DigestFinal_ex(md, digest, &digest_size);
  EVP_MD_CTX_free(md);
  SSL_CTX_set_session_id_context(ctx.get(), digest,
                                 std::min<unsigned int>(digest_size, SSL_MAX_SID_CTX_LENGTH));
  auto cert = std::make_shared<ServerCertificate>();
  cert->context = std::move(ctx);
  for (std::string& sni : snis) cert->snis.push_back(lower(sni));
  set_versions(*cert, protocols);
  cert->client = std::move(client);
  return cert;
}

std::shared_ptr<const ClientIdentity> make_client_identity(CertificateKeyPair pair) {
  auto identity = std::make_shared<ClientIdentity>();
  identity->digest = certificate_digest(pair.chain.front().get(), EVP_sha256());
  identity->pair = std::move(pair);
  return identity;
}

bool use_client_identity(SSL* ssl, const ClientIdentity& identity) {
  const CertificateKeyPair& pair = identity.pair;
  STACK_OF(X509)* chain = sk_X509_new_null();
  if (!chain) return false;
  for (size_t i = 1; i < pair.chain.size(); ++i) sk_X509_push(chain, pair.chain[i].get());
  int ok = SSL_use_cert_and_key(ssl, pair.chain.front().get(), pair.key.get(), chain, 1);
  sk_X509_free(chain);  // (the stack only: SSL_use_cert_and_key up-referenced its certificates)
  return ok == 1;
}

void CertificateTable::add(std::shared_ptr<const ServerCertificate> cert) {
  for (const std::string& name : cert->snis) by_name_[name] = cert.get();
  if (cert->client) asks_for_client_certificates_ = true;
  certificates_.push_back(std::move(cert));
}

const ServerCertificate* CertificateTable::find(std::string_view server_name) const {
  if (server_name.ends_with('.')) server_name.remove_suffix(1);
  if (server_name.empty() || by_name_.empty()) return nullptr;
  std::string name = lower(server_name);
  if (auto it = by_name_.find(name); it != by_name_.end()) return it->second;
  size_t dot = name.find('.');
  if (dot == std::string::npos || dot == 0) return nullptr;
  name.replace(0, dot, "*");
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const ServerCertificate* CertificateTable::find_for_host(std::string_view host) const {
  if (host.ends_with('.')) host.remove_suffix(1);
  if (host.empty() || by_name_.empty()) return nullptr;
  std::string name = lower(host);
  if (auto it = by_name_.find(name); it != by_name_.end()) return it->second;
  for (size_t dot = name.find('.'); dot != std::string::npos && dot + 1 < name.size();
       dot = name.find('.', dot + 1)) {
    std::string wildcard(1, '*');
    wildcard.append(name, dot, std::string::npos);
    if (auto it = by_name_.find(wildcard); it != by_name_.end()) return it->second;
  }
  return nullptr;
}

}  // namespace portico::tls
