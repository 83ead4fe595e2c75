// TLV frames <-> the JSON envelope of TLV.md, for clients that cannot speak the binary protocol
// (browsers over WebSocket, later long polling and HTTP RPC):
//
//   {"id": <seq>, "cmd": <cmd>, "from": <uid>, "to": <uid>, "status": <status>, "data": {...}}
//
// `data` is the body converted with the protobuf type configured for the cmd. A cmd without a
// type (or a body that does not parse as its type) travels as "body": base64 of the raw body.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bridge/proto_set.hpp"
#include "stream/tlv_codec.hpp"

namespace portico::bridge {

// cmd -> protobuf message type names, as configured (before a ProtoSet resolves them).
using CmdTypeNames = std::vector<std::pair<uint32_t, std::string>>;

// The configured types resolved in one ProtoSet: what a session converts with.
class CmdTypes {
 public:
  // Resolves every name in `protos`; false with `error` naming the first that is missing.
  bool bind(const CmdTypeNames& names, ProtoSetPtr protos, std::string& error);
  // The default instance of the cmd's type, or null when the cmd has none.
  const google::protobuf::Message* find(uint32_t cmd) const;

 private:
  std::vector<std::pair<uint32_t, const google::protobuf::Message*>> types_;  // sorted by cmd
  ProtoSetPtr protos_;  // owns the descriptors the prototypes belong to
};

// Why a client's envelope was refused, and what the refusal answer should carry.
struct EnvelopeError {
  uint32_t id = 0;
  uint32_t cmd = 0;  // 0 when the envelope had no usable cmd
  std::string message;
};

// One JSON envelope (a WebSocket text message) -> one TLV frame appended to `out`. On failure
// nothing is appended and `error` says which field is wrong.
bool envelope_to_tlv(std::string_view text, const stream::TlvFraming& framing,
                     const CmdTypes& types, std::string& out, EnvelopeError& error);

// One TLV frame -> its JSON envelope.
std::string tlv_to_envelope(const stream::TlvFrame& frame, const CmdTypes& types);

// The envelope the bridge answers a refused message with: cmd + 1 (0 without a cmd), the same
// id, `status`, and "error": the reason.
std::string error_envelope(const EnvelopeError& error, uint32_t status);

}  // namespace portico::bridge
