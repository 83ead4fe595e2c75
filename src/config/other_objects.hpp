// Validation of the APISIX kinds besides routes, services and upstreams: consumers, ssls,
// global_rules, plugin_configs, protos, stream_routes. Each function checks one object the way
// object_parser checks routes: every error recorded with its field path, unknown fields rejected.
#pragma once

#include <string>
#include <string_view>

#include "config/field_reader.hpp"
#include "config/objects.hpp"
#include "plugins/consumers.hpp"
#include "tls/server_certificates.hpp"

namespace portico::config {

// username (the consumer's key) is required; an `id` is accepted only when it equals username.
std::shared_ptr<plugins::Consumer> validate_consumer(const json& value, const std::string& path,
                                                     Errors& errors);
// What an ssls object serves: a server certificate (type server, unless `status: 0`), or the
// identity upstreams show (type client, named by tls.client_cert_id). Both null on errors.
struct ValidatedSsl {
  std::shared_ptr<const tls::ServerCertificate> server;
  std::shared_ptr<const tls::ClientIdentity> client;
};
// Parses cert/key (and certs/keys, client.ca) with OpenSSL and checks each key matches its
// certificate. Messages never quote certificate or key material.
ValidatedSsl validate_ssl(const json& value, const std::string& path, Errors& errors);
std::shared_ptr<PluginConfig> validate_global_rule(const json& value, const std::string& path,
                                                   Errors& errors);
// consumer_groups: {id, plugins, desc, labels}; the plugins every consumer of the group runs
// (a consumer's own plugin of the same name wins).
std::shared_ptr<PluginConfig> validate_consumer_group(const json& value, const std::string& path,
                                                      Errors& errors);
std::shared_ptr<PluginConfig> validate_plugin_config(const json& value, const std::string& path,
                                                     Errors& errors);
// Compiles `content` (errors name the line and column); null on errors.
std::shared_ptr<const bridge::ProtoSet> validate_proto(const json& value, const std::string& path,
                                                       Errors& errors);

// A stream route with its protocol.conf parsed (tlv: stream/tlv_policy.hpp). The ids it refers
// to (upstream_id, service_id, sub-routes' upstream_id) are left for the caller to resolve.
std::shared_ptr<StreamRoute> validate_stream_route(const json& value, const std::string& path,
                                                   Errors& errors);

}  // namespace portico::config
