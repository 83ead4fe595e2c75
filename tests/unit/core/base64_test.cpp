#include "core/base64.hpp"

#include <gtest/gtest.h>

using portico::base64_decode;
using portico::base64_encode;
using portico::Base64Alphabet;

TEST(Base64, UrlAlphabetHasNoPaddingAndItsOwnCharacters) {
  EXPECT_EQ(base64_encode("\xfb\xff", Base64Alphabet::Url), "-_8");
  EXPECT_EQ(base64_encode("\xfb\xff"), "+/8=");
  EXPECT_EQ(base64_decode("-_8", Base64Alphabet::Url), "\xfb\xff");
  EXPECT_FALSE(base64_decode("+/8", Base64Alphabet::Url));
  EXPECT_FALSE(base64_decode("-_8=", Base64Alphabet::Standard));
  EXPECT_EQ(base64_decode("-_8="), "\xfb\xff");  // Either, padded
}

TEST(Base64, TruncatedOrMisplacedPaddingIsRejected) {
  EXPECT_FALSE(base64_decode("Zm9vY"));  // a lone last character
  EXPECT_FALSE(base64_decode("Zg=a"));   // data after padding
  EXPECT_FALSE(base64_decode("Zg="));    // padding that does not complete a group of four
  EXPECT_FALSE(base64_decode("Z==="));   // three pad characters
  EXPECT_EQ(base64_decode("Zg"), "f");   // padding is optional
  EXPECT_EQ(base64_decode(""), "");
}
