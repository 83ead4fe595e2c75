// Incremental decoder of the chunked transfer coding. It hands out chunk data as views of the
// input and swallows the framing, chunk extensions and trailers (trailers are dropped: never
// forwarded, so a trailer cannot smuggle a header past the gateway).
#pragma once

#include <cstdint>
#include <string_view>

namespace portico::http {

class ChunkedDecoder {
 public:
  enum class Status { NeedMore, Data, Done, Error };
  struct Step {
    Status status;
    size_t consumed;        // input bytes used by this step (framing and data)
    std::string_view data;  // set when status == Data
  };

  // Decodes from the front of `in`. Returns at most one run of chunk data per call; call again
  // with the rest of the input until NeedMore (feed more input), Done or Error.
  Step feed(std::string_view in);

  bool done() const { return state_ == State::Done; }
  const char* error() const { return error_; }
  void reset() { *this = ChunkedDecoder(); }

 private:
  enum class State {
    SizeStart,
    Size,
    SizeSpace,
    Ext,
    SizeLF,
    Data,
    DataCR,
    DataLF,
    TrailerLineStart,
    TrailerLine,
    TrailerLF,
    EndLF,
    Done,
    Error
  };
  Step fail(const char* why, size_t consumed);

  State state_ = State::SizeStart;
  uint64_t remaining_ = 0;
  int size_digits_ = 0;
  size_t line_bytes_ = 0;  // extension / trailer bytes, bounded
  size_t trailer_bytes_ = 0;
  const char* error_ = "";
};

}  // namespace portico::http
