// Lower-case hexadecimal text of bytes: digests, keys, session and request ids.
#pragma once

#include <cstddef>
#include <string>

namespace portico::hex {

inline constexpr char kDigits[] = "0123456789abcdef";
inline constexpr char kUpperDigits[] = "0123456789ABCDEF";  // percent-encoding (RFC 3986 2.1)

inline void append(std::string& out, const unsigned char* data, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
}

inline std::string encode(const unsigned char* data, size_t size) {
  std::string out;
  out.reserve(2 * size);
  append(out, data, size);
  return out;
}

}  // namespace portico::hex
