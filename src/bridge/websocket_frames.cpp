#include "bridge/websocket_frames.hpp"

#include <openssl/sha.h>

#include "core/base64.hpp"

namespace portico::bridge {
namespace {

WsParseResult error(uint16_t code, std::string_view reason) {
  WsParseResult r;
  r.status = WsParseResult::Status::Error;
  r.close_code = code;
  r.error = reason;
  return r;
}

}  // namespace

WsParseResult parse_ws_frame(std::string_view bytes, uint64_t max_payload) {
  WsParseResult r;
  if (bytes.size() < 2) return r;
  auto b0 = static_cast<uint8_t>(bytes[0]);
  auto b1 = static_cast<uint8_t>(bytes[1]);
  if (b0 & 0x70) return error(kWsCloseProtocolError, "reserved bits set (no extension agreed)");
  uint8_t op = b0 & 0x0F;
  if ((op > 0x2 && op < 0x8) || op > 0xA) return error(kWsCloseProtocolError, "unknown opcode");
  WsFrame& f = r.frame;
  f.fin = b0 & 0x80;
  f.opcode = static_cast<WsOpcode>(op);
  if (!(b1 & 0x80)) return error(kWsCloseProtocolError, "client frames must be masked");
  uint64_t len = b1 & 0x7F;
  size_t pos = 2;
  if (len == 126 || len == 127) {
    size_t width = len == 126 ? 2 : 8;
    if (bytes.size() < pos + width) return r;
    len = 0;
    for (size_t i = 0; i < width; ++i) len = (len << 8) | static_cast<uint8_t>(bytes[pos + i]);
    pos += width;
    if (width == 8 && (len >> 63)) return error(kWsCloseProtocolError, "length over 2^63");
  }
  if (f.control()) {
    if (!f.fin) return error(kWsCloseProtocolError, "fragmented control frame");
    if (len > 125) return error(kWsCloseProtocolError, "control frame over 125 bytes");
  } else if (len > max_payload) {
    return error(kWsCloseTooBig, "message too big");
  }
  if (bytes.size() < pos + 4) return r;
  for (size_t i = 0; i < 4; ++i) f.mask[i] = static_cast<uint8_t>(bytes[pos + i]);
  pos += 4;
  f.header_size = pos;
  f.payload_size = len;
  r.status = WsParseResult::Status::Frame;
  return r;
}

void ws_unmask(char* data, size_t n, const std::array<uint8_t, 4>& mask, uint64_t offset) {
  for (size_t i = 0; i < n; ++i) data[i] = static_cast<char>(data[i] ^ mask[(offset + i) & 3]);
}

void append_ws_frame(std::string& out, WsOpcode opcode, std::string_view payload) {
  out.push_back(static_cast<char>(0x80 | static_cast<uint8_t>(opcode)));
  uint64_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(n));
  } else if (n <= 0xFFFF) {
    out.push_back(static_cast<char>(126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n));
  } else {
    out.push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(n >> shift));
  }
  out.append(payload);
}

std::string ws_close_payload(uint16_t code, std::string_view reason) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code));
  p.append(reason.substr(0, 123));
  return p;
}

std::string ws_accept_key(std::string_view client_key) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string text(client_key);
  text += kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return base64_encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

bool valid_ws_key(std::string_view client_key) {
  auto decoded = base64_decode(client_key, Base64Alphabet::Standard);
  return decoded && decoded->size() == 16;
}

std::string choose_ws_subprotocol(std::string_view offered,
                                  const std::vector<std::string>& supported) {
  while (!offered.empty()) {
    size_t comma = offered.find(',');
    std::string_view token = offered.substr(0, comma);
    offered = comma == std::string_view::npos ? std::string_view() : offered.substr(comma + 1);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
      token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    for (const std::string& s : supported)
      if (!token.empty() && token == s) return s;
  }
  return {};
}

}  // namespace portico::bridge
