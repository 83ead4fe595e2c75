#include "router/path_normalizer.hpp"

#include <gtest/gtest.h>

using portico::router::normalize_path;

namespace {
std::string norm(std::string_view in) {
  std::string scratch;
  std::string_view out;
  if (!normalize_path(in, scratch, out)) return "<invalid>";
  return std::string(out);
}
}  // namespace

TEST(PathNormalizer, LeavesCleanPathsAlone) {
  EXPECT_EQ(norm("/a/b/c"), "/a/b/c");
  EXPECT_EQ(norm("/"), "/");
  EXPECT_EQ(norm("/a/b/"), "/a/b/");
}

TEST(PathNormalizer, DecodesPercentEscapes) {
  EXPECT_EQ(norm("/%61dmin/x"), "/admin/x");
  EXPECT_EQ(norm("/a%2Fb"), "/a/b");
  EXPECT_EQ(norm("/a%2"), "<invalid>");
  EXPECT_EQ(norm("/a%zz"), "<invalid>");
  EXPECT_EQ(norm("/a%00"), "<invalid>");
}

TEST(PathNormalizer, ResolvesDotSegmentsAndSlashes) {
  EXPECT_EQ(norm("/public/../admin/x"), "/admin/x");
  EXPECT_EQ(norm("/a/./b"), "/a/b");
  EXPECT_EQ(norm("//a///b"), "/a/b");
  EXPECT_EQ(norm("/a/b/.."), "/a/");
  EXPECT_EQ(norm("/a/.."), "/");
  EXPECT_EQ(norm("/a/."), "/a/");
  EXPECT_EQ(norm("/a/%2e%2e/b"), "/b");
  EXPECT_EQ(norm("/.."), "<invalid>");
  EXPECT_EQ(norm("/a/../../b"), "<invalid>");
}
