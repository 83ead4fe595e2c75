#include "bridge/proto_set.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "proto_test_util.hpp"

namespace portico::bridge {
namespace {

TEST(ProtoSet, FindsMessagesByFullAndPackageRelativeName) {
  auto set = test_protos();
  ASSERT_TRUE(set);
  const auto* full = set->message("test.im.Everything");
  ASSERT_NE(full, nullptr);
  EXPECT_EQ(set->message("Everything"), full);
  EXPECT_EQ(set->message(".test.im.Everything"), full);
  EXPECT_EQ(set->message("Nope"), nullptr);
  EXPECT_EQ(set->message("other.Everything"), nullptr);
}

TEST(ProtoSet, PrototypesCreateWorkingMessages) {
  auto set = test_protos();
  const google::protobuf::Message* proto = set->prototype(set->message("Inner"));
  ASSERT_NE(proto, nullptr);
  std::unique_ptr<google::protobuf::Message> m(proto->New());
  m->GetReflection()->SetString(m.get(), m->GetDescriptor()->FindFieldByName("name"), "x");
  std::string wire;
  ASSERT_TRUE(m->SerializeToString(&wire));
  EXPECT_EQ(wire, std::string("\x0a\x01x", 3));  // field 1, length 1, "x"
}

TEST(ProtoSet, CompilesTheDemoProto) {
  std::ifstream in(std::string(PORTICO_SOURCE_DIR) + "/conf/im_demo.proto");
  std::stringstream text;
  text << in.rdbuf();
  std::string error;
  auto set = ProtoSet::compile(text.str(), error);
  ASSERT_TRUE(set) << error;
  EXPECT_NE(set->message("portico.im_demo.LoginRequest"), nullptr);
  EXPECT_NE(set->message("ChatMessage"), nullptr);
}

TEST(ProtoSet, SyntaxErrorsNameTheLine) {
  std::string error;
  auto set = ProtoSet::compile("syntax = \"proto3\";\nmessage A {\n  int32 x = ;\n}\n", error);
  EXPECT_FALSE(set);
  EXPECT_NE(error.find("line 3:"), std::string::npos) << error;
}

TEST(ProtoSet, SemanticErrorsAreReported) {
  std::string error;
  EXPECT_FALSE(ProtoSet::compile("syntax = \"proto3\";\nmessage A { Missing m = 1; }\n", error));
  EXPECT_NE(error.find("Missing"), std::string::npos) << error;
  error.clear();
  EXPECT_FALSE(
      ProtoSet::compile("syntax = \"proto3\";\nmessage A { int32 x = 1; int32 y = 1; }\n", error));
  EXPECT_FALSE(error.empty());
}

TEST(ProtoSet, OnlyWellKnownImports) {
  std::string error;
  auto ok = ProtoSet::compile(
      "syntax = \"proto3\";\nimport \"google/protobuf/timestamp.proto\";\n"
      "message A { google.protobuf.Timestamp at = 1; }\n",
      error);
  ASSERT_TRUE(ok) << error;
  EXPECT_NE(ok->message("A"), nullptr);
  EXPECT_FALSE(ProtoSet::compile("syntax = \"proto3\";\nimport \"other.proto\";\n", error));
  EXPECT_NE(error.find("other.proto"), std::string::npos) << error;
}

TEST(ProtoSet, GarbageIsRefusedNotCrashing) {
  std::string error;
  EXPECT_FALSE(ProtoSet::compile(std::string("\0\xff\x01{{{", 6), error));
  EXPECT_FALSE(error.empty());
}

}  // namespace
}  // namespace portico::bridge
