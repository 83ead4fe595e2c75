#include "plugins/schema/json_schema.hpp"

#include <gtest/gtest.h>

namespace portico::plugins {
namespace {

using config::json;

// The schema compiled (must compile), then `value` checked: "" when valid, else the reason.
std::string check(const char* schema, const char* value) {
  config::Errors errors;
  auto s = JsonSchema::compile(json::parse(schema), "s", errors);
  EXPECT_TRUE(s) << errors.to_string();
  return s ? s->check(json::parse(value)) : "not compiled";
}

std::string compile_error(const char* schema) {
  config::Errors errors;
  auto s = JsonSchema::compile(json::parse(schema), "s", errors);
  EXPECT_FALSE(s);
  return errors.to_string();
}

TEST(JsonSchema, Types) {
  EXPECT_EQ(check(R"({"type": "integer"})", "3"), "");
  EXPECT_EQ(check(R"({"type": "integer"})", "3.0"), "");  // integral: an integer
  EXPECT_EQ(check(R"({"type": "integer"})", "3.5"), "wrong type: expected integer, got number");
  EXPECT_EQ(check(R"({"type": "number"})", "3"), "");
  EXPECT_EQ(check(R"({"type": ["string", "null"]})", "null"), "");
  EXPECT_EQ(check(R"({"type": ["string", "null"]})", "1"),
            "wrong type: expected null or string, got integer");
  EXPECT_EQ(check(R"({"type": "object"})", "[]"), "wrong type: expected object, got array");
  EXPECT_EQ(check(R"({"type": "boolean"})", "\"true\""),
            "wrong type: expected boolean, got string");
  EXPECT_EQ(check("true", "{}"), "");
  EXPECT_EQ(check("false", "{}"), "no value is allowed here");
}

TEST(JsonSchema, ObjectsRequiredAndAdditional) {
  const char* s = R"({"type": "object", "required": ["to", "text"],
                      "properties": {"to": {"type": "string", "minLength": 1},
                                     "text": {"type": "string", "maxLength": 5}},
                      "additionalProperties": false})";
  EXPECT_EQ(check(s, R"({"to": "rose", "text": "hi"})"), "");
  EXPECT_EQ(check(s, R"({"to": "rose"})"), "property \"text\" is required");
  EXPECT_EQ(check(s, R"({"to": "", "text": "hi"})"),
            "property \"to\" validation failed: string too short, expected at least 1, got 0");
  // Lengths count code points: five characters of two bytes each fit maxLength 5.
  EXPECT_EQ(check(s, R"({"to": "a", "text": "ééééé"})"), "");
  EXPECT_EQ(check(s, R"({"to": "a", "text": "éééééé"})"),
            "property \"text\" validation failed: string too long, expected at most 5, got 6");
  EXPECT_EQ(check(s, R"({"to": "a", "text": "b", "cc": 1})"),
            "additional properties forbidden, found cc");
  const char* p = R"({"patternProperties": {"^x-": {"type": "string"}},
                      "additionalProperties": {"type": "integer"},
                      "minProperties": 1, "maxProperties": 2})";
  EXPECT_EQ(check(p, R"({"x-a": "s", "n": 1})"), "");
  EXPECT_EQ(check(p, R"({"x-a": 1})"),
            "property \"x-a\" validation failed: wrong type: expected string, got integer");
  EXPECT_EQ(check(p, R"({"n": "s"})"),
            "property \"n\" validation failed: wrong type: expected integer, got string");
  EXPECT_EQ(check(p, "{}"), "expect object to have at least 1 properties");
  EXPECT_EQ(check(p, R"({"a": 1, "b": 2, "c": 3})"), "expect object to have at most 2 properties");
}

TEST(JsonSchema, Arrays) {
  const char* s = R"({"type": "array", "items": {"type": "integer", "minimum": 0},
                      "minItems": 1, "maxItems": 3, "uniqueItems": true})";
  EXPECT_EQ(check(s, "[1, 2, 3]"), "");
  EXPECT_EQ(check(s, "[]"), "expect array to have at least 1 items");
  EXPECT_EQ(check(s, "[1, 2, 3, 4]"), "expect array to have at most 3 items");
  EXPECT_EQ(check(s, "[1, -2]"), "failed to validate item 2: expected -2 to be at least 0");
  EXPECT_EQ(check(s, "[1, 2, 1]"), "expected unique items but items are equal");
  EXPECT_EQ(check(s, "[1, 1.0]"), "expected unique items but items are equal");
  const char* t =
      R"({"items": [{"type": "string"}, {"type": "integer"}], "additionalItems": false})";
  EXPECT_EQ(check(t, R"(["a", 1])"), "");
  EXPECT_EQ(check(t, R"([1, 1])"),
            "failed to validate item 1: wrong type: expected string, got integer");
  EXPECT_EQ(check(t, R"(["a", 1, 2])"), "failed to validate item 3: additional items forbidden");
}

TEST(JsonSchema, NumbersInEveryDraft) {
  EXPECT_EQ(check(R"({"maximum": 10})", "10"), "");
  EXPECT_EQ(check(R"({"maximum": 10})", "10.5"), "expected 10.5 to be at most 10");
  EXPECT_EQ(check(R"({"exclusiveMaximum": 10})", "10"), "expected 10 to be smaller than 10");
  // Draft 4: a boolean makes the bound exclusive.
  EXPECT_EQ(check(R"({"minimum": 1, "exclusiveMinimum": true})", "1"),
            "expected 1 to be greater than 1");
  EXPECT_EQ(check(R"({"minimum": 1, "exclusiveMinimum": false})", "1"), "");
  EXPECT_EQ(check(R"({"multipleOf": 0.01})", "19.99"), "");
  EXPECT_EQ(check(R"({"multipleOf": 5})", "12"), "expected 12 to be a multiple of 5");
  EXPECT_EQ(check(R"({"minimum": 1})", "\"0\""), "");  // bounds apply to numbers only
}

TEST(JsonSchema, StringsPatternsAndFormats) {
  EXPECT_EQ(check(R"({"pattern": "^[a-z]+$"})", "\"rose\""), "");
  EXPECT_EQ(check(R"({"pattern": "^[a-z]+$"})", "\"Rose\""),
            "failed to match pattern \"^[a-z]+$\" with \"Rose\"");
  EXPECT_EQ(check(R"({"pattern": "b"})", "\"abc\""), "");  // a search, not anchored
  EXPECT_EQ(check(R"({"format": "email"})", "\"rose@example.com\""), "");
  EXPECT_NE(check(R"({"format": "email"})", "\"rose\""), "");
  EXPECT_EQ(check(R"({"format": "ipv4"})", "\"10.0.0.1\""), "");
  EXPECT_NE(check(R"({"format": "ipv4"})", "\"10.0.0.256\""), "");
  EXPECT_EQ(check(R"({"format": "ipv6"})", "\"2001:db8::1\""), "");
  EXPECT_EQ(check(R"({"format": "date"})", "\"2024-02-29\""), "");
  EXPECT_NE(check(R"({"format": "date"})", "\"2023-02-29\""), "");
  EXPECT_EQ(check(R"({"format": "date-time"})", "\"2026-11-29T18:00:00.5+08:00\""), "");
  EXPECT_NE(check(R"({"format": "date-time"})", "\"2026-11-29 25:00:00Z\""), "");
  EXPECT_EQ(check(R"({"format": "hostname"})", "\"chat.example.com\""), "");
  EXPECT_NE(check(R"({"format": "hostname"})", "\"-bad.example.com\""), "");
  EXPECT_EQ(check(R"({"format": "uuid"})", "\"anything\""), "");  // an annotation only
}

TEST(JsonSchema, EnumConstAndCombinators) {
  EXPECT_EQ(check(R"({"enum": ["text", "image", 3]})", "3"), "");
  EXPECT_EQ(check(R"({"enum": ["text", "image"]})", "\"video\""),
            "matches none of the enum values");
  EXPECT_EQ(check(R"({"const": {"v": 1}})", R"({"v": 1})"), "");
  EXPECT_NE(check(R"({"const": {"v": 1}})", R"({"v": 2})"), "");
  const char* any = R"({"anyOf": [{"type": "string"}, {"type": "integer"}]})";
  EXPECT_EQ(check(any, "1"), "");
  EXPECT_EQ(check(any, "null"), "object matches none of the alternatives");
  const char* one = R"({"oneOf": [{"type": "integer"}, {"minimum": 0}]})";
  EXPECT_EQ(check(one, "-1"), "");
  EXPECT_EQ(check(one, "1"), "value should match only one schema, but matches 2");
  EXPECT_EQ(check(R"({"allOf": [{"type": "integer"}, {"maximum": 3}]})", "4"),
            "allOf 2 failed: expected 4 to be at most 3");
  EXPECT_EQ(check(R"({"not": {"type": "null"}})", "null"),
            "value wrongly matches forbidden schema");
}

TEST(JsonSchema, ReferencesWithinTheSchemaAndRecursion) {
  const char* s = R"({"definitions": {"node": {"type": "object", "required": ["id"],
                        "properties": {"id": {"type": "integer"},
                                       "children": {"type": "array", "items": {"$ref": "#/definitions/node"}}}}},
                      "$ref": "#/definitions/node"})";
  EXPECT_EQ(check(s, R"({"id": 1, "children": [{"id": 2, "children": [{"id": 3}]}]})"), "");
  EXPECT_EQ(
      check(s, R"({"id": 1, "children": [{"id": 2, "children": [{}]}]})"),
      "property \"children\" validation failed: failed to validate item 1: property "
      "\"children\" validation failed: failed to validate item 1: property \"id\" is required");
  EXPECT_EQ(check(R"({"properties": {"self": {"$ref": "#"}}, "type": "object"})",
                  R"({"self": {"self": 1}})"),
            "property \"self\" validation failed: property \"self\" validation failed: wrong type: "
            "expected object, got integer");
}

TEST(JsonSchema, NestingDeeperThanTheLimitIsRefusedNotRecursed) {
  std::string deep;
  for (int i = 0; i < 300; ++i) deep += R"({"self": )";
  deep += "1";
  for (int i = 0; i < 300; ++i) deep += "}";
  EXPECT_NE(
      check(R"({"properties": {"self": {"$ref": "#"}}})", deep.c_str()).find("nested too deeply"),
      std::string::npos);
}

TEST(JsonSchema, SchemaErrorsNameTheKeyword) {
  EXPECT_NE(compile_error(R"({"type": "text"})").find("s.type:"), std::string::npos);
  EXPECT_NE(compile_error(R"({"properties": {"a": {"minLength": -1}}})")
                .find("s.properties.a.minLength:"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"pattern": "(unclosed"})").find("s.pattern:"), std::string::npos);
  EXPECT_NE(compile_error(R"({"$ref": "#/definitions/none"})").find("s.$ref:"), std::string::npos);
  EXPECT_NE(compile_error(R"({"$ref": "http://example.com/s.json"})").find("s.$ref:"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"if": {"type": "string"}})").find("s.if: is not supported"),
            std::string::npos);
  EXPECT_NE(compile_error(R"({"enum": []})").find("s.enum:"), std::string::npos);
  EXPECT_NE(compile_error(R"({"multipleOf": 0})").find("s.multipleOf:"), std::string::npos);
  EXPECT_NE(compile_error("3").find("s: must be a schema"), std::string::npos);
}

TEST(JsonSchema, NumbersCompareByValueNotByCast) {
  // nlohmann's == casts an unsigned to int64: 2^64-1 would equal -1.
  EXPECT_EQ(check(R"({"enum": [-1]})", "18446744073709551615"), "matches none of the enum values");
  EXPECT_NE(check(R"({"const": -1})", "18446744073709551615"), "");
  EXPECT_EQ(check(R"({"const": 1})", "1.0"), "");
  EXPECT_EQ(check(R"({"uniqueItems": true})", "[0, 9223372036854775808, -1, 9223372036854775808]"),
            "expected unique items but items are equal");
  EXPECT_EQ(check(R"({"uniqueItems": true})", "[18446744073709551615, -1]"), "");
  EXPECT_EQ(check(R"({"uniqueItems": true})", R"([{"a": [1, 2.0]}, {"a": [1, 2]}])"),
            "expected unique items but items are equal");
  EXPECT_EQ(check(R"({"multipleOf": 1})", "5.0000001"), "expected 5.0000001 to be a multiple of 1");
  // 2^53+1 is odd, though as a double it reads 2^53: integers are checked exactly.
  EXPECT_NE(check(R"({"multipleOf": 2})", "9007199254740993"), "");
}

TEST(JsonSchema, FormatsRefuseAValueCutByANul) {
  EXPECT_NE(check(R"({"format": "ipv4"})", R"("10.0.0.1\u0000<script>")"), "");
  EXPECT_NE(check(R"({"format": "email"})", R"("a\u0000b@example.com")"), "");
}

TEST(JsonSchema, CyclesThatNeverDescendAreConfigErrors) {
  EXPECT_NE(compile_error(R"({"$ref": "#"})").find("refers to itself"), std::string::npos);
  EXPECT_NE(compile_error(R"({"definitions": {"a": {"$ref": "#/definitions/b"},
                                              "b": {"anyOf": [{"$ref": "#/definitions/a"}]}},
                             "$ref": "#/definitions/a"})")
                .find("refers to itself"),
            std::string::npos);
}

TEST(JsonSchema, BranchingRecursionIsBoundedNotExponential) {
  // Each level tries both branches, which both descend: 2^85 visits without a budget.
  const char* s = R"({"definitions": {"n": {"oneOf": [
      {"properties": {"kind": {"const": "a"}, "next": {"$ref": "#/definitions/n"}}},
      {"properties": {"kind": {"const": "b"}, "next": {"$ref": "#/definitions/n"}}}]}},
      "$ref": "#/definitions/n"})";
  std::string deep;
  for (int i = 0; i < 85; ++i) deep += R"({"next": )";
  deep += "{}";
  for (int i = 0; i < 85; ++i) deep += "}";
  EXPECT_EQ(check(s, deep.c_str()), "the value is too costly to check against this schema");
}

}  // namespace
}  // namespace portico::plugins
