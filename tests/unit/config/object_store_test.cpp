#include "config/object_store.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "config/yaml_json.hpp"

using namespace portico::config;
using Strings = std::vector<std::string>;

namespace {

json upstream_json(int port = 8080) {
  return {{"type", "roundrobin"}, {"nodes", {{"127.0.0.1:" + std::to_string(port), 1}}}};
}

json route_json(const std::string& uri, json extra = json::object()) {
  json r = {{"uri", uri}};
  r.merge_patch(extra);
  return r;
}

// Puts a valid object and fails the test if the store refuses it.
void put_ok(ObjectStore& store, Kind kind, const std::string& id, json value,
            int64_t create_revision = 1) {
  Errors errors;
  std::string key = "/portico/" + std::string(kind_name(kind)) + "/" + id;
  ASSERT_TRUE(store.put(kind, id, std::move(value), key, create_revision, create_revision, errors))
      << errors.to_string();
  ASSERT_TRUE(errors.empty());
}

Strings paths_of(const Errors& errors) {
  Strings out;
  for (const auto& e : errors.list()) out.push_back(e.path);
  std::sort(out.begin(), out.end());
  return out;
}

Strings uris_of(const ConfigSet& set) {
  Strings out;
  for (const auto& r : set.routes) out.push_back(r->uris.at(0));
  return out;
}

// store_from_document on YAML text; the errors as "path: message" lines.
std::string document_errors(const std::string& yaml, ObjectStore* out = nullptr) {
  Errors errors;
  ObjectStore store = store_from_document(yaml_to_json(yaml), errors);
  if (out) *out = std::move(store);
  return errors.to_string();
}

}  // namespace

// ---- put / erase ------------------------------------------------------------------------------

TEST(ObjectStore, PutValidObjectKeepsValueSourceRevisionsAndTypedForm) {
  ObjectStore store;
  Errors errors;
  json value = route_json("/a", {{"id", "r1"}, {"upstream", upstream_json()}});
  ASSERT_TRUE(store.put(Kind::Routes, "r1", value, "/portico/routes/r1", 7, 9, errors));
  const StoredObject* obj = store.find(Kind::Routes, "r1");
  ASSERT_NE(obj, nullptr);
  EXPECT_EQ(obj->value, value);
  EXPECT_EQ(obj->source, "/portico/routes/r1");
  EXPECT_EQ(obj->create_revision, 7);
  EXPECT_EQ(obj->mod_revision, 9);
  ASSERT_TRUE(obj->route);
  EXPECT_EQ(obj->route->uris, Strings{"/a"});
  EXPECT_EQ(store.size(), 1u);
}

TEST(ObjectStore, PutInvalidObjectLeavesTheStoreUnchangedAndNamesTheFields) {
  ObjectStore store;
  put_ok(store, Kind::Routes, "r1", route_json("/old", {{"upstream", upstream_json()}}), 3);

  Errors errors;
  json bad =
      route_json("no-slash", {{"upstream", {{"nodes", {{"127.0.0.1:0", 1}}}}}, {"colour", "blue"}});
  EXPECT_FALSE(store.put(Kind::Routes, "r1", bad, "/portico/routes/r1", 3, 4, errors));
  EXPECT_EQ(paths_of(errors), (Strings{"/portico/routes/r1.colour",
                                       "/portico/routes/r1.upstream.nodes[\"127.0.0.1:0\"]",
                                       "/portico/routes/r1.uris[0]"}))
      << errors.to_string();

  // the old version is still there, untouched
  const StoredObject* obj = store.find(Kind::Routes, "r1");
  ASSERT_NE(obj, nullptr);
  EXPECT_EQ(obj->route->uris, Strings{"/old"});
  EXPECT_EQ(obj->mod_revision, 3);

  // an invalid new object is not added either
  Errors more;
  EXPECT_FALSE(store.put(Kind::Upstreams, "u1", json{{"nodes", "nope"}}, "/portico/upstreams/u1", 5,
                         5, more));
  EXPECT_FALSE(more.empty());
  EXPECT_EQ(store.find(Kind::Upstreams, "u1"), nullptr);
  EXPECT_EQ(store.size(), 1u);
}

TEST(ObjectStore, RouteWithoutAnyUpstreamIsRefused) {
  ObjectStore store;
  Errors errors;
  EXPECT_FALSE(store.put(Kind::Routes, "r", route_json("/a"), "routes[0]", 1, 1, errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors.list()[0].path, "routes[0]");
  EXPECT_NE(errors.list()[0].message.find("needs an upstream"), std::string::npos);
}

TEST(ObjectStore, PutReplacesAndEraseRemoves) {
  ObjectStore store;
  put_ok(store, Kind::Upstreams, "u1", upstream_json(1000));
  put_ok(store, Kind::Upstreams, "u1", upstream_json(2000));
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.find(Kind::Upstreams, "u1")->upstream->nodes.at(0).port, 2000);
  EXPECT_TRUE(store.erase(Kind::Upstreams, "u1"));
  EXPECT_FALSE(store.erase(Kind::Upstreams, "u1"));
  EXPECT_EQ(store.find(Kind::Upstreams, "u1"), nullptr);
}

// ---- references -------------------------------------------------------------------------------

TEST(ObjectStore, ReferrersNameEveryObjectReferringToAnId) {
  ObjectStore store;
  put_ok(store, Kind::Upstreams, "u1", upstream_json());
  put_ok(store, Kind::Upstreams, "u2", upstream_json());
  put_ok(store, Kind::Services, "s1", json{{"upstream_id", "u1"}});
  put_ok(store, Kind::Routes, "r1", route_json("/1", {{"upstream_id", "u1"}}));
  put_ok(store, Kind::Routes, "r2", route_json("/2", {{"service_id", "s1"}}));
  put_ok(store, Kind::StreamRoutes, "sr1", json{{"upstream_id", "u1"}});
  put_ok(store, Kind::PluginConfigs, "pc1", json{{"plugins", json::object()}});
  put_ok(store, Kind::Routes, "r3",
         route_json("/3", {{"upstream_id", "u2"}, {"plugin_config_id", "pc1"}}));

  Strings u1 = store.referrers(Kind::Upstreams, "u1");
  std::sort(u1.begin(), u1.end());
  EXPECT_EQ(u1, (Strings{"route [r1]", "service [s1]", "stream_route [sr1]"}));
  EXPECT_EQ(store.referrers(Kind::Upstreams, "u2"), Strings{"route [r3]"});
  EXPECT_EQ(store.referrers(Kind::Services, "s1"), Strings{"route [r2]"});
  EXPECT_EQ(store.referrers(Kind::PluginConfigs, "pc1"), Strings{"route [r3]"});
  EXPECT_TRUE(store.referrers(Kind::Routes, "r1").empty());
  EXPECT_TRUE(store.referrers(Kind::Upstreams, "nobody-uses-this").empty());
  // same id, other kind: not a referrer
  EXPECT_TRUE(store.referrers(Kind::Services, "u1").empty());
}

TEST(ObjectStore, CheckReferencesReportsEachMissingObjectUnderItsField) {
  ObjectStore store;
  put_ok(store, Kind::Upstreams, "u1", upstream_json());
  StoredObject obj;
  Errors errors;
  ASSERT_TRUE(validate_object(
      Kind::Routes,
      route_json("/a", {{"upstream_id", "u1"}, {"service_id", "s9"}, {"plugin_config_id", "pc9"}}),
      "routes[4]", errors, obj));
  store.check_references(obj, "routes[4]", errors);
  ASSERT_EQ(errors.size(), 2u) << errors.to_string();
  EXPECT_EQ(errors.to_string(),
            "routes[4].service_id: unknown service \"s9\"\n"
            "routes[4].plugin_config_id: unknown plugin_config \"pc9\"\n");

  // an empty path gives bare field names (the Admin API's body)
  Errors bare;
  store.check_references(obj, "", bare);
  EXPECT_EQ(paths_of(bare), (Strings{"plugin_config_id", "service_id"}));

  // once the objects exist, nothing is reported
  put_ok(store, Kind::Services, "s9", json{{"upstream_id", "u1"}});
  put_ok(store, Kind::PluginConfigs, "pc9", json{{"plugins", json::object()}});
  Errors none;
  store.check_references(obj, "routes[4]", none);
  EXPECT_TRUE(none.empty()) << none.to_string();
}

// ---- config_set -------------------------------------------------------------------------------

TEST(ObjectStore, ConfigSetLeavesOutRoutesWithMissingReferencesAndSaysWhy) {
  ObjectStore store;
  put_ok(store, Kind::Upstreams, "u1", upstream_json());
  put_ok(store, Kind::Services, "s1", json{{"upstream_id", "u1"}});
  put_ok(store, Kind::Routes, "ok-upstream", route_json("/ok-u", {{"upstream_id", "u1"}}), 1);
  put_ok(store, Kind::Routes, "ok-service", route_json("/ok-s", {{"service_id", "s1"}}), 2);
  put_ok(store, Kind::Routes, "no-upstream", route_json("/no-u", {{"upstream_id", "gone"}}), 3);
  put_ok(store, Kind::Routes, "no-service", route_json("/no-s", {{"service_id", "gone"}}), 4);
  put_ok(store, Kind::Services, "s-orphan", json{{"upstream_id", "gone"}});

  Errors problems;
  ConfigSet set = store.config_set(problems);
  EXPECT_EQ(uris_of(set), (Strings{"/ok-u", "/ok-s"}));
  ASSERT_EQ(set.services.size(), 1u);  // s-orphan is left out too
  EXPECT_EQ(set.upstreams.size(), 1u);
  EXPECT_EQ(problems.to_string(),
            "/portico/services/s-orphan.upstream_id: unknown upstream \"gone\"\n"
            "/portico/routes/no-upstream.upstream_id: unknown upstream \"gone\"\n"
            "/portico/routes/no-service.service_id: unknown service \"gone\"\n");
}

TEST(ObjectStore, ConfigSetLeavesOutRoutesWhoseServiceHasNoUpstream) {
  ObjectStore store;
  put_ok(store, Kind::Services, "bare", json{{"hosts", {"example.com"}}});
  put_ok(store, Kind::Routes, "r", route_json("/r", {{"service_id", "bare"}}));
  Errors problems;
  ConfigSet set = store.config_set(problems);
  EXPECT_TRUE(set.routes.empty());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems.list()[0].path, "/portico/routes/r");
  EXPECT_NE(problems.list()[0].message.find("needs an upstream"), std::string::npos);
}

TEST(ObjectStore, ConfigSetOrdersRoutesByCreateRevisionThenId) {
  ObjectStore store;
  json up = {{"upstream", upstream_json()}};
  // ids in the opposite order of creation, so map order would be wrong
  put_ok(store, Kind::Routes, "a", route_json("/third", up), 30);
  put_ok(store, Kind::Routes, "b", route_json("/second", up), 20);
  put_ok(store, Kind::Routes, "c", route_json("/first", up), 10);
  put_ok(store, Kind::Routes, "e", route_json("/fourth-tie-e", up), 40);
  put_ok(store, Kind::Routes, "d", route_json("/fourth-tie-d", up), 40);
  Errors problems;
  ConfigSet set = store.config_set(problems);
  EXPECT_TRUE(problems.empty()) << problems.to_string();
  EXPECT_EQ(uris_of(set),
            (Strings{"/first", "/second", "/third", "/fourth-tie-d", "/fourth-tie-e"}));

  // an update keeps the create revision, so the route keeps its place
  put_ok(store, Kind::Routes, "c", route_json("/first-updated", up), 10);
  EXPECT_EQ(uris_of(store.config_set(problems)).front(), "/first-updated");
}

// ---- store_from_document (the routes file) ----------------------------------------------------

TEST(StoreFromDocument, LoadsEveryKindWithFilePositionsAsRevisions) {
  ObjectStore store;
  std::string errors = document_errors(R"(
upstreams:
  - {id: u1, nodes: {"127.0.0.1:80": 1}}
services:
  - {id: s1, upstream_id: u1}
routes:
  - {id: r1, uri: /one, service_id: s1}
  - {id: 2, uri: /two, upstream_id: u1}
consumers:
  - {username: alice}
plugin_configs:
  - {id: pc1, plugins: {}}
stream_routes:
  - {id: sr1, upstream_id: u1}
)",
                                       &store);
  EXPECT_EQ(errors, "");
  EXPECT_EQ(store.size(), 7u);
  ASSERT_NE(store.find(Kind::Routes, "2"), nullptr);  // a numeric id becomes its digits
  EXPECT_EQ(store.find(Kind::Routes, "2")->source, "routes[1]");
  EXPECT_EQ(store.find(Kind::Routes, "2")->create_revision, 2);
  EXPECT_NE(store.find(Kind::Consumers, "alice"), nullptr);  // consumers go by username
  EXPECT_NE(store.find(Kind::StreamRoutes, "sr1"), nullptr);
}

TEST(StoreFromDocument, EmptyDocumentIsAnEmptyStore) {
  ObjectStore store;
  EXPECT_EQ(document_errors("", &store), "");
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(document_errors("routes: []\n", &store), "");
  EXPECT_EQ(store.size(), 0u);
}

TEST(StoreFromDocument, DuplicateIdsAreErrorsPerKind) {
  std::string errors = document_errors(R"(
upstreams:
  - {id: x, nodes: {"127.0.0.1:80": 1}}
  - {id: x, nodes: {"127.0.0.1:81": 1}}
routes:
  - {id: x, uri: /a, upstream_id: x}
  - {id: "7", uri: /b, upstream_id: x}
  - {id: 7, uri: /c, upstream_id: x}
consumers:
  - {username: bob}
  - {username: bob}
)");
  // the same id in two kinds (route x, upstream x) is fine; "7" and 7 are the same id
  EXPECT_EQ(errors,
            "routes[2].id: duplicate id \"7\"\n"
            "upstreams[1].id: duplicate id \"x\"\n"
            "consumers[1].username: duplicate id \"bob\"\n");
}

TEST(StoreFromDocument, MissingIdsAreRequired) {
  std::string errors = document_errors(R"(
routes:
  - {uri: /a, upstream: {nodes: {"127.0.0.1:80": 1}}}
upstreams:
  - {nodes: {"127.0.0.1:80": 1}}
consumers:
  - {id: not-a-username}
)");
  EXPECT_NE(errors.find("routes[0].id: is required"), std::string::npos) << errors;
  EXPECT_NE(errors.find("upstreams[0].id: is required"), std::string::npos) << errors;
  EXPECT_NE(errors.find("consumers[0].username: is required"), std::string::npos) << errors;
}

TEST(StoreFromDocument, UnknownReferencesOfEveryKindAreErrors) {
  std::string errors = document_errors(R"(
upstreams:
  - {id: u1, nodes: {"127.0.0.1:80": 1}}
services:
  - {id: s1, upstream_id: u-missing}
routes:
  - {id: r1, uri: /a, upstream_id: u1, plugin_config_id: pc-missing}
  - {id: r2, uri: /b, service_id: s-missing}
stream_routes:
  - {id: sr1, upstream_id: u1, service_id: s-missing-too}
)");
  EXPECT_EQ(errors,
            "routes[0].plugin_config_id: unknown plugin_config \"pc-missing\"\n"
            "routes[1].service_id: unknown service \"s-missing\"\n"
            "services[0].upstream_id: unknown upstream \"u-missing\"\n"
            "stream_routes[0].service_id: unknown service \"s-missing-too\"\n");
}

TEST(StoreFromDocument, AnInvalidObjectIsReportedOnceNotAgainAsAMissingReference) {
  std::string errors = document_errors(R"(
upstreams:
  - {id: u1, nodes: {"127.0.0.1:99999": 1}}
routes:
  - {id: r1, uri: /a, upstream_id: u1}
)");
  // u1 is invalid but its id was seen: the route's reference is not reported as unknown
  EXPECT_EQ(errors.find("unknown upstream"), std::string::npos) << errors;
  EXPECT_NE(errors.find("upstreams[0].nodes"), std::string::npos) << errors;
}

TEST(StoreFromDocument, UnknownKindsAndNonListsAreRejected) {
  EXPECT_EQ(document_errors("widgets: []\n"), "widgets: unknown field\n");
  EXPECT_EQ(document_errors("routes: {id: r1}\n"), "routes: must be a list\n");
  EXPECT_EQ(document_errors("- just a list\n"), "must be an object\n");
}
