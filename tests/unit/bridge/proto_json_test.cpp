#include "bridge/proto_json.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <gtest/gtest.h>

#include "proto_test_util.hpp"

namespace portico::bridge {
namespace {

using json = nlohmann::json;
namespace pb = google::protobuf;

class ProtoJson : public ::testing::Test {
 protected:
  std::unique_ptr<pb::Message> make(const char* type = "Everything") {
    return std::unique_ptr<pb::Message>(set->prototype(set->message(type))->New());
  }
  // JSON -> message -> wire -> message -> JSON
  json round_trip(const json& in, const char* type = "Everything") {
    auto m = make(type);
    std::string error;
    EXPECT_TRUE(json_to_message(in, *m, "data", error)) << error;
    std::string wire;
    EXPECT_TRUE(m->SerializeToString(&wire));
    auto back = make(type);
    EXPECT_TRUE(back->ParseFromString(wire));
    auto out = message_to_json(*back);
    EXPECT_TRUE(out);
    return out ? *out : json();
  }
  std::string refusal(const json& in, const char* type = "Everything") {
    auto m = make(type);
    std::string error;
    EXPECT_FALSE(json_to_message(in, *m, "data", error)) << in.dump();
    return error;
  }
  std::shared_ptr<const ProtoSet> set = test_protos();
};

TEST_F(ProtoJson, ScalarsDefaultsAreWrittenAndNamesAreDeclared) {
  json out = round_trip(json::object());
  EXPECT_EQ(out["i32"], 0);
  EXPECT_EQ(out["s"], "");
  EXPECT_EQ(out["b"], false);
  EXPECT_EQ(out["color"], "RED");
  EXPECT_EQ(out["tags"], json::array());
  EXPECT_EQ(out["counts"], json::object());
  EXPECT_TRUE(out.contains("user_name"));  // declared name, not userName
  EXPECT_FALSE(out.contains("inner"));     // unset sub-message
  EXPECT_FALSE(out.contains("text"));      // unset oneof member
  EXPECT_FALSE(out.contains("maybe"));     // unset optional scalar
}

TEST_F(ProtoJson, EveryKindRoundTrips) {
  json in = {{"i32", -5},
             {"u32", 4000000000u},
             {"f", 1.5},
             {"d", -2.25},
             {"b", true},
             {"s", "héllo"},
             {"raw", "AAH/"},
             {"color", "BLUE"},
             {"inner", {{"name", "n"}, {"values", {1, 2, 3}}}},
             {"inners", {{{"name", "a"}}, {{"name", "b"}}}},
             {"tags", {"x", "y"}},
             {"counts", {{"k", 7}}},
             {"by_id", {{"12", {{"name", "twelve"}}}}},
             {"text", "chosen"},
             {"maybe", 0}};
  json out = round_trip(in);
  for (const char* key :
       {"i32", "u32", "f", "d", "b", "s", "raw", "color", "tags", "counts", "text", "maybe"})
    EXPECT_EQ(out[key], in[key]) << key;
  EXPECT_EQ(out["inner"]["values"], json({1, 2, 3}));
  EXPECT_EQ(out["inners"][1]["name"], "b");
  EXPECT_EQ(out["by_id"]["12"]["name"], "twelve");
}

TEST_F(ProtoJson, SixtyFourBitIntegersAreNumbersUpTo2To53ThenStrings) {
  json out = round_trip({{"i64", 9007199254740992LL},
                         {"u64", "9007199254740993"},
                         {"s64", -9007199254740993LL},
                         {"f64", "18446744073709551615"}});
  EXPECT_EQ(out["i64"], 9007199254740992LL);
  EXPECT_TRUE(out["i64"].is_number());
  EXPECT_EQ(out["u64"], "9007199254740993");
  EXPECT_EQ(out["s64"], "-9007199254740993");
  EXPECT_EQ(out["f64"], "18446744073709551615");
}

TEST_F(ProtoJson, AcceptsJsonNamesEnumNumbersIntegralFloatsAndNulls) {
  json out = round_trip({{"userName", "bob"}, {"color", 1}, {"i32", 3.0}, {"inner", nullptr}});
  EXPECT_EQ(out["user_name"], "bob");
  EXPECT_EQ(out["color"], "GREEN");
  EXPECT_EQ(out["i32"], 3);
  EXPECT_FALSE(out.contains("inner"));
}

TEST_F(ProtoJson, UnknownOpenEnumNumbersSurviveAsNumbers) {
  EXPECT_EQ(round_trip({{"color", 9}})["color"], 9);
}

TEST_F(ProtoJson, NonFiniteDoublesAreStrings) {
  json out = round_trip({{"d", "NaN"}, {"f", "-Infinity"}});
  EXPECT_EQ(out["d"], "NaN");
  EXPECT_EQ(out["f"], "-Infinity");
}

TEST_F(ProtoJson, RefusalsNameTheField) {
  EXPECT_EQ(refusal({{"nope", 1}}), "data.nope: unknown field of test.im.Everything");
  EXPECT_EQ(refusal({{"u32", -1}}), "data.u32: expected an unsigned 32-bit integer, got -1");
  EXPECT_EQ(refusal({{"i32", 4294967296LL}}),
            "data.i32: expected a 32-bit integer, got 4294967296");
  EXPECT_EQ(refusal({{"i32", 1.5}}), "data.i32: expected a 32-bit integer, got 1.5");
  EXPECT_EQ(refusal({{"u64", "12x"}}),
            "data.u64: expected an unsigned 64-bit integer, got \"12x\"");
  EXPECT_EQ(refusal({{"b", 1}}), "data.b: expected true or false, got 1");
  EXPECT_EQ(refusal({{"s", 5}}), "data.s: expected a string, got 5");
  EXPECT_EQ(refusal({{"raw", "***"}}), "data.raw: expected base64, got \"***\"");
  EXPECT_EQ(refusal({{"color", "PURPLE"}}),
            "data.color: unknown value \"PURPLE\" of enum test.im.Color");
  EXPECT_EQ(refusal({{"inner", {{"values", {1, "x"}}}}}),
            "data.inner.values[1]: expected a 32-bit integer, got \"x\"");
  EXPECT_EQ(refusal({{"tags", "x"}}), "data.tags: expected an array, got \"x\"");
  EXPECT_EQ(refusal(json::array()), "data: expected an object, got []");
  EXPECT_EQ(refusal({{"counts", {{"k", "v"}}}}),
            "data.counts.k: expected a 64-bit integer, got \"v\"");
  EXPECT_EQ(refusal({{"by_id", {{"x", json::object()}}}}),
            "data.by_id.x: expected an unsigned 32-bit integer, got \"x\"");
  std::string both = refusal({{"text", "a"}, {"number", 1}});
  EXPECT_NE(both.find("only one field of oneof choice"), std::string::npos) << both;
}

TEST_F(ProtoJson, DeepNestingIsRefusedNotRecursedForever) {
  json deep = json::object();
  json* at = &deep;
  for (int i = 0; i < kMaxJsonDepth + 5; ++i) {
    (*at)["child"] = json::object();
    at = &(*at)["child"];
  }
  std::string error = refusal(deep, "Node");
  EXPECT_NE(error.find("nested too deeply"), std::string::npos) << error;
  json shallow = {{"child", {{"child", {{"depth", 2}}}}}};
  EXPECT_EQ(round_trip(shallow, "Node")["child"]["child"]["depth"], 2);
}

// protobuf parses up to 100 levels; past kMaxJsonDepth the message is not shown cut short.
TEST_F(ProtoJson, MessagesNestedPastTheLimitAreRefusedNotCut) {
  for (int levels : {kMaxJsonDepth, kMaxJsonDepth + 1, 99}) {
    auto m = make("Node");
    pb::Message* at = m.get();
    for (int i = 0; i < levels; ++i)
      at = at->GetReflection()->MutableMessage(at, at->GetDescriptor()->FindFieldByName("child"));
    EXPECT_EQ(message_to_json(*m).has_value(), levels <= kMaxJsonDepth) << levels;
  }
}

TEST_F(ProtoJson, WrongContainersAreNamedNotDumpedAndFloatsStayInRange) {
  EXPECT_EQ(refusal({{"s", {{"a", 1}}}}), "data.s: expected a string, got an object");
  EXPECT_EQ(refusal({{"s", json::array({1, 2})}}), "data.s: expected a string, got an array");
  EXPECT_EQ(refusal({{"f", 1e300}}), "data.f: out of range for a float: 1e+300");
  EXPECT_EQ(round_trip({{"f", "Infinity"}})["f"], "Infinity");
}

}  // namespace
}  // namespace portico::bridge
