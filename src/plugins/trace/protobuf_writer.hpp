// Protocol Buffers wire format, written by hand for the few messages Portico sends itself
// (OTLP spans): a fixed schema needs no descriptor, no generated code and no copy through a
// message object. Fields are appended in order; a nested message is written into its own
// writer and appended as bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace portico::plugins::trace {

class ProtobufWriter {
 public:
  void varint_field(uint32_t field, uint64_t value) {
    key(field, 0);
    varint(value);
  }
  void fixed64_field(uint32_t field, uint64_t value) {
    key(field, 1);
    for (int i = 0; i < 8; ++i) out_ += static_cast<char>((value >> (8 * i)) & 0xff);
  }
  void double_field(uint32_t field, double value) {
    uint64_t bits;
    static_assert(sizeof bits == sizeof value);
    __builtin_memcpy(&bits, &value, sizeof bits);
    fixed64_field(field, bits);
  }
  // Strings, bytes and nested messages alike.
  void bytes_field(uint32_t field, std::string_view value) {
    key(field, 2);
    varint(value.size());
    out_ += value;
  }

  const std::string& bytes() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void key(uint32_t field, uint32_t wire_type) { varint((uint64_t{field} << 3) | wire_type); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_ += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    out_ += static_cast<char>(v);
  }

  std::string out_;
};

}  // namespace portico::plugins::trace
