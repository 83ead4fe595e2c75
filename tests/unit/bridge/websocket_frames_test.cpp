#include "bridge/websocket_frames.hpp"

#include <gtest/gtest.h>

#include <string>

namespace portico::bridge {
namespace {

using Status = WsParseResult::Status;

// A masked client frame, as a browser sends it.
std::string client_frame(uint8_t first_byte, std::string payload,
                         std::array<uint8_t, 4> mask = {1, 2, 3, 4}) {
  std::string f;
  f.push_back(static_cast<char>(first_byte));
  size_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xFFFF) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int s = 56; s >= 0; s -= 8) f.push_back(static_cast<char>(static_cast<uint64_t>(n) >> s));
  }
  for (uint8_t m : mask) f.push_back(static_cast<char>(m));
  for (size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(payload[i] ^ mask[i & 3]);
  return f + payload;
}

TEST(WebSocketFrames, AcceptKeyIsRfc6455sExample) {
  // RFC 6455 section 1.3.
  EXPECT_EQ(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_TRUE(valid_ws_key("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_FALSE(valid_ws_key("dGhlIHNhbXBsZQ=="));  // 11 bytes
  EXPECT_FALSE(valid_ws_key(""));
  EXPECT_FALSE(valid_ws_key("not base64 at all!!!!!!!"));
}

TEST(WebSocketFrames, ParsesAndUnmasksAMaskedTextFrame) {
  std::string f = client_frame(0x81, "Hello");
  auto r = parse_ws_frame(f, 1024);
  ASSERT_EQ(r.status, Status::Frame);
  EXPECT_TRUE(r.frame.fin);
  EXPECT_EQ(r.frame.opcode, WsOpcode::Text);
  EXPECT_EQ(r.frame.header_size, 6u);
  EXPECT_EQ(r.frame.payload_size, 5u);
  EXPECT_EQ(r.frame.size(), f.size());
  std::string payload = f.substr(r.frame.header_size);
  ws_unmask(payload.data(), payload.size(), r.frame.mask);
  EXPECT_EQ(payload, "Hello");
}

TEST(WebSocketFrames, UnmaskingInPiecesMatchesUnmaskingWhole) {
  std::string f = client_frame(0x82, "0123456789abcdef");
  auto r = parse_ws_frame(f, 1024);
  std::string p = f.substr(r.frame.header_size);
  ws_unmask(p.data(), 3, r.frame.mask, 0);
  ws_unmask(p.data() + 3, p.size() - 3, r.frame.mask, 3);
  EXPECT_EQ(p, "0123456789abcdef");
}

TEST(WebSocketFrames, SixteenAndSixtyFourBitLengths) {
  std::string mid(300, 'm');
  auto r = parse_ws_frame(client_frame(0x82, mid), 1 << 20);
  ASSERT_EQ(r.status, Status::Frame);
  EXPECT_EQ(r.frame.header_size, 8u);
  EXPECT_EQ(r.frame.payload_size, 300u);
  std::string big(70000, 'b');
  r = parse_ws_frame(client_frame(0x82, big), 1 << 20);
  ASSERT_EQ(r.status, Status::Frame);
  EXPECT_EQ(r.frame.header_size, 14u);
  EXPECT_EQ(r.frame.payload_size, 70000u);
}

TEST(WebSocketFrames, NeedsMoreUntilTheHeaderIsWhole) {
  std::string f = client_frame(0x82, std::string(300, 'x'));
  for (size_t n = 0; n < 8; ++n)
    EXPECT_EQ(parse_ws_frame(std::string_view(f).substr(0, n), 1024).status, Status::NeedMore) << n;
  EXPECT_EQ(parse_ws_frame(std::string_view(f).substr(0, 8), 1024).status, Status::Frame);
}

TEST(WebSocketFrames, ProtocolErrors) {
  auto code = [](const std::string& f, uint64_t max = 1024) {
    auto r = parse_ws_frame(f, max);
    EXPECT_EQ(r.status, Status::Error);
    EXPECT_FALSE(r.error.empty());
    return r.close_code;
  };
  EXPECT_EQ(code(client_frame(0xC1, "x")), kWsCloseProtocolError);  // RSV1 (no deflate agreed)
  EXPECT_EQ(code(client_frame(0x83, "x")), kWsCloseProtocolError);  // reserved opcode 3
  EXPECT_EQ(code(client_frame(0x8B, "x")), kWsCloseProtocolError);  // reserved opcode 0xB
  EXPECT_EQ(code(client_frame(0x09, "x")), kWsCloseProtocolError);  // fragmented ping
  EXPECT_EQ(code(client_frame(0x89, std::string(126, 'p'))), kWsCloseProtocolError);
  EXPECT_EQ(code(std::string("\x81\x05Hello", 7)), kWsCloseProtocolError);  // unmasked
  EXPECT_EQ(code(client_frame(0x82, std::string(2000, 'x'))), kWsCloseTooBig);
  std::string huge("\x82\xFF\x80\x00\x00\x00\x00\x00\x00\x00", 10);  // length with bit 63 set
  EXPECT_EQ(code(huge, UINT64_MAX), kWsCloseProtocolError);
}

TEST(WebSocketFrames, ServerFramesAreUnmaskedWithTheShortestLength) {
  std::string out;
  append_ws_frame(out, WsOpcode::Text, "hi");
  EXPECT_EQ(out, std::string("\x81\x02hi", 4));
  out.clear();
  append_ws_frame(out, WsOpcode::Binary, std::string(126, 'x'));
  EXPECT_EQ(out.substr(0, 4), std::string("\x82\x7E\x00\x7E", 4));
  EXPECT_EQ(out.size(), 4u + 126u);
  out.clear();
  append_ws_frame(out, WsOpcode::Binary, std::string(65536, 'x'));
  EXPECT_EQ(out.substr(0, 10), std::string("\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10));
}

TEST(WebSocketFrames, ClosePayloadCarriesTheCodeAndACutReason) {
  EXPECT_EQ(ws_close_payload(1007, "bad"), std::string("\x03\xEF"
                                                       "bad",
                                                       5));
  EXPECT_EQ(ws_close_payload(1000, std::string(300, 'r')).size(), 125u);
}

TEST(WebSocketFrames, SubprotocolIsTheClientsFirstSupportedChoice) {
  std::vector<std::string> supported{"tlv.json", "tlv.binary"};
  EXPECT_EQ(choose_ws_subprotocol("chat, tlv.binary ,tlv.json", supported), "tlv.binary");
  EXPECT_EQ(choose_ws_subprotocol("tlv.json", supported), "tlv.json");
  EXPECT_EQ(choose_ws_subprotocol("chat", supported), "");
  EXPECT_EQ(choose_ws_subprotocol("", supported), "");
  EXPECT_EQ(choose_ws_subprotocol("tlv.json", {}), "");
  EXPECT_EQ(choose_ws_subprotocol(" , ,tlv", supported), "");
}

}  // namespace
}  // namespace portico::bridge
