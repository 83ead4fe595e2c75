// A small .proto covering every field kind the JSON conversion handles, compiled once per test.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "bridge/proto_set.hpp"

namespace portico::bridge {

inline constexpr const char* kTestProto = R"(
syntax = "proto3";
package test.im;

enum Color { RED = 0; GREEN = 1; BLUE = 2; }

message Inner { string name = 1; repeated int32 values = 2; }

message Everything {
  int32 i32 = 1;
  uint32 u32 = 2;
  int64 i64 = 3;
  uint64 u64 = 4;
  sint64 s64 = 5;
  fixed64 f64 = 6;
  float f = 7;
  double d = 8;
  bool b = 9;
  string s = 10;
  bytes raw = 11;
  Color color = 12;
  Inner inner = 13;
  repeated Inner inners = 14;
  repeated string tags = 15;
  map<string, int64> counts = 16;
  map<uint32, Inner> by_id = 17;
  oneof choice { string text = 18; uint64 number = 19; }
  optional int32 maybe = 20;
  string user_name = 21;
}

message Node { Node child = 1; int32 depth = 2; }
)";

inline std::shared_ptr<const ProtoSet> test_protos() {
  std::string error;
  auto set = ProtoSet::compile(kTestProto, error);
  EXPECT_TRUE(set) << error;
  return set;
}

}  // namespace portico::bridge
