#include "core/base64.hpp"

#include <cstdint>

namespace portico {

std::string base64_encode(std::string_view in, Base64Alphabet alphabet) {
  const char* chars = alphabet == Base64Alphabet::Url
                          ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                          : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += chars[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += chars[(acc << (6 - bits)) & 63];
  if (alphabet != Base64Alphabet::Url)
    while (out.size() % 4 != 0) out += '=';
  return out;
}

std::optional<std::string> base64_decode(std::string_view in, Base64Alphabet alphabet) {
  const bool standard = alphabet != Base64Alphabet::Url;
  const bool url = alphabet != Base64Alphabet::Standard;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if ((standard && c == '+') || (url && c == '-'))
      v = 62;
    else if ((standard && c == '/') || (url && c == '_'))
      v = 63;
    else if (c == '=') {
      ++pad;
      continue;
    } else
      return std::nullopt;
    if (pad) return std::nullopt;  // data after padding
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (pad > 2 || bits >= 6 || (pad != 0 && in.size() % 4 != 0)) return std::nullopt;
  return out;
}

}  // namespace portico
