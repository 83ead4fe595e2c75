// PROXY protocol v1 (text) and v2 (binary) headers as haproxy's proxy-protocol.txt defines them:
// a parser for the header an L4 load balancer puts before a connection's bytes, and builders for
// the header we send to backends. Pure byte functions: no sockets, no allocation when parsing.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace portico::stream {

// The longest v1 line, CRLF included (spec 2.1: "PROXY UNKNOWN" with two full IPv6 addresses).
inline constexpr size_t kProxyV1MaxLength = 107;
// v2 is 16 fixed bytes plus a 16-bit length of addresses and TLVs. Real senders (haproxy with
// its SSL TLVs, cloud load balancers with an endpoint id) stay well under 1 KiB, so a longer
// header is refused instead of being waited for and buffered.
inline constexpr size_t kProxyV2DefaultMaxLength = 16 + 2048;
inline constexpr size_t kProxyV2FixedLength = 16;
inline constexpr std::string_view kProxyV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

// Registered v2 TLV types this module knows by name (the others are skipped).
inline constexpr uint8_t kProxyTlvAlpn = 0x01;
inline constexpr uint8_t kProxyTlvAuthority = 0x02;
inline constexpr uint8_t kProxyTlvCrc32c = 0x03;  // verified when present
inline constexpr uint8_t kProxyTlvNoop = 0x04;

// One end of the proxied connection. IPv4 is kept as IPv4-mapped IPv6 (::ffff:a.b.c.d), the same
// 16-byte form router::Cidr and ClientConnection::remote_bytes use, so a v6 header carrying a
// mapped address reads as the IPv4 address it is.
struct ProxyAddress {
  std::array<uint8_t, 16> bytes{};
  uint16_t port = 0;

  static ProxyAddress v4(const std::array<uint8_t, 4>& ip, uint16_t port);
  static ProxyAddress v6(const std::array<uint8_t, 16>& ip, uint16_t port);
  bool is_v4() const;
  std::string ip_string() const;  // "192.0.2.1" or "2001:db8::1"
  bool operator==(const ProxyAddress&) const = default;
};

struct ProxyEndpoints {
  ProxyAddress source;       // the original client
  ProxyAddress destination;  // the address the client connected to (the load balancer's)
  bool operator==(const ProxyEndpoints&) const = default;
};

// LOCAL: the proxy opened the connection for itself (a health check); keep the socket's peer.
enum class ProxyCommand : uint8_t { Local, Proxy };

struct ProxyHeader {
  int version = 0;  // 1 or 2
  ProxyCommand command = ProxyCommand::Proxy;
  // Absent when the socket's own addresses stand: v2 LOCAL, v1 UNKNOWN, and v2 families other
  // than TCP over IPv4/IPv6 (UNSPEC, UDP, UNIX fall back to UNSPEC, as the spec allows).
  std::optional<ProxyEndpoints> endpoints;
  size_t length = 0;  // bytes the header occupies; what follows belongs to the proxied stream
  // v2 TLVs, as a range of the header bytes, already checked to be well formed (0 length: none).
  size_t tlv_offset = 0;
  size_t tlv_length = 0;
};

enum class ProxyParseStatus { NeedMore, Done, Error };

struct ProxyParseResult {
  ProxyParseStatus status = ProxyParseStatus::NeedMore;
  ProxyHeader header;      // when Done
  std::string_view error;  // when Error: a static reason, e.g. "v2: version must be 2"
};

struct ProxyParseLimits {
  size_t max_v2_length = kProxyV2DefaultMaxLength;  // whole header, fixed part included
};

// Parses the header at the start of `bytes`: everything received on the connection so far. The
// parser keeps no state, so call it again with the longer buffer after NeedMore (the caller
// keeps the bytes anyway, as those after the header must reach the application). NeedMore is
// returned only while `bytes` can still grow into a valid header, so garbage (an HTTP request,
// a TLS hello) fails at its first impossible byte; a peer closing before Done sent a truncated
// header and must be dropped.
ProxyParseResult parse_proxy_header(std::string_view bytes, const ProxyParseLimits& limits = {});

// The value of the first TLV of `type` in a parsed v2 header (`bytes` as given to the parser).
std::optional<std::string_view> find_proxy_tlv(std::string_view bytes, const ProxyHeader& header,
                                               uint8_t type);

// "PROXY TCP4 <src> <dst> <sport> <dport>\r\n"; TCP6 unless both addresses are IPv4.
std::string build_proxy_v1(const ProxyEndpoints& endpoints);
std::string build_proxy_v1_unknown();  // "PROXY UNKNOWN\r\n"
// A v2 PROXY header for TCP (AF_INET when both addresses are IPv4, else AF_INET6) followed by
// `tlvs` (see append_proxy_tlv); with_crc32c appends a CRC32C TLV over the whole header.
// Returns "" when the TLVs do not fit the 16-bit length.
std::string build_proxy_v2(const ProxyEndpoints& endpoints, std::string_view tlvs = {},
                           bool with_crc32c = false);
std::string build_proxy_v2_local();  // LOCAL, AF_UNSPEC, no addresses
// Appends one TLV (type, 16-bit big-endian length, value); values over 65535 bytes are cut.
void append_proxy_tlv(std::string& tlvs, uint8_t type, std::string_view value);

// CRC32C (Castagnoli), as the v2 checksum TLV uses it.
uint32_t crc32c(std::string_view bytes);

}  // namespace portico::stream
