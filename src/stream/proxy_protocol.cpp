#include "stream/proxy_protocol.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace portico::stream {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr size_t kNoLimit = static_cast<size_t>(-1);

ProxyParseResult need_more() { return {}; }

ProxyParseResult fail(std::string_view reason) {
  ProxyParseResult r;
  r.status = ProxyParseStatus::Error;
  r.error = reason;
  return r;
}

ProxyParseResult done(ProxyHeader header) {
  ProxyParseResult r;
  r.status = ProxyParseStatus::Done;
  r.header = std::move(header);
  return r;
}

uint8_t byte_at(std::string_view s, size_t i) { return static_cast<uint8_t>(s[i]); }
uint16_t u16_at(std::string_view s, size_t i) {
  return static_cast<uint16_t>(byte_at(s, i) << 8 | byte_at(s, i + 1));
}

// Whether what has arrived agrees with `want` as far as both go.
bool agrees_with(std::string_view have, std::string_view want) {
  size_t n = std::min(have.size(), want.size());
  return have.substr(0, n) == want.substr(0, n);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Four decimal numbers 0..255 joined by single dots; no leading zeros (spec: no octal doubt).
bool parse_v4(std::string_view s, std::array<uint8_t, 4>& out) {
  size_t pos = 0;
  for (size_t i = 0; i < 4; ++i) {
    if (i > 0) {
      if (pos >= s.size() || s[pos] != '.') return false;
      ++pos;
    }
    size_t start = pos;
    unsigned value = 0;
    while (pos < s.size() && pos - start < 3 && is_digit(s[pos]))
      value = value * 10 + static_cast<unsigned>(s[pos++] - '0');
    size_t digits = pos - start;
    if (digits == 0 || value > 255 || (digits > 1 && s[start] == '0')) return false;
    out[i] = static_cast<uint8_t>(value);
  }
  return pos == s.size();
}

// Hex groups with at most one "::"; a dotted IPv4 tail is accepted too, because that is how
// inet_ntop (and so many senders) writes IPv4-mapped addresses.
bool parse_v6(std::string_view s, std::array<uint8_t, 16>& out) {
  char text[INET6_ADDRSTRLEN];
  if (s.empty() || s.size() >= sizeof(text)) return false;
  for (char c : s)
    if (!is_hex(c) && c != ':' && c != '.') return false;  // no zone ids, no spaces
  std::memcpy(text, s.data(), s.size());
  text[s.size()] = 0;
  return inet_pton(AF_INET6, text, out.data()) == 1;
}

// Decimal 0..65535, no leading zeros.
bool parse_port(std::string_view s, uint16_t& out) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  uint32_t value = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  out = static_cast<uint16_t>(value);
  return true;
}

// An incomplete v1 line: fails as soon as it cannot become a valid one, so a client that speaks
// something else is dropped at once instead of after the timeout.
ProxyParseResult check_v1_prefix(std::string_view partial) {
  if (partial.size() <= kV1Prefix.size()) return need_more();
  std::string_view rest = partial.substr(kV1Prefix.size());
  size_t space = rest.find(' ');
  std::string_view token = rest.substr(0, space);
  bool tcp = token == "TCP4" || token == "TCP6";
  if (space == std::string_view::npos) {
    if (agrees_with(token, "TCP4") || agrees_with(token, "TCP6")) {
      if (token.size() <= 4) return need_more();
    } else if (agrees_with(token, "UNKNOWN") && token.size() <= 7) {
      return need_more();
    }
    return fail("v1: protocol must be TCP4, TCP6 or UNKNOWN");
  }
  if (token == "UNKNOWN") return need_more();  // the rest of an UNKNOWN line is ignored
  if (!tcp) return fail("v1: protocol must be TCP4, TCP6 or UNKNOWN");
  for (char c : rest.substr(space))
    if (!is_hex(c) && c != ':' && c != '.' && c != ' ') return fail("v1: invalid character");
  return need_more();
}

// A complete line without its CRLF; `length` counts the CRLF.
ProxyParseResult parse_v1_line(std::string_view line, size_t length) {
  ProxyHeader h;
  h.version = 1;
  h.length = length;
  std::string_view rest = line.substr(kV1Prefix.size());
  // UNKNOWN: "the receiver must ignore anything presented before the CRLF".
  if (rest == "UNKNOWN" || rest.substr(0, 8) == "UNKNOWN ") return done(h);

  std::string_view fields[5];  // protocol, source, destination, source port, destination port
  size_t pos = 0;
  for (size_t i = 0; i < 5; ++i) {
    size_t space = rest.find(' ', pos);
    if (i < 4 && space == std::string_view::npos) return fail("v1: missing field");
    if (i == 4 && space != std::string_view::npos) return fail("v1: extra field");
    fields[i] = rest.substr(pos, space == std::string_view::npos ? rest.npos : space - pos);
    if (fields[i].empty()) return fail("v1: fields must be separated by single spaces");
    pos = space + 1;
  }
  ProxyEndpoints e;
  if (fields[0] == "TCP4") {
    std::array<uint8_t, 4> src, dst;
    if (!parse_v4(fields[1], src) || !parse_v4(fields[2], dst))
      return fail("v1: invalid IPv4 address");
    e.source = ProxyAddress::v4(src, 0);
    e.destination = ProxyAddress::v4(dst, 0);
  } else if (fields[0] == "TCP6") {
    std::array<uint8_t, 16> src, dst;
    if (!parse_v6(fields[1], src) || !parse_v6(fields[2], dst))
      return fail("v1: invalid IPv6 address");
    e.source = ProxyAddress::v6(src, 0);
    e.destination = ProxyAddress::v6(dst, 0);
  } else {
    return fail("v1: protocol must be TCP4, TCP6 or UNKNOWN");
  }
  if (!parse_port(fields[3], e.source.port) || !parse_port(fields[4], e.destination.port))
    return fail("v1: port must be 0..65535 without leading zeros");
  h.endpoints = e;
  return done(h);
}

ProxyParseResult parse_v1(std::string_view bytes) {
  if (!agrees_with(bytes, kV1Prefix)) return fail("v1: expected \"PROXY \"");
  size_t i = 0;
  for (; i < bytes.size() && i < kProxyV1MaxLength; ++i) {
    if (bytes[i] == '\n') return fail("v1: LF without CR");
    if (bytes[i] != '\r') continue;
    if (i + 2 > kProxyV1MaxLength) return fail("v1: no CRLF within 107 bytes");
    if (i + 1 == bytes.size()) return check_v1_prefix(bytes.substr(0, i));
    if (bytes[i + 1] != '\n') return fail("v1: CR without LF");
    if (i < kV1Prefix.size()) return fail("v1: expected \"PROXY \"");
    return parse_v1_line(bytes.substr(0, i), i + 2);
  }
  if (i >= kProxyV1MaxLength) return fail("v1: no CRLF within 107 bytes");
  return check_v1_prefix(bytes);
}

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

uint32_t crc32c_update(uint32_t crc, std::string_view bytes) {
  for (char c : bytes) crc = kCrc32cTable[(crc ^ static_cast<uint8_t>(c)) & 0xff] ^ (crc >> 8);
  return crc;
}

// The header's CRC32C computed with its own checksum field taken as zeros.
uint32_t header_crc32c(std::string_view header, size_t checksum_at) {
  uint32_t crc = crc32c_update(~0u, header.substr(0, checksum_at));
  crc = crc32c_update(crc, std::string_view("\0\0\0\0", 4));
  return ~crc32c_update(crc, header.substr(checksum_at + 4));
}

// TLVs must tile their area exactly; a CRC32C among them must match (spec 2.2.3).
ProxyParseResult check_tlvs(std::string_view header, const ProxyHeader& h) {
  std::string_view tlvs = header.substr(h.tlv_offset, h.tlv_length);
  size_t checksum_at = kNoLimit;
  for (size_t p = 0; p < tlvs.size();) {
    if (tlvs.size() - p < 3) return fail("v2: truncated TLV");
    size_t value_length = u16_at(tlvs, p + 1);
    if (tlvs.size() - p - 3 < value_length) return fail("v2: truncated TLV");
    if (byte_at(tlvs, p) == kProxyTlvCrc32c) {
      if (value_length != 4) return fail("v2: CRC32C TLV must hold 4 bytes");
      if (checksum_at != kNoLimit) return fail("v2: more than one CRC32C TLV");
      checksum_at = h.tlv_offset + p + 3;
    }
    p += 3 + value_length;
  }
  if (checksum_at != kNoLimit) {
    uint32_t sent =
        static_cast<uint32_t>(u16_at(header, checksum_at)) << 16 | u16_at(header, checksum_at + 2);
    if (header_crc32c(header.substr(0, h.length), checksum_at) != sent)
      return fail("v2: CRC32C mismatch");
  }
  return done(h);
}

ProxyParseResult parse_v2(std::string_view bytes, const ProxyParseLimits& limits) {
  if (!agrees_with(bytes, kProxyV2Signature)) return fail("v2: bad signature");
  if (bytes.size() <= 12) return need_more();
  uint8_t version_command = byte_at(bytes, 12);
  if (version_command >> 4 != 2) return fail("v2: version must be 2");
  uint8_t command = version_command & 0x0f;
  if (command > 1) return fail("v2: unknown command");
  bool local = command == 0;
  if (bytes.size() <= 13) return need_more();
  unsigned family = byte_at(bytes, 13) >> 4, transport = byte_at(bytes, 13) & 0x0f;
  // LOCAL ignores the family ("discard the protocol block including the family").
  if (!local && family > 3) return fail("v2: unknown address family");
  if (!local && transport > 2) return fail("v2: unknown transport protocol");
  if (bytes.size() < kProxyV2FixedLength) return need_more();
  size_t total = kProxyV2FixedLength + u16_at(bytes, 14);
  if (total > limits.max_v2_length) return fail("v2: header longer than the limit");
  if (bytes.size() < total) return need_more();

  ProxyHeader h;
  h.version = 2;
  h.length = total;
  h.command = local ? ProxyCommand::Local : ProxyCommand::Proxy;
  // UNSPEC on either side: the address block has no known layout; use the socket's addresses.
  if (local || family == 0 || transport == 0) return done(h);
  size_t address_length = family == 1 ? 12 : family == 2 ? 36 : 216;
  if (total - kProxyV2FixedLength < address_length)
    return fail("v2: address block shorter than its family needs");
  const size_t a = kProxyV2FixedLength;
  if (transport == 1 && family == 1) {  // TCP over IPv4
    std::array<uint8_t, 4> src, dst;
    std::memcpy(src.data(), bytes.data() + a, 4);
    std::memcpy(dst.data(), bytes.data() + a + 4, 4);
    h.endpoints = ProxyEndpoints{ProxyAddress::v4(src, u16_at(bytes, a + 8)),
                                 ProxyAddress::v4(dst, u16_at(bytes, a + 10))};
  } else if (transport == 1 && family == 2) {  // TCP over IPv6
    std::array<uint8_t, 16> src, dst;
    std::memcpy(src.data(), bytes.data() + a, 16);
    std::memcpy(dst.data(), bytes.data() + a + 16, 16);
    h.endpoints = ProxyEndpoints{ProxyAddress::v6(src, u16_at(bytes, a + 32)),
                                 ProxyAddress::v6(dst, u16_at(bytes, a + 34))};
  }  // UDP and UNIX are valid but not ours to use: they fall back to UNSPEC, as the spec allows
  h.tlv_offset = a + address_length;
  h.tlv_length = total - h.tlv_offset;
  return check_tlvs(bytes, h);
}

void put_u16(std::string& out, size_t value) {
  out += static_cast<char>((value >> 8) & 0xff);
  out += static_cast<char>(value & 0xff);
}

std::string v6_text(const ProxyAddress& a) {
  char text[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, a.bytes.data(), text, sizeof(text));
  return text;
}

}  // namespace

ProxyAddress ProxyAddress::v4(const std::array<uint8_t, 4>& ip, uint16_t port) {
  ProxyAddress a;
  a.bytes[10] = a.bytes[11] = 0xff;
  std::memcpy(a.bytes.data() + 12, ip.data(), 4);
  a.port = port;
  return a;
}

ProxyAddress ProxyAddress::v6(const std::array<uint8_t, 16>& ip, uint16_t port) {
  ProxyAddress a;
  a.bytes = ip;
  a.port = port;
  return a;
}

bool ProxyAddress::is_v4() const {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(bytes.data(), kMapped, sizeof(kMapped)) == 0;
}

std::string ProxyAddress::ip_string() const {
  if (!is_v4()) return v6_text(*this);
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, bytes.data() + 12, text, sizeof(text));
  return text;
}

ProxyParseResult parse_proxy_header(std::string_view bytes, const ProxyParseLimits& limits) {
  if (bytes.empty()) return need_more();
  if (bytes[0] == 'P') return parse_v1(bytes);
  if (bytes[0] == '\r') return parse_v2(bytes, limits);
  return fail("not a PROXY protocol header");
}

std::optional<std::string_view> find_proxy_tlv(std::string_view bytes, const ProxyHeader& header,
                                               uint8_t type) {
  if (header.tlv_offset + header.tlv_length > bytes.size()) return std::nullopt;
  std::string_view tlvs = bytes.substr(header.tlv_offset, header.tlv_length);
  for (size_t p = 0; p + 3 <= tlvs.size();) {
    size_t value_length = u16_at(tlvs, p + 1);
    if (tlvs.size() - p - 3 < value_length) break;
    if (byte_at(tlvs, p) == type) return tlvs.substr(p + 3, value_length);
    p += 3 + value_length;
  }
  return std::nullopt;
}

std::string build_proxy_v1(const ProxyEndpoints& e) {
  bool v4 = e.source.is_v4() && e.destination.is_v4();
  std::string out = v4 ? "PROXY TCP4 " : "PROXY TCP6 ";
  out += v4 ? e.source.ip_string() : v6_text(e.source);
  out += ' ';
  out += v4 ? e.destination.ip_string() : v6_text(e.destination);
  out += ' ';
  out += std::to_string(e.source.port);
  out += ' ';
  out += std::to_string(e.destination.port);
  out += "\r\n";
  return out;
}

std::string build_proxy_v1_unknown() { return "PROXY UNKNOWN\r\n"; }

std::string build_proxy_v2(const ProxyEndpoints& e, std::string_view tlvs, bool with_crc32c) {
  bool v4 = e.source.is_v4() && e.destination.is_v4();
  size_t address_length = v4 ? 12 : 36;
  size_t length = address_length + tlvs.size() + (with_crc32c ? 7 : 0);
  if (length > 0xffff) return {};
  std::string out(kProxyV2Signature);
  out += '\x21';                // version 2, PROXY
  out += v4 ? '\x11' : '\x21';  // TCP over IPv4 / IPv6
  put_u16(out, length);
  size_t from = v4 ? 12 : 0;  // IPv4: the last 4 bytes of the mapped form
  out.append(reinterpret_cast<const char*>(e.source.bytes.data()) + from, 16 - from);
  out.append(reinterpret_cast<const char*>(e.destination.bytes.data()) + from, 16 - from);
  put_u16(out, e.source.port);
  put_u16(out, e.destination.port);
  out.append(tlvs);
  if (with_crc32c) {
    append_proxy_tlv(out, kProxyTlvCrc32c, std::string_view("\0\0\0\0", 4));
    uint32_t crc = crc32c(out);  // over the whole header with a zero checksum field
    for (int i = 0; i < 4; ++i) out[out.size() - 4 + i] = static_cast<char>(crc >> (24 - 8 * i));
  }
  return out;
}

std::string build_proxy_v2_local() {
  std::string out(kProxyV2Signature);
  out += '\x20';  // version 2, LOCAL
  out += '\x00';  // AF_UNSPEC, UNSPEC
  put_u16(out, 0);
  return out;
}

void append_proxy_tlv(std::string& tlvs, uint8_t type, std::string_view value) {
  value = value.substr(0, 0xffff);
  tlvs += static_cast<char>(type);
  put_u16(tlvs, value.size());
  tlvs.append(value);
}

uint32_t crc32c(std::string_view bytes) { return ~crc32c_update(~0u, bytes); }

}  // namespace portico::stream
