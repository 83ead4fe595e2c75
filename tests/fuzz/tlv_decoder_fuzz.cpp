// libFuzzer target: the TLV decoder must never crash, read out of bounds or loop, whatever the
// framing and the bytes; a frame it returns must re-encode to exactly its own bytes; every
// prefix of a good frame must ask for more (never a frame, never a different error); and an
// oversize body must be refused from the header alone.
#include <cstdint>
#include <cstring>
#include <string>

#include "stream/tlv_codec.hpp"

using namespace portico::stream;

namespace {

// The first 8 input bytes choose a framing, so the fuzzer explores layouts as well as streams.
TlvFraming framing_from(const uint8_t* p) {
  TlvFraming f;
  if (p[0] & 1) f.start_marker = TlvFraming::kNoMarker;
  if (p[0] & 2) f.end_marker = TlvFraming::kNoMarker;
  f.length_includes_header = p[0] & 4;
  f.length_includes_markers = p[0] & 8;
  if (p[0] & 16) {
    // A custom layout: header 1..32 bytes, fields placed by the next bytes (clamped inside).
    f.header_size = static_cast<uint16_t>(p[1] % 32 + 1);
    static constexpr uint8_t kWidths[] = {1, 2, 4};
    auto place = [&](uint8_t b, bool allow_absent) {
      TlvField field;
      if (allow_absent && (b & 0x80)) return field;
      field.width = kWidths[b % 3];
      field.little_endian = b & 0x40;
      while (field.width > f.header_size) field.width /= 2;
      field.offset = static_cast<uint16_t>((b >> 2) % (f.header_size - field.width + 1));
      return field;
    };
    f.length = place(p[2], false);
    f.cmd = place(p[3], true);
    f.seq = place(p[4], true);
    f.from = place(p[5], true);
    f.to = place(p[6], true);
    f.version = place(p[5] ^ p[6], true);
    f.flags = TlvField{};
    f.status = place(p[3] ^ p[4], true);
  }
  f.max_body = (p[7] & 1) ? 1024u * 1024u : p[7] * 4u;
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  const TlvFraming f = framing_from(data);
  TlvDecoder dec(f);
  Bytes unread(data + 8, size - 8);

  while (true) {
    TlvDecodeResult r = dec.decode(unread);
    if (r.status == TlvDecodeResult::Status::NeedMore) {
      if (r.need == 0) __builtin_trap();  // would make the caller spin
      break;
    }
    if (r.status == TlvDecodeResult::Status::Error) {
      if (r.error == TlvError::None || r.error == TlvError::Truncated) __builtin_trap();
      // Oversize and a bad length are knowable from the start marker and header alone.
      if ((r.error == TlvError::Oversize || r.error == TlvError::BadLength) &&
          dec.decode(unread.first(f.prefix_size())).error != r.error)
        __builtin_trap();
      break;
    }
    const TlvFrame& frame = r.frame;
    if (frame.bytes.data() != unread.data() || frame.bytes.size() > unread.size() ||
        frame.bytes.size() != tlv_frame_size(f, frame.body.size()) ||
        frame.body.size() > f.max_body)
      __builtin_trap();

    // Re-encoding the decoded fields over the raw header gives back the same bytes.
    std::string again(frame.bytes.size(), '\0');
    auto* out = reinterpret_cast<uint8_t*>(again.data());
    if (encode_tlv(f, frame.header, frame.body, out, frame.header_bytes.data()) != again.size() ||
        std::memcmp(out, frame.bytes.data(), again.size()) != 0)
      __builtin_trap();

    // Every prefix asks for more, and never for more than the frame still lacks.
    for (size_t n = 0; n < frame.bytes.size(); n += 1 + n / 8) {
      TlvDecodeResult part = dec.decode(frame.bytes.first(n));
      if (part.status != TlvDecodeResult::Status::NeedMore || part.need == 0 ||
          part.need > frame.bytes.size() - n)
        __builtin_trap();
    }

    // A local reply to it is itself one whole, empty-bodied frame.
    std::string reply;
    if (append_tlv_reply(f, frame, 1, Bytes(), reply)) {
      TlvDecodeResult rep = dec.decode(as_bytes(reply));
      if (!rep.ok() || !rep.frame.body.empty() || rep.frame.bytes.size() != reply.size())
        __builtin_trap();
    }
    unread = unread.subspan(frame.bytes.size());
  }
  return 0;
}
