#include "stream/tlv_codec.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace portico::stream {
namespace {

using Status = TlvDecodeResult::Status;

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list) s.push_back(static_cast<char>(b));
  return s;
}

// A default-framing frame written out by hand, so the tests pin TLV.md's byte layout rather
// than the encoder's idea of it.
std::string hand_frame(std::string body) {
  std::string s = bytes({0x09,                      // start marker
                         0x01, 0xA5,                // version, flags
                         0x40, 0x01,                // cmd
                         0x12, 0x34,                // seq
                         0x00, 0x07,                // status
                         0x00, 0x00, 0x03, 0xE9,    // from 1001
                         0x80, 0x00, 0x03, 0xEA,    // to 0x800003EA
                         0x00, 0x00, 0x00, 0x00});  // body_len, below
  for (int i = 0; i < 4; ++i) s[17 + i] = static_cast<char>(body.size() >> (24 - 8 * i));
  return s + body + bytes({0x0A});
}

TEST(TlvDecoder, DecodesEveryHeaderFieldOfTheDefaultLayout) {
  TlvFraming framing;
  TlvDecoder dec(framing);
  std::string in = hand_frame("hello");
  TlvDecodeResult r = dec.decode(in);
  ASSERT_EQ(r.status, Status::Frame);
  const TlvHeader& h = r.frame.header;
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.flags, 0xA5);
  EXPECT_EQ(h.cmd, 0x4001u);
  EXPECT_EQ(h.seq, 0x1234u);
  EXPECT_EQ(h.status, 7u);
  EXPECT_EQ(h.from, 1001u);
  EXPECT_EQ(h.to, 0x800003EAu);
  EXPECT_EQ(as_chars(r.frame.body), "hello");
  EXPECT_EQ(r.frame.bytes.size(), in.size());
  EXPECT_EQ(r.frame.header_bytes.size(), 20u);
  // Zero-copy: the spans point into the caller's buffer.
  EXPECT_EQ(reinterpret_cast<const char*>(r.frame.bytes.data()), in.data());
  EXPECT_EQ(reinterpret_cast<const char*>(r.frame.body.data()), in.data() + 21);
}

TEST(TlvEncoder, WritesTheSameBytesAsTheHandBuiltFrame) {
  TlvFraming framing;
  TlvHeader h{1, 0xA5, 0x4001, 0x1234, 7, 1001, 0x800003EA};
  std::string out;
  ASSERT_TRUE(append_tlv(framing, h, as_bytes("hello"), out));
  EXPECT_EQ(out, hand_frame("hello"));
  EXPECT_EQ(tlv_frame_size(framing, 5), out.size());
}

TEST(TlvDecoder, ByteAtATimeAsksForExactlyWhatIsMissing) {
  TlvFraming framing;
  TlvDecoder dec(framing);
  std::string in = hand_frame(std::string(300, 'x'));
  EXPECT_EQ(dec.decode(std::string_view()).need, 22u);  // smallest possible frame
  for (size_t n = 1; n < in.size(); ++n) {
    TlvDecodeResult r = dec.decode(std::string_view(in).substr(0, n));
    ASSERT_EQ(r.status, Status::NeedMore) << n;
    if (n < 21)
      EXPECT_EQ(r.need, 22u - n) << n;
    else
      EXPECT_EQ(r.need, in.size() - n) << n;  // header known: the rest of the frame exactly
    EXPECT_TRUE(TlvDecoder::mid_frame(as_bytes(std::string_view(in).substr(0, n))));
  }
  TlvDecodeResult r = dec.decode(in);
  ASSERT_EQ(r.status, Status::Frame);
  EXPECT_EQ(r.frame.body.size(), 300u);
}

TEST(TlvDecoder, SeveralFramesInOneBuffer) {
  TlvFraming framing;
  TlvDecoder dec(framing);
  std::string buf;
  for (uint32_t seq = 1; seq <= 5; ++seq) {
    TlvHeader h;
    h.cmd = 0x9001;
    h.seq = seq;
    ASSERT_TRUE(append_tlv(framing, h, as_bytes(std::string(seq * 3, 'a')), buf));
  }
  buf += hand_frame("partial").substr(0, 10);  // the start of a sixth

  Bytes unread = as_bytes(buf);
  for (uint32_t seq = 1; seq <= 5; ++seq) {
    TlvDecodeResult r = dec.decode(unread);
    ASSERT_EQ(r.status, Status::Frame) << seq;
    EXPECT_EQ(r.frame.header.seq, seq);
    EXPECT_EQ(r.frame.body.size(), seq * 3);
    unread = unread.subspan(r.frame.bytes.size());
  }
  EXPECT_EQ(dec.decode(unread).status, Status::NeedMore);
  EXPECT_EQ(unread.size(), 10u);
  EXPECT_EQ(TlvDecoder::at_eof(unread), TlvError::Truncated);
}

TEST(TlvDecoder, EmptyBodyAndEofBetweenFrames) {
  TlvFraming framing;
  TlvDecoder dec(framing);
  std::string in = hand_frame("");
  TlvDecodeResult r = dec.decode(in);
  ASSERT_EQ(r.status, Status::Frame);
  EXPECT_TRUE(r.frame.body.empty());
  EXPECT_EQ(r.frame.bytes.size(), 22u);
  EXPECT_FALSE(TlvDecoder::mid_frame(Bytes()));
  EXPECT_EQ(TlvDecoder::at_eof(Bytes()), TlvError::None);
}

TEST(TlvDecoder, BadStartMarkerIsSeenAtTheFirstByte) {
  TlvFraming framing;
  TlvDecoder dec(framing);
  TlvDecodeResult r = dec.decode(bytes({0x0A}));
  EXPECT_EQ(r.status, Status::Error);
  EXPECT_EQ(r.error, TlvError::BadStartMarker);
  // A frame that follows a good one but is misaligned.
  std::string in = hand_frame("ok") + "GET / HTTP/1.1\r\n";
  Bytes unread = as_bytes(in);
  TlvDecodeResult first = dec.decode(unread);
  ASSERT_EQ(first.status, Status::Frame);
  EXPECT_EQ(dec.decode(unread.subspan(first.frame.bytes.size())).error, TlvError::BadStartMarker);
}

TEST(TlvDecoder, BadEndMarker) {
  TlvFraming framing;
  TlvDecoder dec(framing);
  std::string in = hand_frame("body");
  in.back() = 0x0B;
  TlvDecodeResult r = dec.decode(in);
  EXPECT_EQ(r.status, Status::Error);
  EXPECT_EQ(r.error, TlvError::BadEndMarker);
  // A body one byte longer than its length says also lands on a wrong end marker.
  std::string longer = hand_frame("body");
  longer.insert(longer.size() - 1, "!");
  EXPECT_EQ(dec.decode(longer).error, TlvError::BadEndMarker);
}

TEST(TlvDecoder, OversizeIsReportedFromTheHeaderAlone) {
  TlvFraming framing;
  framing.max_body = 1000;
  TlvDecoder dec(framing);
  std::string header_only = hand_frame(std::string(1001, 'x')).substr(0, 21);
  TlvDecodeResult r = dec.decode(header_only);
  EXPECT_EQ(r.status, Status::Error);
  EXPECT_EQ(r.error, TlvError::Oversize);
  // Exactly max_body is fine.
  TlvHeader h;
  std::string ok;
  ASSERT_TRUE(append_tlv(framing, h, as_bytes(std::string(1000, 'y')), ok));
  EXPECT_EQ(dec.decode(ok).status, Status::Frame);
  // A 4 GiB length in a default frame: rejected without waiting for anything.
  std::string huge = header_only;
  huge[17] = huge[18] = huge[19] = huge[20] = static_cast<char>(0xFF);
  TlvFraming defaults;
  EXPECT_EQ(TlvDecoder(defaults).decode(huge).error, TlvError::Oversize);
}

TEST(TlvDecoder, NoMarkersTwoByteLength) {
  TlvFraming f;
  f.start_marker = f.end_marker = TlvFraming::kNoMarker;
  f.header_size = 6;
  f.length = {0, 2};
  f.version = f.flags = f.status = f.from = f.to = TlvField{};
  f.cmd = {2, 2};
  f.seq = {4, 2};
  TlvDecoder dec(f);
  std::string in = bytes({0x00, 0x03, 0x10, 0x01, 0x00, 0x2A}) + "abc";
  TlvDecodeResult r = dec.decode(in);
  ASSERT_EQ(r.status, Status::Frame);
  EXPECT_EQ(r.frame.header.cmd, 0x1001u);
  EXPECT_EQ(r.frame.header.seq, 42u);
  EXPECT_EQ(r.frame.header.from, 0u);  // absent fields read as 0
  EXPECT_EQ(as_chars(r.frame.body), "abc");
  EXPECT_EQ(r.frame.bytes.size(), 9u);
  // Any first byte is fine without a start marker.
  std::string out;
  TlvHeader h;
  h.cmd = 0x1001;
  h.seq = 42;
  h.from = 77;  // no field for it: not written
  ASSERT_TRUE(append_tlv(f, h, as_bytes("abc"), out));
  EXPECT_EQ(out, in);
}

TEST(TlvDecoder, OneByteLengthAndItsLimitOnEncoding) {
  TlvFraming f;
  f.header_size = 3;
  f.length = {2, 1};
  f.version = f.flags = f.seq = f.status = f.from = f.to = TlvField{};
  f.cmd = {0, 2};
  TlvDecoder dec(f);
  std::string in = bytes({0x09, 0x90, 0x01, 0x02}) + "hi" + bytes({0x0A});
  TlvDecodeResult r = dec.decode(in);
  ASSERT_EQ(r.status, Status::Frame);
  EXPECT_EQ(r.frame.header.cmd, 0x9001u);
  EXPECT_EQ(as_chars(r.frame.body), "hi");

  std::string out = "keep";
  TlvHeader h;
  EXPECT_TRUE(append_tlv(f, h, as_bytes(std::string(255, 'z')), out));
  std::string before = out;
  EXPECT_FALSE(append_tlv(f, h, as_bytes(std::string(256, 'z')), out));
  EXPECT_EQ(out, before);  // nothing appended
}

TEST(TlvDecoder, LittleEndianFields) {
  TlvFraming f;
  for (TlvField* field :
       {&f.length, &f.version, &f.flags, &f.cmd, &f.seq, &f.status, &f.from, &f.to})
    field->little_endian = true;
  TlvDecoder dec(f);
  std::string in = bytes({0x09, 0x01, 0x00, 0x01, 0x40, 0x34, 0x12, 0x00, 0x00, 0xE9, 0x03,
                          0x00, 0x00, 0xEA, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00}) +
                   "ok" + bytes({0x0A});
  TlvDecodeResult r = dec.decode(in);
  ASSERT_EQ(r.status, Status::Frame);
  EXPECT_EQ(r.frame.header.cmd, 0x4001u);
  EXPECT_EQ(r.frame.header.seq, 0x1234u);
  EXPECT_EQ(r.frame.header.from, 1001u);
  EXPECT_EQ(r.frame.header.to, 1002u);
  EXPECT_EQ(as_chars(r.frame.body), "ok");
  std::string out;
  ASSERT_TRUE(append_tlv(f, r.frame.header, r.frame.body, out));
  EXPECT_EQ(out, in);
}

TEST(TlvDecoder, LengthCountingHeaderAndMarkers) {
  TlvFraming f;
  f.length_includes_header = true;
  f.length_includes_markers = true;
  TlvDecoder dec(f);
  std::string in = hand_frame("abcd");
  in[20] = static_cast<char>(4 + 20 + 2);  // the whole frame
  TlvDecodeResult r = dec.decode(in);
  ASSERT_EQ(r.status, Status::Frame);
  EXPECT_EQ(as_chars(r.frame.body), "abcd");
  std::string out;
  ASSERT_TRUE(append_tlv(f, r.frame.header, r.frame.body, out));
  EXPECT_EQ(out, in);

  // Counting only the header.
  TlvFraming h = TlvFraming{};
  h.length_includes_header = true;
  std::string in2 = hand_frame("abcd");
  in2[20] = static_cast<char>(4 + 20);
  EXPECT_EQ(as_chars(TlvDecoder(h).decode(in2).frame.body), "abcd");
}

TEST(TlvDecoder, LengthSmallerThanWhatItCountsIsBadLength) {
  TlvFraming f;
  f.length_includes_header = true;
  std::string in = hand_frame("");
  in[20] = 19;  // less than the 20-byte header it claims to include
  TlvDecodeResult r = TlvDecoder(f).decode(in);
  EXPECT_EQ(r.status, Status::Error);
  EXPECT_EQ(r.error, TlvError::BadLength);
}

TEST(TlvDecoder, EightByteUserIds) {
  TlvFraming f;
  f.header_size = 28;
  f.from = {12, 8};
  f.to = {20, 8};
  f.length = {8, 4};
  TlvHeader h;
  h.cmd = 0x4001;
  h.from = 0x0102030405060708ull;
  h.to = 0xF0E0D0C0B0A09080ull;
  std::string out;
  ASSERT_TRUE(append_tlv(f, h, as_bytes("x"), out));
  EXPECT_EQ(static_cast<uint8_t>(out[1 + 12]), 0x01);  // big-endian on the wire
  TlvDecodeResult r = TlvDecoder(f).decode(out);
  ASSERT_EQ(r.status, Status::Frame);
  EXPECT_EQ(r.frame.header.from, h.from);
  EXPECT_EQ(r.frame.header.to, h.to);
}

TEST(TlvReply, AnswersWithCmdPlusOneSameSeqSwappedUsers) {
  TlvFraming framing;
  std::string request = hand_frame("payload");
  TlvDecodeResult req = TlvDecoder(framing).decode(request);
  ASSERT_TRUE(req.ok());
  std::string out;
  ASSERT_TRUE(append_tlv_reply(framing, req.frame, 403, Bytes(), out));
  TlvDecodeResult rep = TlvDecoder(framing).decode(out);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep.frame.header.cmd, 0x4002u);
  EXPECT_EQ(rep.frame.header.seq, 0x1234u);
  EXPECT_EQ(rep.frame.header.status, 403u);
  EXPECT_EQ(rep.frame.header.from, 0x800003EAu);
  EXPECT_EQ(rep.frame.header.to, 1001u);
  EXPECT_EQ(rep.frame.header.flags, 0xA5);  // opaque flags pass through
  EXPECT_EQ(rep.frame.header.version, 1);
  EXPECT_TRUE(rep.frame.body.empty());
}

TEST(TlvReply, KeepsHeaderBytesNoFieldCoversAndMayAnswerFromTheSameBuffer) {
  TlvFraming f;
  f.header_size = 24;  // bytes 20..23: a reserved area the gateway does not know
  std::string request = hand_frame("q");
  request.insert(21, bytes({0xDE, 0xAD, 0xBE, 0xEF}));
  TlvDecodeResult req = TlvDecoder(f).decode(request);
  ASSERT_TRUE(req.ok());
  // The request is answered into the very buffer it lives in (which then reallocates).
  std::string& buf = request;
  ASSERT_TRUE(append_tlv_reply(f, req.frame, 0, as_bytes("answer"), buf));
  Bytes unread = as_bytes(buf).subspan(req.frame.bytes.size());
  TlvDecodeResult rep = TlvDecoder(f).decode(unread);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(as_chars(rep.frame.header_bytes.subspan(20)), bytes({0xDE, 0xAD, 0xBE, 0xEF}));
  EXPECT_EQ(as_chars(rep.frame.body), "answer");
  EXPECT_EQ(rep.frame.header.seq, 0x1234u);
}

TEST(TlvError, NamesForCounters) {
  EXPECT_EQ(to_string(TlvError::BadStartMarker), "bad_start_marker");
  EXPECT_EQ(to_string(TlvError::BadEndMarker), "bad_end_marker");
  EXPECT_EQ(to_string(TlvError::BadLength), "bad_length");
  EXPECT_EQ(to_string(TlvError::Oversize), "oversize");
  EXPECT_EQ(to_string(TlvError::Truncated), "truncated");
}

}  // namespace
}  // namespace portico::stream
