#include "config/change_check.hpp"

#include <gtest/gtest.h>

using namespace portico::config;

namespace {

json upstream_json(const std::string& type = "roundrobin") {
  return {{"type", type}, {"key", "remote_addr"}, {"nodes", {{"127.0.0.1:8080", 1}}}};
}

json counted_route(const std::string& uri, int count) {
  return {{"uri", uri},
          {"upstream", upstream_json()},
          {"plugins", {{"limit-count", {{"count", count}, {"time_window", 60}, {"group", "g"}}}}}};
}

class ChangeCheck : public ::testing::Test {
 protected:
  // Ids are in the values, as the Admin API and the etcd source put them.
  void put(Kind kind, const std::string& id, json value) {
    value["id"] = id;
    Errors errors;
    ++revision_;
    ASSERT_TRUE(store_.put(kind, id, std::move(value), std::string(kind_name(kind)) + "/" + id,
                           revision_, revision_, errors))
        << errors.to_string();
  }

  // check_change's errors for writing `value` as (kind, id), as "path: message" lines.
  std::string check(Kind kind, const std::string& id, json value, const UnseenRefs& unseen = {}) {
    value["id"] = id;
    Errors errors;
    StoredObject obj;
    const StoredObject* old = store_.find(kind, id);
    EXPECT_TRUE(
        validate_object(kind, value, "", errors, obj, old ? old->create_revision : revision_ + 1))
        << errors.to_string();
    check_change(store_, kind, id, obj, fresh_, unseen, errors);
    return errors.to_string();
  }

  ObjectStore store_;
  FreshObjects fresh_;  // versions read from etcd that this node's store has not caught up with
  int64_t revision_ = 0;
};

}  // namespace

TEST_F(ChangeCheck, AServiceThatLosesItsUpstreamNamesTheRoutesThatNeedIt) {
  put(Kind::Upstreams, "u1", upstream_json());
  put(Kind::Services, "s1", {{"upstream_id", "u1"}});
  put(Kind::Routes, "r1", {{"uri", "/a"}, {"service_id", "s1"}});
  put(Kind::Routes, "own", {{"uri", "/b"}, {"service_id", "s1"}, {"upstream_id", "u1"}});
  EXPECT_EQ(check(Kind::Services, "s1", {{"name", "bare"}}),
            "routes/r1.service_id: needs an upstream: neither this route nor service \"s1\" has "
            "one (this change would leave route \"r1\" out)\n");
  EXPECT_EQ(check(Kind::Services, "s1", {{"upstream", upstream_json()}}), "");
}

TEST_F(ChangeCheck, ANewRouteOnAServiceWithoutUpstreamIsRefusedUnderItsOwnField) {
  put(Kind::Services, "bare", {{"hosts", {"x.test"}}});
  EXPECT_EQ(check(Kind::Routes, "r1", {{"uri", "/a"}, {"service_id", "bare"}}),
            "service_id: needs an upstream: neither this route nor service \"bare\" has one\n");
  EXPECT_EQ(check(Kind::Routes, "r1",
                  {{"uri", "/a"}, {"service_id", "bare"}, {"upstream", upstream_json()}}),
            "");
}

TEST_F(ChangeCheck, ALimitCountGroupBelongsToItsOldestRoute) {
  put(Kind::Routes, "g1", counted_route("/g1", 100));
  put(Kind::Routes, "g2", counted_route("/g2", 100));
  // a newer member with other settings is the one left out
  EXPECT_EQ(check(Kind::Routes, "g3", counted_route("/g3", 5)),
            "plugins.limit-count.group: group \"g\" is configured differently at "
            "routes/g1.plugins.limit-count (a group shares one counter: every route of it needs "
            "the same limit-count settings)\n");
  // the oldest changed alone would push the newer one out
  std::string pushed = check(Kind::Routes, "g1", counted_route("/g1", 5));
  EXPECT_NE(pushed.find("routes/g2.plugins.limit-count.group: "), std::string::npos) << pushed;
  EXPECT_NE(pushed.find("(this change would leave route \"g2\" out)"), std::string::npos);
  EXPECT_EQ(check(Kind::Routes, "g2", counted_route("/g2", 100)), "");
  json alone = counted_route("/g1", 5);
  alone["plugins"]["limit-count"].erase("group");
  EXPECT_EQ(check(Kind::Routes, "g1", alone), "");
}

TEST_F(ChangeCheck, ObjectsThatFallWithAnotherAreCountedNotListed) {
  put(Kind::Upstreams, "u1", upstream_json());
  put(Kind::Services, "s1", {{"upstream_id", "u1"}});
  put(Kind::Routes, "r1", {{"uri", "/a"}, {"service_id", "s1"}});
  put(Kind::Routes, "r2", {{"uri", "/b"}, {"upstream_id", "u1"}});
  json named = upstream_json();
  named["scheme"] = "https";
  named["tls"] = {{"client_cert_id", "gone"}};
  EXPECT_EQ(check(Kind::Upstreams, "u1", named),
            "tls.client_cert_id: unknown ssl \"gone\"\n"
            "2 more objects depend on them and would be left out too\n");  // r1 and r2
}

TEST_F(ChangeCheck, WhatWasLeftOutAlreadyIsNotBlamedOnTheChange) {
  put(Kind::Upstreams, "u1", upstream_json());
  put(Kind::Services, "bare", {{"hosts", {"x.test"}}});
  put(Kind::Routes, "r1", {{"uri", "/a"}, {"service_id", "bare"}});  // no upstream anywhere
  EXPECT_EQ(check(Kind::Services, "bare", {{"hosts", {"y.test"}}}), "");
  // References this node has not seen yet (read from etcd by the caller) count as present.
  EXPECT_EQ(check(Kind::Routes, "r2", {{"uri", "/b"}, {"upstream_id", "fresh"}},
                  {{Kind::Upstreams, "fresh"}}),
            "");
  EXPECT_EQ(check(Kind::Routes, "r2", {{"uri", "/b"}, {"upstream_id", "fresh"}}),
            "upstream_id: unknown upstream \"fresh\"\n");
}

TEST_F(ChangeCheck, AStreamRouteHashingOnToKeepsItsChashUpstream) {
  put(Kind::Upstreams, "chat", upstream_json("chash"));
  put(Kind::StreamRoutes, "im", json::parse(R"({"upstream_id": "chat", "protocol": {"name": "tlv",
      "conf": {"routes": [{"cmds": ["0x4001"], "upstream_id": "chat", "hash_on": "to"}]}}})"));
  EXPECT_EQ(check(Kind::Upstreams, "chat", upstream_json("roundrobin")),
            "stream_routes/im.protocol.conf.routes[0].hash_on: \"to\" needs a chash upstream "
            "(type: chash) (this change would leave stream_route \"im\" out)\n");
  EXPECT_EQ(check(Kind::Upstreams, "chat", upstream_json("chash")), "");
}

TEST_F(ChangeCheck, ARouteWithItsOwnUpstreamDoesNotFallWithItsServicesUpstream) {
  // The compiler still serves the service (only its missing references would drop it), and a
  // route with an upstream of its own never asks for the service's.
  put(Kind::Upstreams, "u1", upstream_json());
  put(Kind::Services, "s1", {{"upstream_id", "u1"}});
  put(Kind::Routes, "own", {{"uri", "/a"}, {"service_id", "s1"}, {"upstream", upstream_json()}});
  put(Kind::Routes, "via", {{"uri", "/b"}, {"service_id", "s1"}});
  json named = upstream_json();
  named["scheme"] = "https";
  named["tls"] = {{"client_cert_id", "gone"}};
  EXPECT_EQ(check(Kind::Upstreams, "u1", named),
            "tls.client_cert_id: unknown ssl \"gone\"\n"
            "1 more object depends on them and would be left out too\n");
}

TEST_F(ChangeCheck, VersionsJustReadFromEtcdStandInForALaggingStore) {
  put(Kind::Upstreams, "u1", upstream_json());
  put(Kind::Services, "s1", {{"hosts", {"x.test"}}});  // this node's view: no upstream yet
  std::string lagging = check(Kind::Routes, "r1", {{"uri", "/a"}, {"service_id", "s1"}});
  EXPECT_NE(lagging.find("needs an upstream"), std::string::npos) << lagging;
  Errors errors;
  StoredObject now;
  ASSERT_TRUE(
      validate_object(Kind::Services, {{"id", "s1"}, {"upstream_id", "u1"}}, "", errors, now));
  fresh_.emplace(std::pair{Kind::Services, std::string("s1")}, std::move(now));
  EXPECT_EQ(check(Kind::Routes, "r1", {{"uri", "/a"}, {"service_id", "s1"}}), "");
}

TEST_F(ChangeCheck, PluginsARouteTakesFromItsServiceAreCheckedToo) {
  put(Kind::Routes, "g1", counted_route("/g1", 100));
  json svc = counted_route("/unused", 5);
  svc.erase("uri");
  put(Kind::Services, "s5", svc);
  std::string out = check(Kind::Routes, "r2", {{"uri", "/r2"}, {"service_id", "s5"}});
  EXPECT_NE(out.find("plugins.limit-count.group: group \"g\" is configured differently at "
                     "routes/g1.plugins.limit-count"),
            std::string::npos)
      << out;
}

TEST_F(ChangeCheck, ARouteComingBackThatTakesItsGroupFromAnotherIsRefused) {
  // g0 is the group's oldest route but left out (its service has no upstream); g1 holds the
  // group. Giving the service an upstream would bring g0 back and push g1 out.
  put(Kind::Services, "bare", {{"hosts", {"x.test"}}});
  json g0 = counted_route("/g0", 5);
  g0.erase("upstream");
  g0["service_id"] = "bare";
  put(Kind::Routes, "g0", g0);
  put(Kind::Routes, "g1", counted_route("/g1", 100));
  std::string out = check(Kind::Services, "bare", {{"upstream", upstream_json()}});
  EXPECT_NE(out.find("routes/g1.plugins.limit-count.group"), std::string::npos) << out;
}
