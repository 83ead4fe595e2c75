// TLV frames (TLV.md) in and out of caller-owned buffers: a zero-copy incremental decoder whose
// only state is a pointer to the route's shared TlvFraming, and encoders for frames and replies.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "stream/tlv_framing.hpp"

namespace portico::stream {

using Bytes = std::span<const uint8_t>;

inline Bytes as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(Bytes b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// The header fields the gateway understands. A field the framing lacks reads as 0.
struct TlvHeader {
  uint32_t version = 1;
  uint32_t flags = 0;
  uint32_t cmd = 0;
  uint32_t seq = 0;
  uint32_t status = 0;
  uint64_t from = 0;
  uint64_t to = 0;
};

// One decoded frame; the spans point into the buffer given to decode().
struct TlvFrame {
  TlvHeader header;
  Bytes header_bytes;  // the raw header, between the start marker and the body
  Bytes body;
  Bytes bytes;  // the whole frame, markers included: what a proxy forwards
};

// Why a stream is closed. Counters are indexed by it.
enum class TlvError : uint8_t {
  None,
  BadStartMarker,  // the first byte of a frame is not the start marker
  BadEndMarker,    // the byte after the body is not the end marker
  BadLength,       // the length field is smaller than the header/markers it says it counts
  Oversize,        // the body would exceed max_body (known from the header alone)
  Truncated,       // EOF inside a frame
};
inline constexpr size_t kTlvErrorCount = 6;
std::string_view to_string(TlvError error);

struct TlvDecodeResult {
  enum class Status : uint8_t { Frame, NeedMore, Error };
  Status status = Status::NeedMore;
  TlvError error = TlvError::None;
  // NeedMore: the buffer must grow by at least this many bytes before the next call is worth
  // making (after the header it is exactly the rest of the frame, so a caller can size its
  // buffer once).
  size_t need = 0;
  TlvFrame frame;  // valid when status == Frame

  bool ok() const { return status == Status::Frame; }
};

// Stateless between calls: hand it the unread bytes each time, consume frame.bytes.size() after
// a Frame. 8 bytes per connection; the framing is shared and must outlive the decoder.
class TlvDecoder {
 public:
  explicit TlvDecoder(const TlvFraming& framing) : framing_(&framing) {}

  const TlvFraming& framing() const { return *framing_; }

  // Decodes the frame at the start of `unread`. A bad marker or length is reported as soon as
  // the bytes that show it are there: a start marker after 1 byte, an oversize body as soon as
  // the header is complete, before any of it is buffered.
  TlvDecodeResult decode(Bytes unread) const;
  TlvDecodeResult decode(std::string_view unread) const { return decode(as_bytes(unread)); }

  // True when `unread` holds part of a frame: the caller's stall timer should be running.
  static bool mid_frame(Bytes unread) { return !unread.empty(); }
  // At EOF: Truncated when a partial frame is left, else None.
  static TlvError at_eof(Bytes unread) {
    return unread.empty() ? TlvError::None : TlvError::Truncated;
  }

 private:
  const TlvFraming* framing_;
};

// Reads one header field (0 when the framing has no such field). `header` is the raw header.
uint64_t read_tlv_field(const uint8_t* header, TlvField field);
void write_tlv_field(uint8_t* header, TlvField field, uint64_t value);

// Bytes a frame with a `body_size`-byte body takes.
inline size_t tlv_frame_size(const TlvFraming& f, size_t body_size) {
  return f.prefix_size() + body_size + f.suffix_size();
}

// Writes a frame into `out` (which must hold tlv_frame_size() bytes) and returns its size, or 0
// when the body does not fit the length field. Header bytes no field covers are zeroed, unless
// `header_template` (a header_size-byte raw header, e.g. a request's) supplies them.
size_t encode_tlv(const TlvFraming& f, const TlvHeader& header, Bytes body, uint8_t* out,
                  const uint8_t* header_template = nullptr);
// Appends a frame to `out`; false (nothing appended) when the body does not fit the length field.
bool append_tlv(const TlvFraming& f, const TlvHeader& header, Bytes body, std::string& out);

// The header of a locally generated answer to `request`: cmd + 1, the same seq, `status`,
// from and to swapped; version and flags kept.
TlvHeader tlv_reply_header(const TlvHeader& request, uint32_t status);
// Appends that answer (empty or given body) to `out`, keeping header bytes no field covers.
bool append_tlv_reply(const TlvFraming& f, const TlvFrame& request, uint32_t status, Bytes body,
                      std::string& out);

}  // namespace portico::stream
