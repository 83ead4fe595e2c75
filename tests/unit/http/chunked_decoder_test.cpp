#include "http/chunked_decoder.hpp"

#include <gtest/gtest.h>

using portico::http::ChunkedDecoder;

namespace {
// Feeds `in` in pieces of `step` bytes; returns the decoded body or "<error>".
std::string decode(std::string_view in, size_t step = SIZE_MAX, size_t* leftover = nullptr) {
  ChunkedDecoder d;
  std::string out;
  size_t pos = 0;
  std::string pending;
  while (true) {
    if (pending.empty()) {
      if (pos >= in.size()) return "<incomplete>";
      size_t n = std::min(step, in.size() - pos);
      pending.assign(in.substr(pos, n));
      pos += n;
    }
    auto s = d.feed(pending);
    if (s.status == ChunkedDecoder::Status::Error) return "<error>";
    if (s.status == ChunkedDecoder::Status::Data) out.append(s.data);
    pending.erase(0, s.consumed);
    if (s.status == ChunkedDecoder::Status::Done) {
      if (leftover) *leftover = pending.size() + (in.size() - pos);
      return out;
    }
  }
}
}  // namespace

TEST(ChunkedDecoder, DecodesChunksExtensionsAndTrailers) {
  EXPECT_EQ(decode("5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n"), "hello world");
  EXPECT_EQ(decode("0\r\n\r\n"), "");
  EXPECT_EQ(decode("A\r\n0123456789\r\n0\r\n\r\n"), "0123456789");
}

TEST(ChunkedDecoder, WorksByteAtATime) {
  EXPECT_EQ(decode("5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n", 1), "hello world");
}

TEST(ChunkedDecoder, StopsAtTheEndAndLeavesTheRest) {
  size_t left = 0;
  EXPECT_EQ(decode("3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1", SIZE_MAX, &left), "abc");
  EXPECT_EQ(left, 14u);
}

TEST(ChunkedDecoder, RejectsBadFraming) {
  EXPECT_EQ(decode("zz\r\nabc\r\n0\r\n\r\n"), "<error>");
  EXPECT_EQ(decode("\r\n"), "<error>");
  EXPECT_EQ(decode("3\r\nabcX\r\n0\r\n\r\n"), "<error>");  // data longer than its size
  EXPECT_EQ(decode("-1\r\n"), "<error>");
  EXPECT_EQ(decode("1000000000000000\r\n"), "<error>");  // 16 hex digits: too large
  EXPECT_EQ(decode("3 x\r\nabc\r\n0\r\n\r\n"), "<error>");
  EXPECT_EQ(decode("3;\x01\r\nabc\r\n0\r\n\r\n"), "<error>");  // control char in extension
}

TEST(ChunkedDecoder, BoundsTrailers) {
  std::string big = "0\r\nX: " + std::string(20000, 'a') + "\r\n\r\n";
  EXPECT_EQ(decode(big), "<error>");
}
