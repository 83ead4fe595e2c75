#include "core/json_depth.hpp"

#include <gtest/gtest.h>

#include <string>

namespace portico {
namespace {

TEST(JsonDepth, CountsArraysAndObjectsNotStrings) {
  EXPECT_EQ(json_nesting_depth("1", 64), 0);
  EXPECT_EQ(json_nesting_depth("{}", 64), 1);
  EXPECT_EQ(json_nesting_depth(R"({"a": [1, {"b": [[]]}], "c": {}})", 64), 5);
  EXPECT_EQ(json_nesting_depth(R"({"a": "[[[[{{{{"})", 64), 1);
  EXPECT_EQ(json_nesting_depth(R"({"a": "\"[[[["})", 64), 1);  // an escaped quote stays inside
  EXPECT_EQ(json_nesting_depth(R"(["\\", [[]]])", 64), 3);     // an escaped backslash does not
}

TEST(JsonDepth, StopsCountingPastTheLimit) {
  std::string deep(1000000, '[');
  EXPECT_EQ(json_nesting_depth(deep, 64), 65);
  EXPECT_TRUE(json_too_deep(deep, 64));
  EXPECT_FALSE(json_too_deep(std::string(64, '[') + std::string(64, ']'), 64));
  EXPECT_TRUE(json_too_deep(std::string(65, '[') + std::string(65, ']'), 64));
}

}  // namespace
}  // namespace portico
