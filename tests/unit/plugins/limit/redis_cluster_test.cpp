#include "plugins/limit/redis_cluster.hpp"

#include <gtest/gtest.h>

namespace portico::limit {
namespace {

TEST(RedisKeySlot, MatchesRedisCluster) {
  // CRC16("123456789") is 0x31C3 (the XMODEM check value); the others from Redis's docs.
  EXPECT_EQ(redis_key_slot("123456789"), 0x31C3 & 0x3fff);
  EXPECT_EQ(redis_key_slot("somekey"), 11058);
  EXPECT_EQ(redis_key_slot("foo"), 12182);
  EXPECT_EQ(redis_key_slot("hello"), 866);
  EXPECT_EQ(redis_key_slot(""), 0);
}

TEST(RedisKeySlot, HashTagsAsRedisReadsThem) {
  EXPECT_EQ(redis_key_slot("foo{hash_tag}"), 2515);
  EXPECT_EQ(redis_key_slot("bar{hash_tag}"), 2515);
  EXPECT_EQ(redis_key_slot("{user1000}.following"), redis_key_slot("user1000"));
  // Slots Redis's CLUSTER KEYSLOT gives (an empty tag: the whole key; no closing brace: too).
  EXPECT_EQ(redis_key_slot("foo{}{bar}"), 8363);
  EXPECT_EQ(redis_key_slot("x{y"), 2740);
  EXPECT_EQ(redis_key_slot("foo{{bar}}zap"), redis_key_slot("{bar"));
  EXPECT_EQ(redis_key_slot("foo{bar}{zap}"), redis_key_slot("bar"));
  EXPECT_EQ(redis_key_slot("a}{b}"), redis_key_slot("b"));  // the first '{', the next '}'
}

TEST(SplitHostPort, NamesAddressesAndBracketedV6) {
  std::string host;
  uint16_t port = 0;
  ASSERT_TRUE(split_host_port("127.0.0.1:7000", host, port));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 7000);
  ASSERT_TRUE(split_host_port("redis-0.cluster.local:6379", host, port));
  EXPECT_EQ(host, "redis-0.cluster.local");
  ASSERT_TRUE(split_host_port("[::1]:7001", host, port));
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 7001);
  for (std::string_view bad : {"", "127.0.0.1", ":7000", "host:", "host:0", "host:65536", "host:7x",
                               "::1:7000", "[::1:7000", "[]:7000"})
    EXPECT_FALSE(split_host_port(bad, host, port)) << bad;
}

TEST(RedisRedirect, TargetsAsRedisWritesThem) {
  std::string host;
  uint16_t port = 0;
  ASSERT_TRUE(parse_redis_redirect("MOVED 3999 127.0.0.1:6381", "MOVED", host, port));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 6381);
  ASSERT_TRUE(parse_redis_redirect("ASK 3999 2001:db8::1:6380", "ASK", host, port));
  EXPECT_EQ(host, "2001:db8::1");  // unbracketed: the port follows the last colon
  EXPECT_EQ(port, 6380);
  ASSERT_TRUE(parse_redis_redirect("MOVED 1 :7000", "MOVED", host, port));
  EXPECT_EQ(host, "");  // the node that answered
  EXPECT_EQ(port, 7000);
  EXPECT_FALSE(parse_redis_redirect("MOVED 3999 127.0.0.1:6381", "ASK", host, port));
  for (std::string_view bad : {"MOVED", "MOVED 3999", "MOVED 3999 host", "MOVED 3999 host:0",
                               "MOVEDX 1 h:1", "CLUSTERDOWN Hash slot not served"})
    EXPECT_FALSE(parse_redis_redirect(bad, "MOVED", host, port)) << bad;
}

}  // namespace
}  // namespace portico::limit
