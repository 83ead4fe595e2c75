#include "config/other_objects.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <re2/re2.h>

#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <limits>
#include <memory>
#include <set>
#include <vector>

#include "bridge/proto_set.hpp"
#include "config/common_fields.hpp"
#include "config/object_parser.hpp"
#include "config/pem_fields.hpp"
#include "stream/stream_plugins.hpp"
#include "stream/tlv_policy.hpp"
#include "tls/pem.hpp"

namespace portico::config {
namespace {

constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

PluginSetPtr require_plugins(ObjectReader& r, std::string_view kind, const std::string& id) {
  if (!r.has("plugins")) r.error("plugins", "is required");
  return read_plugins(r, kind, id);
}

// {id, plugins, desc, labels, ...}: plugin_configs and consumer_groups.
std::shared_ptr<PluginConfig> named_plugins(const json& value, const std::string& path,
                                            Errors& errors, std::string_view kind) {
  auto obj = std::make_shared<PluginConfig>();
  ObjectReader r(value, path, errors);
  if (!r.valid()) return obj;
  obj->id = r.id("id").value_or("");
  ignore_metadata(r);
  obj->plugins = require_plugins(r, kind, obj->id);
  r.finish();
  return obj;
}

// APISIX: ^[a-zA-Z0-9_\-]+$, at most 100 characters.
bool valid_username(const std::string& name) {
  if (name.empty() || name.size() > 100) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

// "snis[2]"
std::string indexed(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

bool valid_ip(const std::string& s) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(s, ec);
  return !ec;
}

using tls::PkeyPtr;
using tls::X509Ptr;

const json* list_field(ObjectReader& r, std::string_view key, const char* message) {
  const json* v = r.raw(key);
  if (v && !v->is_array()) {
    r.error(key, message);
    return nullptr;
  }
  return v;
}

// certs[i] pairs with keys[i]: extra certificates for other key types (RSA next to ECDSA).
void check_extra_pairs(ObjectReader& r, std::vector<tls::CertificateKeyPair>& pairs,
                       Errors& errors) {
  const json* certs = list_field(r, "certs", "must be a list of PEM certificates");
  const json* keys = list_field(r, "keys", "must be a list of PEM private keys");
  bool not_lists = (r.has("certs") && !certs) || (r.has("keys") && !keys);  // already reported
  if ((!certs && !keys) || not_lists) return;
  size_t n_certs = certs ? certs->size() : 0;
  size_t n_keys = keys ? keys->size() : 0;
  if (n_certs != n_keys) r.error("keys", "must have one key for each entry of certs");
  for (size_t i = 0; i < std::max(n_certs, n_keys); ++i) {
    std::vector<X509Ptr> chain;
    PkeyPtr key;
    if (i < n_certs)
      chain = check_certificate((*certs)[i], indexed(r.child_path("certs"), i), errors);
    if (i < n_keys) key = check_private_key((*keys)[i], indexed(r.child_path("keys"), i), errors);
    check_key_matches(std::move(chain), std::move(key), indexed(r.child_path("keys"), i),
                      indexed("certs", i), pairs, errors);
  }
}

// `client` (mTLS, as APISIX): `ca` (PEM, one or more certificates), `depth` (1), and
// `skip_mtls_uri_regex` (paths served without a good client certificate; RE2).
std::shared_ptr<const tls::ClientVerification> check_client(ObjectReader& parent, const json& v,
                                                            Errors& errors) {
  ObjectReader r(v, parent.child_path("client"), errors);
  if (!r.valid()) return nullptr;
  size_t before = errors.size();
  auto client = std::make_shared<tls::ClientVerification>();
  if (const json* ca = r.raw("ca"))
    client->ca = check_certificate(*ca, r.child_path("ca"), errors);
  else
    r.error("ca", "is required");
  client->depth = static_cast<int>(r.integer_or("depth", 1, 0, 100));
  if (const json* skip = r.raw("skip_mtls_uri_regex")) {
    auto regexes = std::make_shared<std::vector<std::unique_ptr<re2::RE2>>>();
    if (!skip->is_array() || skip->empty()) {
      r.error("skip_mtls_uri_regex", "must be a non-empty list of regular expressions");
    } else {
      for (size_t i = 0; i < skip->size(); ++i) {
        const json& item = (*skip)[i];
        std::string at = indexed(r.child_path("skip_mtls_uri_regex"), i);
        if (!item.is_string()) {
          errors.add(at, "must be a regular expression (a string)");
          continue;
        }
        re2::RE2::Options options;
        options.set_log_errors(false);
        auto re = std::make_unique<re2::RE2>(item.get<std::string>(), options);
        if (!re->ok())
          errors.add(at, "is not a valid regular expression: " + re->error());
        else
          regexes->push_back(std::move(re));
      }
    }
    client->skips = [regexes](std::string_view path) {
      for (const auto& re : *regexes)
        if (re2::RE2::PartialMatch(re2::StringPiece(path.data(), path.size()), *re)) return true;
      return false;
    };
  }
  r.finish();
  if (errors.size() != before) return nullptr;
  return client;
}

// Server names the certificate is offered for: `sni` or a non-empty `snis` list. False when
// neither is given.
bool check_snis(ObjectReader& r, std::vector<std::string>& names, Errors& errors) {
  const char* message = "must be a host name or a wildcard like \"*.example.com\"";
  bool has_sni = r.has("sni");
  bool has_snis = r.has("snis");
  if (has_sni && has_snis) r.error("snis", "use either sni or snis, not both");
  if (auto sni = r.string("sni")) {
    if (!valid_host_pattern(*sni)) r.error("sni", message);
    names.push_back(*sni);
  }
  if (const json* snis = r.raw("snis")) {
    if (!snis->is_array() || snis->empty()) {
      r.error("snis", "must be a non-empty list of host names");
    } else {
      for (size_t i = 0; i < snis->size(); ++i) {
        const json& s = (*snis)[i];
        if (!s.is_string() || !valid_host_pattern(s.get_ref<const std::string&>()))
          errors.add(indexed(r.child_path("snis"), i), message);
        else
          names.push_back(s.get<std::string>());
      }
    }
  }
  return has_sni || has_snis;
}

std::vector<std::string> check_ssl_protocols(ObjectReader& r, Errors& errors) {
  const char* message = "must be one of TLSv1.1, TLSv1.2, TLSv1.3";
  const json* list = list_field(r, "ssl_protocols", "must be a list of TLS versions");
  std::vector<std::string> versions;
  if (!list) return versions;
  // An empty list would enable no protocol at all, failing every handshake.
  if (list->empty()) r.error("ssl_protocols", "must not be empty");
  std::set<std::string> seen;
  for (size_t i = 0; i < list->size(); ++i) {
    const json& v = (*list)[i];
    std::string p = indexed(r.child_path("ssl_protocols"), i);
    if (!v.is_string() || (v != "TLSv1.1" && v != "TLSv1.2" && v != "TLSv1.3"))
      errors.add(p, message);
    else if (!seen.insert(v.get<std::string>()).second)
      errors.add(p, "duplicate " + v.get<std::string>());
    else
      versions.push_back(v.get<std::string>());
  }
  return versions;
}

}  // namespace

std::shared_ptr<plugins::Consumer> validate_consumer(const json& value, const std::string& path,
                                                     Errors& errors) {
  auto consumer = std::make_shared<plugins::Consumer>();
  ObjectReader r(value, path, errors);
  if (!r.valid()) return consumer;
  auto username = r.string("username");
  if (!r.has("username"))
    r.error("username", "is required");
  else if (username && !valid_username(*username))
    r.error("username", "must be 1..100 letters, digits, '_' or '-'");
  // APISIX keys consumers by username and has no id; an id naming another consumer is a mistake.
  if (auto id = r.id("id"); id && username && *id != *username)
    r.error("id", "must equal username");
  consumer->group_id = r.id("group_id").value_or("");
  ignore_metadata(r);
  consumer->username = username.value_or("");
  consumer->plugins = read_plugins(r, "consumers", consumer->username, true);
  r.finish();
  return consumer;
}

ValidatedSsl validate_ssl(const json& value, const std::string& path, Errors& errors) {
  ObjectReader r(value, path, errors);
  if (!r.valid()) return {};
  size_t before = errors.size();
  r.id("id");
  for (auto key : {"labels", "create_time", "update_time"}) r.ignore(key);
  auto start = r.integer("validity_start", kInt64Min, kInt64Max);
  auto end = r.integer("validity_end", kInt64Min, kInt64Max);
  if (start && end && *end < *start) r.error("validity_end", "must not be before validity_start");
  std::string type = r.string_or("type", "server");
  if (type != "server" && type != "client") r.error("type", "must be server or client");
  bool enabled = r.integer("status", 0, 1).value_or(1) == 1;

  std::vector<tls::CertificateKeyPair> pairs;
  const json* cert = r.raw("cert");
  const json* key = r.raw("key");
  if (!cert) r.error("cert", "is required");
  if (!key) r.error("key", "is required");
  std::vector<X509Ptr> chain;
  if (cert) chain = check_certificate(*cert, r.child_path("cert"), errors);
  PkeyPtr pkey = key ? check_private_key(*key, r.child_path("key"), errors) : nullptr;
  check_key_matches(std::move(chain), std::move(pkey), r.child_path("key"), "cert", pairs, errors);
  check_extra_pairs(r, pairs, errors);

  std::vector<std::string> snis;
  if (!check_snis(r, snis, errors) && type == "server")
    r.error("snis", "is required for a server certificate (sni or snis)");
  std::shared_ptr<const tls::ClientVerification> client_verification;
  if (const json* client = r.raw("client")) client_verification = check_client(r, *client, errors);
  std::vector<std::string> protocols = check_ssl_protocols(r, errors);
  r.finish();
  if (errors.size() != before) return {};
  // A client certificate is shown to upstreams (tls.client_cert_id), whatever its status, as in
  // APISIX; the first pair is the one shown.
  if (type == "client") return {nullptr, tls::make_client_identity(std::move(pairs.front()))};
  if (!enabled) return {};  // a disabled server certificate serves no handshake
  std::string error;
  auto compiled = tls::make_server_certificate(std::move(pairs), std::move(snis), protocols, error,
                                               std::move(client_verification));
  if (!compiled) errors.add(r.child_path("cert"), error);
  return {std::move(compiled), nullptr};
}

std::shared_ptr<PluginConfig> validate_global_rule(const json& value, const std::string& path,
                                                   Errors& errors) {
  auto obj = std::make_shared<PluginConfig>();
  ObjectReader r(value, path, errors);
  if (!r.valid()) return obj;
  obj->id = r.id("id").value_or("");
  for (auto key : {"create_time", "update_time"}) r.ignore(key);
  obj->plugins = require_plugins(r, "global_rules", obj->id);
  r.finish();
  return obj;
}

std::shared_ptr<PluginConfig> validate_plugin_config(const json& value, const std::string& path,
                                                     Errors& errors) {
  return named_plugins(value, path, errors, "plugin_configs");
}

std::shared_ptr<PluginConfig> validate_consumer_group(const json& value, const std::string& path,
                                                      Errors& errors) {
  auto obj = named_plugins(value, path, errors, "consumer_groups");
  // Credentials are each consumer's: an authentication plugin in a group would authenticate
  // again after the consumer was found.
  if (obj->plugins)
    for (const auto& e : obj->plugins->entries)
      if (e.type->consumer_credential)
        errors.add(path + ".plugins." + std::string(e.type->name),
                   "authentication plugins belong on consumers, not on their groups");
  return obj;
}

std::shared_ptr<const bridge::ProtoSet> validate_proto(const json& value, const std::string& path,
                                                       Errors& errors) {
  ObjectReader r(value, path, errors);
  if (!r.valid()) return nullptr;
  r.id("id");
  ignore_metadata(r);
  r.string("name");
  auto content = r.string("content");
  std::shared_ptr<const bridge::ProtoSet> compiled;
  if (!r.has("content")) {
    r.error("content", "is required");
  } else if (content && (content->empty() || content->size() > 1024 * 1024)) {
    r.error("content", "must be 1..1048576 bytes of .proto source");
  } else if (content) {
    std::string error;
    compiled = bridge::ProtoSet::compile(*content, error);
    if (!compiled) r.error("content", error);
  }
  r.finish();
  return compiled;
}

std::shared_ptr<StreamRoute> validate_stream_route(const json& value, const std::string& path,
                                                   Errors& errors) {
  auto route = std::make_shared<StreamRoute>();
  ObjectReader r(value, path, errors);
  if (!r.valid()) return route;
  route->id = r.id("id").value_or("");
  ignore_metadata(r);
  if (auto a = r.string("remote_addr")) {
    if (!valid_cidr(*a)) r.error("remote_addr", "must be an IP address or CIDR");
    route->remote_addr = *a;
  }
  if (auto a = r.string("server_addr")) {
    if (!valid_ip(*a)) r.error("server_addr", "must be an IP address");
    route->server_addr = *a;
  }
  route->server_port = static_cast<int>(r.integer("server_port", 1, 65535).value_or(0));
  if (auto sni = r.string("sni")) {
    if (!valid_host_pattern(*sni))
      r.error("sni", "must be a host name or a wildcard like \"*.example.com\"");
    route->sni = *sni;
  }

  const json* upstream = r.raw("upstream");
  if (upstream) route->upstream = parse_upstream(*upstream, r.child_path("upstream"), errors);
  route->upstream_id = r.id("upstream_id").value_or("");
  route->service_id = r.id("service_id").value_or("");
  if (!upstream && !r.has("upstream_id") && !r.has("service_id"))
    errors.add(path, "needs an upstream: upstream, upstream_id or service_id");
  if (const json* plugins = r.raw("plugins"))
    route->plugins =
        stream::parse_stream_plugins(*plugins, route->id, r.child_path("plugins"), errors);

  if (const json* protocol = r.raw("protocol")) {
    ObjectReader pr(*protocol, r.child_path("protocol"), errors);
    route->protocol = pr.string("name").value_or("");
    if (!pr.has("name") && pr.valid()) pr.error("name", "is required");
    const json* conf = pr.raw("conf");
    if (conf && !conf->is_object()) pr.error("conf", "must be an object");
    if (route->protocol == "tlv")
      route->tlv = stream::parse_tlv_protocol(conf && conf->is_object() ? conf : nullptr,
                                              pr.child_path("conf"), errors);
    else if (pr.has("name"))
      pr.error("name", "must be \"tlv\" (leave protocol out for a plain TCP proxy)");
    pr.finish();
  }
  r.finish();
  return route;
}

}  // namespace portico::config
