#include "router/route_rule.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace portico::router {

std::array<uint8_t, 16> address_bytes(std::string_view ip) {
  std::array<uint8_t, 16> out{};
  char buf[64];
  if (ip.size() >= sizeof(buf)) return out;
  std::memcpy(buf, ip.data(), ip.size());
  buf[ip.size()] = 0;
  in_addr v4;
  if (inet_pton(AF_INET, buf, &v4) == 1) {
    out[10] = out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
  } else {
    inet_pton(AF_INET6, buf, out.data());
  }
  return out;
}

bool Cidr::parse(std::string_view text, Cidr& out) {
  size_t slash = text.find('/');
  std::string_view ip = text.substr(0, slash);
  char buf[64];
  if (ip.size() >= sizeof(buf)) return false;
  std::memcpy(buf, ip.data(), ip.size());
  buf[ip.size()] = 0;
  in_addr v4;
  bool is_v4 = inet_pton(AF_INET, buf, &v4) == 1;
  out.bytes = {};
  if (is_v4) {
    out.bytes[10] = out.bytes[11] = 0xff;
    std::memcpy(out.bytes.data() + 12, &v4, 4);
  } else if (inet_pton(AF_INET6, buf, out.bytes.data()) != 1) {
    return false;
  }
  int bits = is_v4 ? 32 : 128;
  if (slash != std::string_view::npos) {
    std::string_view b = text.substr(slash + 1);
    auto [p, ec] = std::from_chars(b.data(), b.data() + b.size(), bits);
    if (ec != std::errc() || p != b.data() + b.size() || bits < 0 || bits > (is_v4 ? 32 : 128))
      return false;
  }
  out.bits = is_v4 ? bits + 96 : bits;
  return true;
}

bool Cidr::contains(const std::array<uint8_t, 16>& addr) const {
  int full = bits / 8;
  if (std::memcmp(bytes.data(), addr.data(), full) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (bytes[full] & mask) == (addr[full] & mask);
}

uint32_t method_bit(std::string_view m) {
  static constexpr std::string_view kNames[] = {"GET",  "POST",    "PUT",   "DELETE", "PATCH",
                                                "HEAD", "OPTIONS", "TRACE", "PURGE",  "CONNECT"};
  for (uint32_t i = 0; i < std::size(kNames); ++i)
    if (kNames[i] == m) return 1u << i;
  return 1u << 31;
}

std::string_view normalize_host(std::string_view host, char* buf, size_t buf_size) {
  if (!host.empty() && host.front() == '[') {  // [v6]:port
    size_t close = host.find(']');
    host = close == std::string_view::npos ? host : host.substr(0, close + 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  bool upper = false;
  for (char c : host)
    if (c >= 'A' && c <= 'Z') upper = true;
  if (!upper) return host;
  size_t n = host.size() < buf_size ? host.size() : buf_size;
  for (size_t i = 0; i < n; ++i) {
    char c = host[i];
    buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  }
  return {buf, n};
}

}  // namespace portico::router
