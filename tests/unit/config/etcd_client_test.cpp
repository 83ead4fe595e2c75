#include "config/etcd_client.hpp"

#include <gtest/gtest.h>

using namespace portico::config;

namespace {

std::string decoded(std::string_view in) {
  std::string out = "stale";
  EXPECT_TRUE(base64_decode(in, out)) << in;
  return out;
}

bool rejected(std::string_view in) {
  std::string out;
  return !base64_decode(in, out);
}

}  // namespace

// RFC 4648 section 10: one vector for each length modulo 3, so each padding case.
TEST(EtcdBase64, EncodesTheRfcVectorsWithPadding) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

TEST(EtcdBase64, DecodesWhatEtcdSends) {
  // etcd's JSON gateway encodes bytes with Go's padded standard alphabet.
  EXPECT_EQ(decoded(""), "");
  EXPECT_EQ(decoded("Zg=="), "f");
  EXPECT_EQ(decoded("Zm8="), "fo");
  EXPECT_EQ(decoded("Zm9v"), "foo");
  EXPECT_EQ(decoded("Zm9vYmFy"), "foobar");
  EXPECT_EQ(decoded("L3BvcnRpY28vcm91dGVzL3Ix"), "/portico/routes/r1");
  EXPECT_EQ(decoded("+/+/"), "\xfb\xff\xbf");
}

TEST(EtcdBase64, DecodeReplacesTheOutput) {
  std::string out = "previous contents";
  ASSERT_TRUE(base64_decode("Zm8=", out));
  EXPECT_EQ(out, "fo");
}

TEST(EtcdBase64, AcceptsUnpaddedAndUrlSafeInput) {
  EXPECT_EQ(decoded("Zg"), "f");
  EXPECT_EQ(decoded("Zm8"), "fo");
  EXPECT_EQ(decoded("-_-_"), "\xfb\xff\xbf");
}

TEST(EtcdBase64, RoundTripsEveryByteAtEveryLength) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  for (size_t len = 0; len <= all.size(); ++len) {
    // a different starting byte per length, so every byte lands in every position of a group
    std::string in;
    for (size_t i = 0; i < len; ++i) in += all[(i + len) % all.size()];
    std::string enc = base64_encode(in);
    EXPECT_EQ(enc.size(), (len + 2) / 3 * 4);
    std::string out;
    ASSERT_TRUE(base64_decode(enc, out)) << enc;
    EXPECT_EQ(out, in) << "length " << len;
  }
}

TEST(EtcdBase64, RejectsCharactersOutsideTheAlphabet) {
  EXPECT_TRUE(rejected("Zm9v!"));
  EXPECT_TRUE(rejected("Zm 9v"));
  EXPECT_TRUE(rejected("Zm9v\n"));
  EXPECT_TRUE(rejected(std::string_view("Zm\0v", 4)));
  EXPECT_TRUE(rejected("Zm9v\xc3\xa9"));
}

TEST(EtcdBase64, RejectsMisplacedOrExcessPadding) {
  EXPECT_TRUE(rejected("Zg==Zg=="));  // data after padding
  EXPECT_TRUE(rejected("Z=g="));
  EXPECT_TRUE(rejected("Zg==="));  // more than two padding characters
  EXPECT_TRUE(rejected("===="));
  EXPECT_TRUE(rejected("Zg="));  // padding that does not complete a group of four
  EXPECT_TRUE(rejected("Zm9v="));
  EXPECT_TRUE(rejected("="));
}

TEST(EtcdBase64, RejectsTruncatedInput) {
  // one character left over carries 6 bits: less than a byte, so the input was cut short
  EXPECT_TRUE(rejected("Z"));
  EXPECT_TRUE(rejected("Zm9vY"));
  EXPECT_TRUE(rejected("Z==="));
}

TEST(EtcdPrefixRangeEnd, IncrementsTheLastByte) {
  EXPECT_EQ(prefix_range_end("/a"), "/b");
  EXPECT_EQ(prefix_range_end("/portico/"), "/portico0");  // '/' + 1 == '0'
  EXPECT_EQ(prefix_range_end("a"), "b");
}

TEST(EtcdPrefixRangeEnd, DropsTrailingFfBytesBeforeIncrementing) {
  EXPECT_EQ(prefix_range_end("/a\xff"), "/b");
  EXPECT_EQ(prefix_range_end("/a\xff\xff"), "/b");
  EXPECT_EQ(prefix_range_end("a\xfe"), "a\xff");
  EXPECT_EQ(prefix_range_end(std::string("\x00", 1)), "\x01");
}

TEST(EtcdPrefixRangeEnd, AllFfOrEmptyMeansEveryKey) {
  // etcd reads range_end "\0" as "to the end of the keyspace"
  const std::string every_key(1, '\0');
  EXPECT_EQ(prefix_range_end(""), every_key);
  EXPECT_EQ(prefix_range_end("\xff"), every_key);
  EXPECT_EQ(prefix_range_end("\xff\xff\xff"), every_key);
}

TEST(EtcdPrefixRangeEnd, IsGreaterThanEveryKeyWithThePrefix) {
  // std::string compares bytes as unsigned char (char_traits<char>), as etcd orders keys
  const std::string prefix = "/p\xfe";
  const std::string end = prefix_range_end(prefix);
  for (const std::string suffix : {"", "a", "\xff\xff\xff", "zzzz"})
    EXPECT_LT(prefix + suffix, end) << suffix;
  EXPECT_FALSE(std::string("/p\xff") < end);  // the first key without the prefix is outside
}
