#include "core/hex.hpp"

#include <gtest/gtest.h>

namespace portico {

TEST(Hex, EncodesEveryByteLowerCaseTwoDigits) {
  const unsigned char bytes[] = {0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xab, 0xff};
  EXPECT_EQ(hex::encode(bytes, sizeof(bytes)), "00010f107f80abff");
  EXPECT_EQ(hex::encode(bytes, 0), "");
  std::string out = "id-";
  hex::append(out, bytes + 6, 2);
  EXPECT_EQ(out, "id-abff");
}

}  // namespace portico
