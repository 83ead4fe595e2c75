#include "config/other_objects.hpp"

#include "config/object_store.hpp"

#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>

using namespace portico::config;
using Paths = std::vector<std::string>;

namespace {

// Validates `value` as `kind` at path "<kind>[0]" and returns the sorted error paths.
Paths error_paths(std::string_view kind, const json& value, std::string* text = nullptr) {
  Errors errors;
  std::optional<Kind> k = parse_kind(kind);
  EXPECT_TRUE(k) << kind;
  StoredObject out;
  if (k) validate_object(*k, value, std::string(kind) + "[0]", errors, out);
  Paths paths;
  for (const auto& e : errors.list()) paths.push_back(e.path);
  std::sort(paths.begin(), paths.end());
  if (text) *text = errors.to_string();
  return paths;
}

json with(json base, const json& patch) {  // a null in `patch` removes the field
  base.merge_patch(patch);
  return base;
}

std::string drain(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

std::string key_pem(EVP_PKEY* key, const char* passphrase = nullptr) {
  BIO* bio = BIO_new(BIO_s_mem());
  const EVP_CIPHER* cipher = passphrase ? EVP_aes_256_cbc() : nullptr;
  PEM_write_bio_PrivateKey(bio, key, cipher, nullptr, 0, nullptr, const_cast<char*>(passphrase));
  return drain(bio);
}

std::string self_signed_pem(EVP_PKEY* key, const char* common_name) {
  X509* x = X509_new();
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, key, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, x);
  X509_free(x);
  return drain(bio);
}

// Generated once per test run: an ECDSA pair, an RSA pair, and a stray key matching neither.
struct TestPems {
  std::string ec_cert, ec_key, rsa_cert, rsa_key, other_key, encrypted_key;
  TestPems() {
    EVP_PKEY* ec = EVP_EC_gen("P-256");
    EVP_PKEY* rsa = EVP_RSA_gen(2048);
    EVP_PKEY* other = EVP_EC_gen("P-256");
    ec_cert = self_signed_pem(ec, "example.com");
    ec_key = key_pem(ec);
    rsa_cert = self_signed_pem(rsa, "example.com");
    rsa_key = key_pem(rsa);
    other_key = key_pem(other);
    encrypted_key = key_pem(ec, "secret");
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(other);
  }
};

const TestPems& pems() {
  static const TestPems p;
  return p;
}

json valid_ssl() {
  return {{"cert", pems().ec_cert}, {"key", pems().ec_key}, {"snis", {"example.com"}}};
}

}  // namespace

// ---- consumers ----------------------------------------------------------------------------

TEST(OtherObjectsConsumer, AcceptsApisixShape) {
  EXPECT_EQ(error_paths("consumers", json::parse(R"({
    "username": "jack_01-a", "id": "jack_01-a", "desc": "d", "labels": {"team": "im"},
    "plugins": {}, "group_id": "g1", "create_time": 1700000000, "update_time": 1700000001
  })")),
            Paths{});
}

TEST(OtherObjectsConsumer, UsernameIsRequiredAndFollowsApisixPattern) {
  EXPECT_EQ(error_paths("consumers", json::object()), Paths{"consumers[0].username"});
  EXPECT_EQ(error_paths("consumers", {{"username", "jack.doe"}}), Paths{"consumers[0].username"});
  EXPECT_EQ(error_paths("consumers", {{"username", ""}}), Paths{"consumers[0].username"});
  EXPECT_EQ(error_paths("consumers", {{"username", std::string(101, 'a')}}),
            Paths{"consumers[0].username"});
  EXPECT_EQ(error_paths("consumers", {{"username", std::string(100, 'a')}}), Paths{});
  EXPECT_EQ(error_paths("consumers", {{"username", 7}}), Paths{"consumers[0].username"});
}

TEST(OtherObjectsConsumer, IdMustEqualUsername) {
  EXPECT_EQ(error_paths("consumers", {{"username", "jack"}, {"id", "jill"}}),
            Paths{"consumers[0].id"});
  EXPECT_EQ(error_paths("consumers", {{"username", "42"}, {"id", 42}}), Paths{});
}

TEST(OtherObjectsConsumer, PluginsUnknownFieldsAndBadGroupId) {
  EXPECT_EQ(
      error_paths("consumers", json::parse(R"({
    "username": "jack", "plugins": {"key-auth": {"key": "k"}, "no-such-plugin": {}},
    "name": "x", "group_id": "no spaces"
  })")),
      (Paths{"consumers[0].group_id", "consumers[0].name", "consumers[0].plugins.no-such-plugin"}));
  // A consumer's key-auth is its credential: the key is required.
  EXPECT_EQ(error_paths("consumers", json::parse(R"({"username": "jack",
                                                     "plugins": {"key-auth": {}}})")),
            Paths{"consumers[0].plugins.key-auth.key"});
  EXPECT_EQ(error_paths("consumers", {{"username", "jack"}, {"plugins", json::array()}}),
            Paths{"consumers[0].plugins"});
  EXPECT_EQ(error_paths("consumers", "jack"), Paths{"consumers[0]"});
}

// ---- ssls -----------------------------------------------------------------------------------

TEST(OtherObjectsSsl, AcceptsEveryApisixField) {
  json ssl = with(valid_ssl(), {{"id", 1},
                                {"type", "server"},
                                {"snis", {"example.com", "*.example.com"}},
                                {"certs", {pems().rsa_cert}},
                                {"keys", {pems().rsa_key}},
                                {"client", {{"ca", pems().rsa_cert}, {"depth", 2}}},
                                {"ssl_protocols", {"TLSv1.2", "TLSv1.3"}},
                                {"status", 0},
                                {"labels", {{"env", "prod"}}},
                                {"validity_start", 1700000000},
                                {"validity_end", 1800000000},
                                {"create_time", 1700000000},
                                {"update_time", 1700000000}});
  std::string text;
  EXPECT_EQ(error_paths("ssls", ssl, &text), Paths{}) << text;
}

TEST(OtherObjectsSsl, AcceptsChainSingleSniAndClientType) {
  // cert may carry its chain after the leaf; the key must match the leaf.
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"cert", pems().ec_cert + pems().rsa_cert},
                                                   {"snis", nullptr},
                                                   {"sni", "*.example.com"}})),
            Paths{});
  // A client certificate (for upstream mTLS) names no server.
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"type", "client"}, {"snis", nullptr}})),
            Paths{});
}

// What a valid server certificate compiles to: the context the handshake switches to, the
// names in lower case, and the versions of ssl_protocols.
TEST(OtherObjectsSsl, CompilesServerCertificatesForTheHandshake) {
  Errors errors;
  auto cert = validate_ssl(with(valid_ssl(), {{"snis", {"Example.COM", "*.example.com"}},
                                              {"certs", {pems().rsa_cert}},
                                              {"keys", {pems().rsa_key}}}),
                           "ssls[0]", errors)
                  .server;
  ASSERT_TRUE(cert) << errors.to_string();
  EXPECT_NE(cert->context, nullptr);
  EXPECT_EQ(cert->snis, (std::vector<std::string>{"example.com", "*.example.com"}));
  EXPECT_EQ(cert->min_version, TLS1_2_VERSION);  // APISIX's default: TLSv1.2 and TLSv1.3
  EXPECT_EQ(cert->max_version, TLS1_3_VERSION);
  EXPECT_EQ(cert->disabled, 0u);

  cert = validate_ssl(with(valid_ssl(), {{"ssl_protocols", {"TLSv1.3", "TLSv1.1"}}}), "ssls[0]",
                      errors)
             .server;
  ASSERT_TRUE(cert);
  EXPECT_EQ(cert->min_version, TLS1_1_VERSION);
  EXPECT_EQ(cert->max_version, TLS1_3_VERSION);
  EXPECT_EQ(cert->disabled, static_cast<uint64_t>(SSL_OP_NO_TLSv1_2));  // the gap
  cert =
      validate_ssl(with(valid_ssl(), {{"ssl_protocols", {"TLSv1.2"}}}), "ssls[0]", errors).server;
  ASSERT_TRUE(cert);
  EXPECT_EQ(cert->min_version, TLS1_2_VERSION);
  EXPECT_EQ(cert->max_version, TLS1_2_VERSION);
  EXPECT_TRUE(errors.empty()) << errors.to_string();

  // Disabled, client-side and invalid objects serve no handshake.
  EXPECT_FALSE(validate_ssl(with(valid_ssl(), {{"status", 0}}), "ssls[0]", errors).server);
  auto client = validate_ssl(with(valid_ssl(), {{"type", "client"}}), "ssls[0]", errors);
  EXPECT_FALSE(client.server);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  auto bad = validate_ssl(with(valid_ssl(), {{"key", pems().other_key}}), "ssls[0]", errors);
  EXPECT_FALSE(bad.server || bad.client);
  EXPECT_FALSE(errors.empty());
}

// A client certificate is what upstreams show (tls.client_cert_id), enabled or not (APISIX).
TEST(OtherObjectsSsl, ClientCertificatesBecomeUpstreamIdentities) {
  Errors errors;
  for (int status : {1, 0}) {
    auto client = validate_ssl(with(valid_ssl(), {{"type", "client"}, {"status", status}}),
                               "ssls[0]", errors);
    ASSERT_TRUE(client.client) << errors.to_string();
    EXPECT_EQ(client.client->digest.size(), 64u);  // SHA-256 of the certificate, in hex
  }
  EXPECT_FALSE(validate_ssl(valid_ssl(), "ssls[0]", errors).client);
}

TEST(OtherObjectsSsl, RejectsKeyThatDoesNotMatchItsCertificate) {
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"key", pems().other_key}})),
            Paths{"ssls[0].key"});
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"key", pems().rsa_key}})),
            Paths{"ssls[0].key"});
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"certs", {pems().rsa_cert, pems().ec_cert}},
                                                   {"keys", {pems().rsa_key, pems().rsa_key}}})),
            Paths{"ssls[0].keys[1]"});
}

TEST(OtherObjectsSsl, CertsAndKeysPairUp) {
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"certs", {pems().rsa_cert}}})),
            Paths{"ssls[0].keys"});
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"certs", "x"}, {"keys", {pems().rsa_key}}})),
            Paths{"ssls[0].certs"});
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"certs", {"garbage"}}, {"keys", {1}}})),
            (Paths{"ssls[0].certs[0]", "ssls[0].keys[0]"}));
}

TEST(OtherObjectsSsl, MalformedPemIsRejectedWithoutQuotingIt) {
  const std::string& key = pems().ec_key;
  std::string truncated_key = key.substr(0, key.size() / 2) + "\n-----END PRIVATE KEY-----\n";
  std::string fake_cert =
      "-----BEGIN CERTIFICATE-----\nSECRETSECRETSECRET\n-----END CERTIFICATE-----\n";
  std::string text;
  EXPECT_EQ(
      error_paths("ssls", with(valid_ssl(), {{"cert", fake_cert}, {"key", truncated_key}}), &text),
      (Paths{"ssls[0].cert", "ssls[0].key"}));
  EXPECT_EQ(text.find("SECRET"), std::string::npos) << text;
  EXPECT_EQ(text.find(key.substr(40, 16)), std::string::npos) << text;
  EXPECT_EQ(text.find("BEGIN"), std::string::npos) << text;

  // A certificate given as the key and a key given as the certificate.
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"cert", key}, {"key", pems().ec_cert}}), &text),
            (Paths{"ssls[0].cert", "ssls[0].key"}));
  EXPECT_EQ(text.find(key.substr(40, 16)), std::string::npos) << text;
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"cert", std::string(70000, 'a')}})),
            Paths{"ssls[0].cert"});
}

TEST(OtherObjectsSsl, EncryptedKeyIsRejectedWithoutPrompting) {
  std::string text;
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"key", pems().encrypted_key}}), &text),
            Paths{"ssls[0].key"});
  EXPECT_NE(text.find("unencrypted"), std::string::npos) << text;
}

TEST(OtherObjectsSsl, RequiredFieldsAndServerNames) {
  EXPECT_EQ(error_paths("ssls", json::object()),
            (Paths{"ssls[0].cert", "ssls[0].key", "ssls[0].snis"}));
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"snis", nullptr}})), Paths{"ssls[0].snis"});
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"snis", json::array()}})),
            Paths{"ssls[0].snis"});
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"snis", "example.com"}})),
            Paths{"ssls[0].snis"});
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"snis", {"ok.com", 5, "*", "a b.com"}}})),
            (Paths{"ssls[0].snis[1]", "ssls[0].snis[2]", "ssls[0].snis[3]"}));
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"sni", "example.com"}})),
            Paths{"ssls[0].snis"});
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"snis", nullptr}, {"sni", "*example.com"}})),
            Paths{"ssls[0].sni"});
}

TEST(OtherObjectsSsl, BadValuesNameTheirField) {
  json ssl = with(valid_ssl(), {{"type", "peer"},
                                {"status", 2},
                                {"ssl_protocols", {"TLSv1.0", "TLSv1.2", "TLSv1.2"}},
                                {"client", {{"depth", -1}}},
                                {"validity_start", 20},
                                {"validity_end", 10},
                                {"exptime", 1700000000}});
  EXPECT_EQ(error_paths("ssls", ssl),
            (Paths{"ssls[0].client.ca", "ssls[0].client.depth", "ssls[0].exptime",
                   "ssls[0].ssl_protocols[0]", "ssls[0].ssl_protocols[2]", "ssls[0].status",
                   "ssls[0].type", "ssls[0].validity_end"}));
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"ssl_protocols", json::array()}})),
            Paths{"ssls[0].ssl_protocols"});
  EXPECT_EQ(error_paths("ssls", with(valid_ssl(), {{"client", {{"ca", "nope"}, {"x", 1}}}})),
            (Paths{"ssls[0].client.ca", "ssls[0].client.x"}));
}

// ---- global_rules, plugin_configs, protos ---------------------------------------------------

TEST(OtherObjectsGlobalRule, NeedsAPluginsObject) {
  EXPECT_EQ(error_paths("global_rules", json::parse(
                                            R"({"id": 1, "plugins": {}, "create_time": 1,
                                                "update_time": 2})")),
            Paths{});
  EXPECT_EQ(error_paths("global_rules", {{"id", 1}}), Paths{"global_rules[0].plugins"});
  EXPECT_EQ(error_paths("global_rules", {{"plugins", json::array()}}),
            Paths{"global_rules[0].plugins"});
  EXPECT_EQ(error_paths("global_rules", json::parse(R"({"plugins": {"no-such-plugin": {}},
                                                        "desc": "no desc here"})")),
            (Paths{"global_rules[0].desc", "global_rules[0].plugins.no-such-plugin"}));
  EXPECT_EQ(error_paths("global_rules", {{"id", -1}, {"plugins", json::object()}}),
            Paths{"global_rules[0].id"});
}

TEST(OtherObjectsPluginConfig, NeedsAPluginsObject) {
  EXPECT_EQ(error_paths("plugin_configs", json::parse(R"({"id": "pc-1", "plugins": {},
                                            "desc": "d", "labels": {"a": "b"}})")),
            Paths{});
  EXPECT_EQ(error_paths("plugin_configs", json::object()), Paths{"plugin_configs[0].plugins"});
  EXPECT_EQ(
      error_paths("plugin_configs",
                  json::parse(R"({"plugins": {"no-such-plugin": {}}, "name": "x", "id": "a b"})")),
      (Paths{"plugin_configs[0].id", "plugin_configs[0].name",
             "plugin_configs[0].plugins.no-such-plugin"}));
}

TEST(OtherObjectsProto, NeedsNonEmptyContent) {
  EXPECT_EQ(error_paths("protos", json::parse(R"({"id": 1, "name": "hello", "desc": "d",
      "labels": {}, "content": "syntax = \"proto3\"; package hello;"})")),
            Paths{});
  EXPECT_EQ(error_paths("protos", {{"id", 1}}), Paths{"protos[0].content"});
  EXPECT_EQ(error_paths("protos", {{"content", ""}}), Paths{"protos[0].content"});
  EXPECT_EQ(error_paths("protos", {{"content", 5}}), Paths{"protos[0].content"});
  EXPECT_EQ(error_paths("protos", {{"content", std::string(1024 * 1024 + 1, 'x')}}),
            Paths{"protos[0].content"});
  EXPECT_EQ(
      error_paths("protos", {{"content", "syntax = \"proto3\";"}, {"name", 3}, {"package", "p"}}),
      (Paths{"protos[0].name", "protos[0].package"}));
  // The content is compiled when the object arrives: a .proto that does not build is refused.
  EXPECT_EQ(error_paths("protos", {{"content", "x"}}), Paths{"protos[0].content"});
  EXPECT_EQ(error_paths("protos", {{"content", "syntax = \"proto3\"; message A { B b = 1; }"}}),
            Paths{"protos[0].content"});
}

// ---- stream_routes --------------------------------------------------------------------------

TEST(OtherObjectsStreamRoute, AcceptsApisixShape) {
  EXPECT_EQ(error_paths("stream_routes", json::parse(R"({
    "id": 1, "desc": "redis", "labels": {"a": "b"}, "create_time": 1, "update_time": 2,
    "remote_addr": "10.0.0.0/8", "server_addr": "::1", "server_port": 9100,
    "sni": "*.example.com", "upstream": {"nodes": {"127.0.0.1:6379": 1}, "type": "roundrobin"},
    "plugins": {}, "protocol": {"name": "tlv", "conf": {"idle_timeout": "60s"}}
  })")),
            Paths{});
  // A protocol Portico does not speak is refused rather than proxied as raw bytes.
  EXPECT_EQ(error_paths("stream_routes", json::parse(R"({
    "upstream_id": 1, "protocol": {"name": "redis", "conf": {"faults": []}}})")),
            Paths{"stream_routes[0].protocol.name"});
  EXPECT_EQ(error_paths("stream_routes", {{"remote_addr", "192.168.1.7"}, {"upstream_id", 1}}),
            Paths{});
}

TEST(OtherObjectsStreamRoute, ReturnsReferencesForTheCaller) {
  Errors errors;
  auto route = validate_stream_route({{"upstream_id", 3}, {"service_id", "s1"}}, "sr", errors);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  EXPECT_EQ(route->upstream_id, "3");
  EXPECT_EQ(route->service_id, "s1");
  EXPECT_EQ(route->protocol, "");
  route = validate_stream_route({{"upstream", {{"nodes", {{"127.0.0.1:80", 1}}}}}}, "sr", errors);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  EXPECT_EQ(route->upstream_id, "");
  EXPECT_EQ(route->service_id, "");
  ASSERT_TRUE(route->upstream);
}

TEST(OtherObjectsStreamRoute, NeedsAnUpstream) {
  std::string text;
  EXPECT_EQ(error_paths("stream_routes", {{"server_port", 9100}}, &text),
            Paths{"stream_routes[0]"});
  EXPECT_NE(text.find("needs an upstream"), std::string::npos) << text;
  // An upstream_id of the wrong type is its own error, not a missing upstream.
  EXPECT_EQ(error_paths("stream_routes", {{"upstream_id", "a b"}}),
            Paths{"stream_routes[0].upstream_id"});
}

TEST(OtherObjectsStreamRoute, BadValuesNameTheirField) {
  EXPECT_EQ(error_paths("stream_routes", json::parse(R"({
    "remote_addr": "10.0.0.0/33", "server_addr": "10.0.0.0/8", "server_port": 0,
    "sni": "bad host", "upstream": {"nodes": {}, "type": "chash"}, "service_id": "s 1",
    "protocol": {"conf": 1, "logger": []}, "plugins": {"mqtt-proxy": {}}, "name": "x"
  })")),
            (Paths{"stream_routes[0].name", "stream_routes[0].plugins.mqtt-proxy",
                   "stream_routes[0].protocol.conf", "stream_routes[0].protocol.logger",
                   "stream_routes[0].protocol.name", "stream_routes[0].remote_addr",
                   "stream_routes[0].server_addr", "stream_routes[0].server_port",
                   "stream_routes[0].service_id", "stream_routes[0].sni",
                   "stream_routes[0].upstream.key", "stream_routes[0].upstream.nodes"}));
  EXPECT_EQ(error_paths("stream_routes", {{"upstream_id", 1}, {"server_port", 65536}}),
            Paths{"stream_routes[0].server_port"});
  EXPECT_EQ(error_paths("stream_routes", {{"upstream_id", 1}, {"protocol", "redis"}}),
            Paths{"stream_routes[0].protocol"});
}

// ---- dispatch -------------------------------------------------------------------------------

TEST(OtherObjectsDispatch, OnlyKnownKindsAreHandled) {
  for (const char* kind : {"consumer_group", "secrets", ""}) EXPECT_FALSE(parse_kind(kind)) << kind;
  for (const char* kind : {"consumers", "ssls", "global_rules", "plugin_configs", "protos",
                           "stream_routes", "consumer_groups"}) {
    Errors e;
    StoredObject out;
    EXPECT_FALSE(validate_object(*parse_kind(kind), json::array(), "x", e, out)) << kind;
    EXPECT_EQ(e.to_string(), "x: must be an object\n") << kind;
  }
}
