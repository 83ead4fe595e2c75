// libFuzzer target: what a browser can send through tlv-bridge. The first input byte picks the
// parser: WebSocket frame headers (never a frame beyond the bytes, sizes consistent), or a JSON
// envelope converted with the demo proto's types; an envelope that converts must decode as one
// whole TLV frame and convert back to JSON (the backend direction) without failing.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "bridge/tlv_envelope.hpp"
#include "bridge/websocket_frames.hpp"

using namespace portico;

namespace {

const bridge::CmdTypes& demo_types() {
  static const bridge::CmdTypes types = [] {
    std::ifstream in("conf/im_demo.proto");
    std::stringstream text;
    text << in.rdbuf();
    std::string error;
    auto set = bridge::ProtoSet::compile(text.str(), error);
    if (!set) std::abort();
    bridge::CmdTypes t;
    if (!t.bind({{0x1001, "LoginRequest"},
                 {0x1002, "LoginReply"},
                 {0x4001, "ChatMessage"},
                 {0x4002, "Receipt"},
                 {0x9001, "Heartbeat"}},
                set, error))
      std::abort();
    return t;
  }();
  return types;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    while (!in.empty()) {
      bridge::WsParseResult r = bridge::parse_ws_frame(in, 1 << 16);
      if (r.status != bridge::WsParseResult::Status::Frame) break;
      if (r.frame.header_size < 6 || r.frame.header_size > 14) std::abort();
      if (r.frame.payload_size > (1 << 16) && !r.frame.control()) std::abort();
      if (r.frame.control() && r.frame.payload_size > 125) std::abort();
      if (r.frame.size() > in.size()) break;
      in.remove_prefix(r.frame.size());
    }
    return 0;
  }
  stream::TlvFraming framing;
  std::string out;
  bridge::EnvelopeError error;
  if (!bridge::envelope_to_tlv(in, framing, demo_types(), out, error)) {
    if (error.message.empty() || !out.empty()) std::abort();
    bridge::error_envelope(error, 400);
    return 0;
  }
  auto r = stream::TlvDecoder(framing).decode(out);
  if (!r.ok() || r.frame.bytes.size() != out.size()) std::abort();
  std::string back = bridge::tlv_to_envelope(r.frame, demo_types());
  if (back.empty() || back.front() != '{') std::abort();
  return 0;
}
