#include "stream/stream_plugins.hpp"

#include <gtest/gtest.h>

namespace portico::stream {
namespace {

using config::Errors;
using config::json;

std::shared_ptr<const StreamPlugins> parse(const char* text, Errors& errors) {
  return parse_stream_plugins(json::parse(text), "r1", "stream_routes[0].plugins", errors);
}

TEST(StreamLimitConn, DelayGrowsPerConnOverTheLimitAsRestyLimitConn) {
  Errors errors;
  auto p = parse(R"({"limit-conn": {"conn": 2, "burst": 4, "default_conn_delay": 0.5}})", errors);
  ASSERT_TRUE(errors.empty()) << errors.to_string();
  // unit_delay * floor((n - 1) / conn) once n > conn
  EXPECT_EQ(p->conn_delay(1), 0);
  EXPECT_EQ(p->conn_delay(2), 0);
  EXPECT_DOUBLE_EQ(p->conn_delay(3), 0.5);
  EXPECT_DOUBLE_EQ(p->conn_delay(4), 0.5);
  EXPECT_DOUBLE_EQ(p->conn_delay(5), 1.0);
  EXPECT_DOUBLE_EQ(p->conn_delay(6), 1.0);
}

TEST(StreamLimitConn, OnlyUseDefaultDelayAndNoDelayConfigured) {
  Errors errors;
  auto fixed = parse(R"({"limit-conn": {"conn": 1, "burst": 9, "default_conn_delay": 0.2,
                                        "only_use_default_delay": true}})",
                     errors);
  auto none = parse(R"({"limit-conn": {"conn": 1, "burst": 9}})", errors);
  ASSERT_TRUE(errors.empty()) << errors.to_string();
  EXPECT_EQ(fixed->conn_delay(1), 0);
  EXPECT_DOUBLE_EQ(fixed->conn_delay(2), 0.2);
  EXPECT_DOUBLE_EQ(fixed->conn_delay(9), 0.2);
  EXPECT_EQ(none->conn_delay(5), 0);
}

TEST(StreamLimitConn, BadDelayNamesTheField) {
  for (const char* bad :
       {R"({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 0}})",
        R"({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": "1s"}})"}) {
    Errors errors;
    parse(bad, errors);
    ASSERT_EQ(errors.list().size(), 1u) << bad;
    EXPECT_EQ(errors.list()[0].path, "stream_routes[0].plugins.limit-conn.default_conn_delay");
  }
}

}  // namespace
}  // namespace portico::stream
