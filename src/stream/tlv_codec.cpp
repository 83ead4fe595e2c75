#include "stream/tlv_codec.hpp"

#include <bit>
#include <cstring>

namespace portico::stream {

namespace {

// std::byteswap is C++23.
inline uint16_t swap_bytes(uint16_t v) { return __builtin_bswap16(v); }
inline uint32_t swap_bytes(uint32_t v) { return __builtin_bswap32(v); }
inline uint64_t swap_bytes(uint64_t v) { return __builtin_bswap64(v); }

template <class T>
inline T load(const uint8_t* p, bool little) {
  T v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (sizeof(T) > 1) {
    if (little != (std::endian::native == std::endian::little)) v = swap_bytes(v);
  }
  return v;
}

template <class T>
inline void store(uint8_t* p, T v, bool little) {
  if constexpr (sizeof(T) > 1) {
    if (little != (std::endian::native == std::endian::little)) v = swap_bytes(v);
  }
  std::memcpy(p, &v, sizeof v);
}

inline uint64_t read_field(const uint8_t* header, TlvField f) {
  const uint8_t* p = header + f.offset;
  switch (f.width) {
    case 1:
      return *p;
    case 2:
      return load<uint16_t>(p, f.little_endian);
    case 4:
      return load<uint32_t>(p, f.little_endian);
    case 8:
      return load<uint64_t>(p, f.little_endian);
    default:
      return 0;
  }
}

inline void write_field(uint8_t* header, TlvField f, uint64_t v) {
  uint8_t* p = header + f.offset;
  switch (f.width) {
    case 1:
      *p = static_cast<uint8_t>(v);
      break;
    case 2:
      store<uint16_t>(p, static_cast<uint16_t>(v), f.little_endian);
      break;
    case 4:
      store<uint32_t>(p, static_cast<uint32_t>(v), f.little_endian);
      break;
    case 8:
      store<uint64_t>(p, v, f.little_endian);
      break;
    default:
      break;
  }
}

inline TlvDecodeResult failure(TlvError e) {
  TlvDecodeResult r;
  r.status = TlvDecodeResult::Status::Error;
  r.error = e;
  return r;
}

inline TlvDecodeResult need_more(size_t n) {
  TlvDecodeResult r;
  r.need = n;
  return r;
}

inline uint64_t max_length_value(TlvField length) {
  return length.width >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * length.width)) - 1;
}

}  // namespace

std::string_view to_string(TlvError e) {
  switch (e) {
    case TlvError::None:
      return "none";
    case TlvError::BadStartMarker:
      return "bad_start_marker";
    case TlvError::BadEndMarker:
      return "bad_end_marker";
    case TlvError::BadLength:
      return "bad_length";
    case TlvError::Oversize:
      return "oversize";
    case TlvError::Truncated:
      return "truncated";
  }
  return "unknown";
}

uint64_t read_tlv_field(const uint8_t* header, TlvField f) { return read_field(header, f); }
void write_tlv_field(uint8_t* header, TlvField f, uint64_t v) { write_field(header, f, v); }

TlvDecodeResult TlvDecoder::decode(Bytes in) const {
  const TlvFraming& f = *framing_;
  const size_t prefix = f.prefix_size();
  if (in.empty()) return need_more(prefix + f.suffix_size());
  if (f.has_start_marker() && in[0] != static_cast<uint8_t>(f.start_marker))
    return failure(TlvError::BadStartMarker);
  if (in.size() < prefix) return need_more(prefix + f.suffix_size() - in.size());

  const uint8_t* header = in.data() + (prefix - f.header_size);
  const uint64_t length = read_field(header, f.length);
  const uint32_t overhead = f.length_overhead();
  if (length < overhead) return failure(TlvError::BadLength);
  const uint64_t body_size = length - overhead;
  if (body_size > f.max_body) return failure(TlvError::Oversize);

  const size_t total = prefix + static_cast<size_t>(body_size) + f.suffix_size();
  if (in.size() < total) return need_more(total - in.size());
  if (f.has_end_marker() && in[total - 1] != static_cast<uint8_t>(f.end_marker))
    return failure(TlvError::BadEndMarker);

  TlvDecodeResult r;
  r.status = TlvDecodeResult::Status::Frame;
  TlvFrame& frame = r.frame;
  TlvHeader& h = frame.header;
  h.version = static_cast<uint32_t>(read_field(header, f.version));
  h.flags = static_cast<uint32_t>(read_field(header, f.flags));
  h.cmd = static_cast<uint32_t>(read_field(header, f.cmd));
  h.seq = static_cast<uint32_t>(read_field(header, f.seq));
  h.status = static_cast<uint32_t>(read_field(header, f.status));
  h.from = read_field(header, f.from);
  h.to = read_field(header, f.to);
  frame.header_bytes = Bytes(header, f.header_size);
  frame.body = Bytes(in.data() + prefix, static_cast<size_t>(body_size));
  frame.bytes = in.first(total);
  return r;
}

size_t encode_tlv(const TlvFraming& f, const TlvHeader& h, Bytes body, uint8_t* out,
                  const uint8_t* header_template) {
  const uint64_t length = uint64_t{body.size()} + f.length_overhead();
  if (length > max_length_value(f.length)) return 0;
  uint8_t* p = out;
  if (f.has_start_marker()) *p++ = static_cast<uint8_t>(f.start_marker);
  uint8_t* header = p;
  if (header_template)
    std::memmove(header, header_template, f.header_size);  // may alias a request being answered
  else
    std::memset(header, 0, f.header_size);
  write_field(header, f.version, h.version);
  write_field(header, f.flags, h.flags);
  write_field(header, f.cmd, h.cmd);
  write_field(header, f.seq, h.seq);
  write_field(header, f.status, h.status);
  write_field(header, f.from, h.from);
  write_field(header, f.to, h.to);
  write_field(header, f.length, length);
  p += f.header_size;
  if (!body.empty()) std::memcpy(p, body.data(), body.size());
  p += body.size();
  if (f.has_end_marker()) *p++ = static_cast<uint8_t>(f.end_marker);
  return static_cast<size_t>(p - out);
}

namespace {
bool append_frame(const TlvFraming& f, const TlvHeader& h, Bytes body, std::string& out,
                  const uint8_t* header_template) {
  const size_t old = out.size();
  const size_t size = tlv_frame_size(f, body.size());
  out.resize(old + size);
  auto* dst = reinterpret_cast<uint8_t*>(out.data() + old);
  if (encode_tlv(f, h, body, dst, header_template) == 0) {
    out.resize(old);
    return false;
  }
  return true;
}
}  // namespace

bool append_tlv(const TlvFraming& f, const TlvHeader& h, Bytes body, std::string& out) {
  return append_frame(f, h, body, out, nullptr);
}

TlvHeader tlv_reply_header(const TlvHeader& request, uint32_t status) {
  TlvHeader h = request;
  h.cmd = request.cmd + 1;
  h.status = status;
  h.from = request.to;
  h.to = request.from;
  return h;
}

bool append_tlv_reply(const TlvFraming& f, const TlvFrame& request, uint32_t status, Bytes body,
                      std::string& out) {
  const TlvHeader h = tlv_reply_header(request.header, status);
  // The request may live in `out` itself; copy its header before `out` can reallocate.
  uint8_t header_copy[TlvFraming::kMaxHeaderSize];
  std::memcpy(header_copy, request.header_bytes.data(), request.header_bytes.size());
  return append_frame(f, h, body, out, header_copy);
}

}  // namespace portico::stream
