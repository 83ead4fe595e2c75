// portico-tlv-codec-bench: nanoseconds per frame for the TLV decoder (a buffer of back-to-back
// frames, as a proxy sees them after one read) and for building local replies, default framing.
//   usage: portico-tlv-codec-bench [body bytes = 256]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "stream/tlv_codec.hpp"

using namespace portico::stream;

int main(int argc, char** argv) {
  const size_t body = argc > 1 ? size_t(std::atol(argv[1])) : 256;
  TlvFraming framing;
  TlvDecoder decoder(framing);
  std::string stream;
  constexpr int kFrames = 1000;
  for (int i = 0; i < kFrames; ++i) {
    TlvHeader h;
    h.cmd = 0x4001;
    h.seq = uint32_t(i);
    h.from = 1001;
    h.to = 1002;
    append_tlv(framing, h, as_bytes(std::string(body, 'x')), stream);
  }

  using Clock = std::chrono::steady_clock;
  constexpr int kRounds = 5000;
  uint64_t checksum = 0;
  auto t0 = Clock::now();
  for (int r = 0; r < kRounds; ++r) {
    Bytes unread = as_bytes(stream);
    while (true) {
      TlvDecodeResult res = decoder.decode(unread);
      if (!res.ok()) break;
      checksum += res.frame.header.seq + res.frame.header.cmd;
      unread = unread.subspan(res.frame.bytes.size());
    }
  }
  auto t1 = Clock::now();

  std::string out;
  out.reserve(64 * 1024);
  TlvDecodeResult first = decoder.decode(as_bytes(stream));
  for (int r = 0; r < kRounds * kFrames / 10; ++r) {
    if (out.size() > 60 * 1024) out.clear();
    append_tlv_reply(framing, first.frame, 403, Bytes(), out);
  }
  auto t2 = Clock::now();

  double decode_ns =
      std::chrono::duration<double, std::nano>(t1 - t0).count() / (kRounds * kFrames);
  double reply_ns =
      std::chrono::duration<double, std::nano>(t2 - t1).count() / (kRounds * kFrames / 10);
  std::printf("body %zu bytes: decode %.1f ns/frame, local reply %.1f ns/frame (checksum %llu)\n",
              body, decode_ns, reply_ns, (unsigned long long)(checksum + out.size()));
  return 0;
}
