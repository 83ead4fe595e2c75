// Protobuf messages <-> JSON by reflection, with the conventions of lua-protobuf (what the seed
// system used, TLV.md): field names as declared in the .proto, enums as names, 64-bit integers
// as JSON numbers while they fit in 2^53 and as strings beyond, bytes as base64. Proto3 scalars
// are always written (a reply's `result: "OK"` is visible), sub-messages only when set.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace google::protobuf {
class Message;
}

namespace portico::bridge {

// Nesting deeper than this is refused both ways (a hostile message cannot exhaust the stack).
inline constexpr int kMaxJsonDepth = 64;

// Nothing when the message nests deeper than kMaxJsonDepth (it cannot be shown whole).
std::optional<nlohmann::json> message_to_json(const google::protobuf::Message& message);

// Fills `message` (which should be empty) from a JSON object. Accepts the declared field names
// and the lowerCamelCase JSON names, numbers or decimal strings for integers, enum names or
// numbers, base64 for bytes; null leaves a field unset. On failure returns false with `error`
// naming the field under `path` ("data.to: expected an unsigned integer, got \"x\"").
bool json_to_message(const nlohmann::json& value, google::protobuf::Message& message,
                     const std::string& path, std::string& error);

}  // namespace portico::bridge
