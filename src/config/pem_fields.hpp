// PEM certificate and key fields of config objects (ssls, upstream tls.client_cert), checked
// with OpenSSL into owning pointers; errors name the field and never quote key material.
#pragma once

#include <string>
#include <vector>

#include "config/field_reader.hpp"
#include "tls/pem.hpp"
#include "tls/server_certificates.hpp"

namespace portico::config {

// The certificates of a PEM field (the leaf first), or none after recording the error.
std::vector<tls::X509Ptr> check_certificate(const json& v, const std::string& path, Errors& errors);
// An unencrypted PEM private key, or null after recording the error.
tls::PkeyPtr check_private_key(const json& v, const std::string& path, Errors& errors);
// Adds the pair to `pairs` when both parsed and the key belongs to the leaf (`cert_name` names
// the certificate's field in the error).
void check_key_matches(std::vector<tls::X509Ptr> chain, tls::PkeyPtr key,
                       const std::string& key_path, const std::string& cert_name,
                       std::vector<tls::CertificateKeyPair>& pairs, Errors& errors);

}  // namespace portico::config
