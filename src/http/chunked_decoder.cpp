#include "http/chunked_decoder.hpp"

namespace portico::http {
namespace {
constexpr size_t kMaxExtension = 4096;
constexpr size_t kMaxTrailers = 16 * 1024;
constexpr int kMaxSizeDigits = 15;  // < 2^60: no overflow, and far beyond any real chunk

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

ChunkedDecoder::Step ChunkedDecoder::fail(const char* why, size_t consumed) {
  state_ = State::Error;
  error_ = why;
  return {Status::Error, consumed, {}};
}

ChunkedDecoder::Step ChunkedDecoder::feed(std::string_view in) {
  size_t i = 0;
  while (i < in.size()) {
    char c = in[i];
    switch (state_) {
      case State::SizeStart:
      case State::Size: {
        int v = hex_value(c);
        if (v >= 0) {
          if (++size_digits_ > kMaxSizeDigits) return fail("chunk size too large", i);
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
          state_ = State::Size;
          ++i;
          break;
        }
        if (state_ == State::SizeStart) return fail("invalid chunk size", i);
        if (c == ' ' || c == '\t') {
          state_ = State::SizeSpace;
        } else if (c == ';') {
          state_ = State::Ext;
        } else if (c == '\r') {
          state_ = State::SizeLF;
        } else if (c == '\n') {
          state_ = remaining_ ? State::Data : State::TrailerLineStart;
        } else {
          return fail("invalid chunk size", i);
        }
        ++i;
        break;
      }
      case State::SizeSpace:
        if (c == ';') {
          state_ = State::Ext;
        } else if (c == '\r') {
          state_ = State::SizeLF;
        } else if (c == '\n') {
          state_ = remaining_ ? State::Data : State::TrailerLineStart;
        } else if (c != ' ' && c != '\t') {
          return fail("invalid chunk size", i);
        }
        ++i;
        break;
      case State::Ext:
        if (c == '\r') {
          state_ = State::SizeLF;
        } else if (c == '\n') {
          state_ = remaining_ ? State::Data : State::TrailerLineStart;
        } else if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
          return fail("invalid chunk extension", i);
        } else if (++line_bytes_ > kMaxExtension) {
          return fail("chunk extension too long", i);
        }
        ++i;
        break;
      case State::SizeLF:
        if (c != '\n') return fail("invalid chunk size line", i);
        state_ = remaining_ ? State::Data : State::TrailerLineStart;
        ++i;
        break;
      case State::Data: {
        size_t n = in.size() - i;
        if (n > remaining_) n = static_cast<size_t>(remaining_);
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::DataCR;
        return {Status::Data, i + n, in.substr(i, n)};
      }
      case State::DataCR:
        if (c == '\r') {
          state_ = State::DataLF;
        } else if (c == '\n') {
          state_ = State::SizeStart;
          size_digits_ = 0;
          line_bytes_ = 0;
        } else {
          return fail("missing CRLF after chunk data", i);
        }
        ++i;
        break;
      case State::DataLF:
        if (c != '\n') return fail("missing CRLF after chunk data", i);
        state_ = State::SizeStart;
        size_digits_ = 0;
        line_bytes_ = 0;
        ++i;
        break;
      case State::TrailerLineStart:
        if (c == '\r') {
          state_ = State::EndLF;
        } else if (c == '\n') {
          state_ = State::Done;
          return {Status::Done, i + 1, {}};
        } else {
          state_ = State::TrailerLine;
          continue;  // count this byte as part of the trailer line
        }
        ++i;
        break;
      case State::TrailerLine:
        if (++trailer_bytes_ > kMaxTrailers) return fail("trailers too large", i);
        if (c == '\n') state_ = State::TrailerLineStart;
        ++i;
        break;
      case State::TrailerLF:
      case State::EndLF:
        if (c != '\n') return fail("invalid chunked body end", i);
        state_ = State::Done;
        return {Status::Done, i + 1, {}};
      case State::Done:
        return {Status::Done, i, {}};
      case State::Error:
        return {Status::Error, i, {}};
    }
  }
  if (state_ == State::Done) return {Status::Done, i, {}};
  return {Status::NeedMore, i, {}};
}

}  // namespace portico::http
