// RFC 6455 frames, server side: the handshake answer, a stateless parser for client frames
// (which must be masked) and the encoder for unmasked server frames. The session that uses them
// keeps the bytes; nothing here allocates except the encoder's output.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace portico::bridge {

enum class WsOpcode : uint8_t {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xA,
};

// Close codes (RFC 6455 section 7.4.1) the bridge sends.
inline constexpr uint16_t kWsCloseNormal = 1000;
inline constexpr uint16_t kWsCloseGoingAway = 1001;
inline constexpr uint16_t kWsCloseProtocolError = 1002;
inline constexpr uint16_t kWsCloseUnsupported = 1003;
inline constexpr uint16_t kWsCloseInvalidPayload = 1007;
inline constexpr uint16_t kWsCloseTooBig = 1009;
inline constexpr uint16_t kWsCloseInternalError = 1011;

struct WsFrame {
  bool fin = false;
  WsOpcode opcode = WsOpcode::Continuation;
  std::array<uint8_t, 4> mask{};
  size_t header_size = 0;  // bytes before the payload
  uint64_t payload_size = 0;
  size_t size() const { return header_size + static_cast<size_t>(payload_size); }
  bool control() const { return static_cast<uint8_t>(opcode) & 0x8; }
};

struct WsParseResult {
  enum class Status : uint8_t { Frame, NeedMore, Error };
  Status status = Status::NeedMore;
  WsFrame frame;            // Frame: the header; the payload may still be arriving (see below)
  uint16_t close_code = 0;  // Error: the code to close with
  std::string_view error;   // Error: a static reason
};

// Parses the frame header at the start of `bytes`. Returns Frame as soon as the header is
// complete and valid (check bytes.size() >= frame.size() for the payload); Error for reserved
// bits (no extension is negotiated), unknown opcodes, unmasked client frames, fragmented or
// oversized control frames, and payloads over `max_payload` (close code 1009).
WsParseResult parse_ws_frame(std::string_view bytes, uint64_t max_payload);

// XORs `n` bytes with the frame's mask; `offset` is the position of data[0] in the payload.
void ws_unmask(char* data, size_t n, const std::array<uint8_t, 4>& mask, uint64_t offset = 0);

// Appends one unfragmented, unmasked frame (what a server sends).
void append_ws_frame(std::string& out, WsOpcode opcode, std::string_view payload);
// A close frame's payload: the code, then a reason cut to fit the 125-byte control frame limit.
std::string ws_close_payload(uint16_t code, std::string_view reason);

// The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key.
std::string ws_accept_key(std::string_view client_key);
// A Sec-WebSocket-Key is base64 of 16 bytes.
bool valid_ws_key(std::string_view client_key);

// The subprotocol to answer with: the first one the client offers (a Sec-WebSocket-Protocol
// list, in its order of preference) that is `supported`; empty when none.
std::string choose_ws_subprotocol(std::string_view offered,
                                  const std::vector<std::string>& supported);

}  // namespace portico::bridge
