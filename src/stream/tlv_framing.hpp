// The layout of a TLV frame (markers, header fields, length rule, body cap), shared read-only by
// every connection of a stream route. The default is TLV.md's; other in-house protocols differ
// only in this description, parsed from a stream route's `protocol.conf.framing`.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "config/field_reader.hpp"

namespace portico::stream {

// One integer in the header. width 0 = the protocol has no such field (it decodes as 0 and is
// not written).
struct TlvField {
  uint16_t offset = 0;
  uint8_t width = 0;  // bytes: 0, 1, 2, 4 (8 for from/to)
  bool little_endian = false;

  bool present() const { return width != 0; }
  bool operator==(const TlvField&) const = default;
};

struct TlvFraming {
  static constexpr int kNoMarker = -1;
  static constexpr uint32_t kDefaultMaxBody = 1024 * 1024;
  static constexpr uint16_t kMaxHeaderSize = 1024;

  int start_marker = 0x09;  // a byte value, or kNoMarker
  int end_marker = 0x0A;
  uint16_t header_size = 20;  // bytes between the start marker and the body

  TlvField length{16, 4};  // width 1, 2 or 4
  // What the length field counts besides the body: the header, and the two markers.
  bool length_includes_header = false;
  bool length_includes_markers = false;

  TlvField version{0, 1};
  TlvField flags{1, 1};
  TlvField cmd{2, 2};
  TlvField seq{4, 2};
  TlvField status{6, 2};
  TlvField from{8, 4};
  TlvField to{12, 4};

  // Enforced from the header, before any body byte is buffered.
  uint32_t max_body = kDefaultMaxBody;

  bool has_start_marker() const { return start_marker != kNoMarker; }
  bool has_end_marker() const { return end_marker != kNoMarker; }
  // Bytes before the body (start marker + header) and after it (end marker).
  size_t prefix_size() const { return (has_start_marker() ? 1u : 0u) + header_size; }
  size_t suffix_size() const { return has_end_marker() ? 1u : 0u; }
  // What the length field holds besides the body length.
  uint32_t length_overhead() const {
    return (length_includes_header ? header_size : 0u) +
           (length_includes_markers
                ? static_cast<uint32_t>(prefix_size() - header_size + suffix_size())
                : 0u);
  }

  bool operator==(const TlvFraming&) const = default;
};

// Reads a `framing` object (absent fields keep TLV.md's defaults), e.g.
//   {"start_marker": "none", "end_marker": "none", "header_size": 8, "byte_order": "little",
//    "length": {"offset": 4, "width": 4, "includes_header": true},
//    "fields": {"cmd": {"offset": 0, "width": 2}, "seq": {"offset": 2, "width": 2}},
//    "max_body": "64k"}
// When `fields` is given it replaces the default header layout: fields it leaves out are absent.
// Every error names its field path under `path`; a field lying outside the header is an error.
TlvFraming parse_tlv_framing(const nlohmann::json& value, const std::string& path,
                             config::Errors& errors);

// The JSON form parse_tlv_framing() accepts, with every field spelled out (for docs and the
// Admin API's view of a route).
nlohmann::json tlv_framing_to_json(const TlvFraming& framing);

}  // namespace portico::stream
