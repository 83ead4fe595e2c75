#include "stream/proxy_protocol.hpp"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

using namespace portico::stream;

namespace {

std::string raw(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out += static_cast<char>(b);
  return out;
}

const std::string kSignature =
    raw({0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A});

// A v2 header by hand: signature, version/command, family/transport, length, then `body`.
std::string v2(int version_command, int family, const std::string& body) {
  return kSignature +
         raw({version_command, family, static_cast<int>(body.size() >> 8),
              static_cast<int>(body.size() & 0xff)}) +
         body;
}

// 192.0.2.1:56324 -> 198.51.100.7:443 as an AF_INET address block.
const std::string kV4Block = raw({192, 0, 2, 1, 198, 51, 100, 7, 0xDC, 0x04, 0x01, 0xBB});
// 2001:db8::1:1000 -> 2001:db8::2:80
const std::string kV6Block =
    raw({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    1,    0x20, 0x01,
         0x0d, 0xb8, 0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x03, 0xE8, 0x00, 0x50});

ProxyParseResult parse(const std::string& bytes) { return parse_proxy_header(bytes); }

std::string error_of(const std::string& bytes) {
  ProxyParseResult r = parse(bytes);
  if (r.status != ProxyParseStatus::Error) return "<no error>";
  return std::string(r.error);
}

ProxyEndpoints v4_endpoints() {
  return {ProxyAddress::v4({192, 0, 2, 1}, 56324), ProxyAddress::v4({198, 51, 100, 7}, 443)};
}

}  // namespace

TEST(ProxyProtocolV1, Tcp4GivesSourceDestinationAndLength) {
  std::string line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  ProxyParseResult r = parse(line + "GET / HTTP/1.1\r\n");
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_EQ(r.header.version, 1);
  EXPECT_EQ(r.header.command, ProxyCommand::Proxy);
  EXPECT_EQ(r.header.length, line.size());
  ASSERT_TRUE(r.header.endpoints);
  EXPECT_EQ(r.header.endpoints->source.ip_string(), "192.168.0.1");
  EXPECT_EQ(r.header.endpoints->source.port, 56324);
  EXPECT_TRUE(r.header.endpoints->source.is_v4());
  EXPECT_EQ(r.header.endpoints->destination.ip_string(), "192.168.0.11");
  EXPECT_EQ(r.header.endpoints->destination.port, 443);
}

TEST(ProxyProtocolV1, Tcp6AcceptsFullCompressedAndMappedForms) {
  ProxyParseResult r = parse("PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 0 65535\r\n");
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_EQ(r.header.endpoints->source.ip_string(), "2001:db8::1");
  EXPECT_EQ(r.header.endpoints->source.port, 0);
  EXPECT_EQ(r.header.endpoints->destination.ip_string(), "2001:db8::2");
  EXPECT_EQ(r.header.endpoints->destination.port, 65535);
  // inet_ntop writes IPv4-mapped addresses with a dotted tail; they read as the IPv4 address.
  r = parse("PROXY TCP6 ::ffff:10.1.2.3 ::1 1234 80\r\n");
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_TRUE(r.header.endpoints->source.is_v4());
  EXPECT_EQ(r.header.endpoints->source.ip_string(), "10.1.2.3");
}

TEST(ProxyProtocolV1, UnknownKeepsTheSocketAddressesAndIgnoresTheRestOfTheLine) {
  ProxyParseResult r = parse("PROXY UNKNOWN\r\n");
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_EQ(r.header.length, 15u);
  EXPECT_FALSE(r.header.endpoints);
  // The spec's worst case is exactly 107 bytes and must be accepted.
  std::string f39 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  std::string longest = "PROXY UNKNOWN " + f39 + " " + f39 + " 65535 65535\r\n";
  ASSERT_EQ(longest.size(), kProxyV1MaxLength);
  r = parse(longest);
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_EQ(r.header.length, 107u);
  EXPECT_FALSE(r.header.endpoints);
}

TEST(ProxyProtocolV1, LineOver107BytesIsRefusedWithoutWaitingForMore) {
  std::string line = "PROXY UNKNOWN " + std::string(92, 'x');  // 106 bytes, no CRLF yet
  EXPECT_EQ(parse(line).status, ProxyParseStatus::NeedMore);
  EXPECT_EQ(parse(line + "\r").status, ProxyParseStatus::Error);  // CRLF would end at 108
  EXPECT_EQ(parse(line + "x").status, ProxyParseStatus::Error);   // 107 bytes, no CR
  EXPECT_EQ(parse(line + "x\r\n").status, ProxyParseStatus::Error);
  EXPECT_EQ(parse(line.substr(0, 105) + "\r\n").status, ProxyParseStatus::Done);  // 107
}

TEST(ProxyProtocolV1, MalformedLinesAreRefused) {
  const std::string ok_tail = " 1.2.3.4 5.6.7.8 1 2\r\n";
  for (std::string bad : {
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),          // LF alone
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),         // CR alone
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r"),        // LF CR
           std::string("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),       // double space
           std::string("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"),       // double space
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),       // trailing space
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),          // missing port
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),      // extra field
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n"),    // port out of range
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),    // port out of range
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),       // leading zero
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n"),   // six digits
           std::string("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"),       // sign
           std::string("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"),      // octet > 255
           std::string("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),       // octal doubt
           std::string("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"),          // three octets
           std::string("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"),      // five octets
           std::string("PROXY TCP4 ::1 ::1 1 2\r\n"),                // family mismatch
           std::string("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),        // family mismatch
           std::string("PROXY TCP6 2001:db8:::1 ::1 1 2\r\n"),       // bad IPv6
           std::string("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"),  // 144 bits
           std::string("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),       // zone id
           std::string("PROXY TCP5") + ok_tail,                      // protocol
           std::string("PROXY tcp4") + ok_tail,                      // case matters
           std::string("proxy TCP4") + ok_tail,                      // case matters
           std::string("PROXY UNKNOWNX\r\n"),                        // not UNKNOWN
           std::string("PROXY\r\n"),                                 // nothing
           std::string("PROXY \r\n"),                                // nothing
       }) {
    ProxyParseResult r = parse(bad);
    EXPECT_EQ(r.status, ProxyParseStatus::Error) << bad;
    EXPECT_FALSE(r.error.empty()) << bad;
  }
}

TEST(ProxyProtocolV1, ErrorsNameTheProblem) {
  EXPECT_EQ(error_of("PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n"),
            "v1: port must be 0..65535 without leading zeros");
  EXPECT_EQ(error_of("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), "v1: LF without CR");
  EXPECT_EQ(error_of("PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n"), "v1: invalid IPv4 address");
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\n"), "not a PROXY protocol header");
}

TEST(ProxyProtocol, OtherProtocolsFailAtTheFirstImpossibleByte) {
  EXPECT_EQ(parse("G").status, ProxyParseStatus::Error);                // HTTP GET
  EXPECT_EQ(parse("PO").status, ProxyParseStatus::Error);               // HTTP POST
  EXPECT_EQ(parse("PU").status, ProxyParseStatus::Error);               // HTTP PUT
  EXPECT_EQ(parse(raw({0x16, 0x03})).status, ProxyParseStatus::Error);  // TLS ClientHello
  EXPECT_EQ(parse("PROXY FOO").status, ProxyParseStatus::Error);        // no CRLF needed
  EXPECT_EQ(parse("PROXY TCP4 1.2.3.4 x").status, ProxyParseStatus::Error);
  EXPECT_EQ(parse("\r\n\r\n\r").status, ProxyParseStatus::Error);  // v2 signature broken
  EXPECT_EQ(parse("").status, ProxyParseStatus::NeedMore);
  EXPECT_EQ(parse("PROX").status, ProxyParseStatus::NeedMore);
}

TEST(ProxyProtocolV2, TcpOverIpv4) {
  std::string header = v2(0x21, 0x11, kV4Block);
  ProxyParseResult r = parse(header + "GET /");
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_EQ(r.header.version, 2);
  EXPECT_EQ(r.header.command, ProxyCommand::Proxy);
  EXPECT_EQ(r.header.length, 28u);
  ASSERT_TRUE(r.header.endpoints);
  EXPECT_EQ(*r.header.endpoints, v4_endpoints());
  EXPECT_EQ(r.header.endpoints->source.ip_string(), "192.0.2.1");
  EXPECT_EQ(r.header.tlv_length, 0u);
}

TEST(ProxyProtocolV2, TcpOverIpv6) {
  ProxyParseResult r = parse(v2(0x21, 0x21, kV6Block));
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_EQ(r.header.length, 52u);
  EXPECT_EQ(r.header.endpoints->source.ip_string(), "2001:db8::1");
  EXPECT_EQ(r.header.endpoints->source.port, 1000);
  EXPECT_EQ(r.header.endpoints->destination.ip_string(), "2001:db8::2");
  EXPECT_EQ(r.header.endpoints->destination.port, 80);
}

TEST(ProxyProtocolV2, LocalKeepsTheSocketPeerWhateverTheBlockHolds) {
  ProxyParseResult r = parse(v2(0x20, 0x00, ""));
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_EQ(r.header.command, ProxyCommand::Local);
  EXPECT_FALSE(r.header.endpoints);
  EXPECT_EQ(r.header.length, 16u);
  // "must not assume zero is presented for LOCAL": the block is skipped, family ignored.
  r = parse(v2(0x20, 0x11, kV4Block) + "x");
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_FALSE(r.header.endpoints);
  EXPECT_EQ(r.header.length, 28u);
}

TEST(ProxyProtocolV2, UnspecUdpAndUnixFallBackToTheSocketAddresses) {
  for (auto [family, block] :
       {std::pair{0x00, std::string()}, std::pair{0x12, kV4Block}, std::pair{0x22, kV6Block},
        std::pair{0x31, std::string(216, 'u')}, std::pair{0x32, std::string(216, 'u')}}) {
    ProxyParseResult r = parse(v2(0x21, family, block));
    ASSERT_EQ(r.status, ProxyParseStatus::Done) << family << ": " << r.error;
    EXPECT_EQ(r.header.command, ProxyCommand::Proxy);
    EXPECT_FALSE(r.header.endpoints) << family;
    EXPECT_EQ(r.header.length, 16 + block.size());
  }
}

TEST(ProxyProtocolV2, TlvsAreSkippedAndCanBeLookedUp) {
  std::string tlvs;
  append_proxy_tlv(tlvs, kProxyTlvAuthority, "example.com");
  append_proxy_tlv(tlvs, 0xEA, "vpce-0123");
  append_proxy_tlv(tlvs, kProxyTlvNoop, "");
  std::string header = v2(0x21, 0x11, kV4Block + tlvs);
  ProxyParseResult r = parse(header + "after");
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_EQ(r.header.length, header.size());
  EXPECT_EQ(*r.header.endpoints, v4_endpoints());
  EXPECT_EQ(r.header.tlv_offset, 28u);
  EXPECT_EQ(r.header.tlv_length, tlvs.size());
  EXPECT_EQ(find_proxy_tlv(header, r.header, kProxyTlvAuthority), "example.com");
  EXPECT_EQ(find_proxy_tlv(header, r.header, 0xEA), "vpce-0123");
  EXPECT_EQ(find_proxy_tlv(header, r.header, kProxyTlvNoop), "");
  EXPECT_FALSE(find_proxy_tlv(header, r.header, kProxyTlvAlpn));
}

TEST(ProxyProtocolV2, Crc32cIsVerified) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);  // the standard check value
  std::string header = build_proxy_v2(v4_endpoints(), "", true);
  ProxyParseResult r = parse(header);
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_EQ(*r.header.endpoints, v4_endpoints());
  std::string forged = header;
  forged[16 + 3] ^= 0x01;  // 192.0.2.1 -> 192.0.2.0
  EXPECT_EQ(error_of(forged), "v2: CRC32C mismatch");
  std::string wrong_size = v2(0x21, 0x11, kV4Block + raw({0x03, 0x00, 0x03, 1, 2, 3}));
  EXPECT_EQ(error_of(wrong_size), "v2: CRC32C TLV must hold 4 bytes");
}

TEST(ProxyProtocolV2, ForgedHeadersAreRefused) {
  for (size_t i = 0; i < kSignature.size(); ++i) {
    std::string h = v2(0x21, 0x11, kV4Block);
    h[i] ^= 0x20;
    EXPECT_EQ(parse(h).status, ProxyParseStatus::Error) << "signature byte " << i;
  }
  EXPECT_EQ(error_of(v2(0x11, 0x11, kV4Block)), "v2: version must be 2");
  EXPECT_EQ(error_of(v2(0x31, 0x11, kV4Block)), "v2: version must be 2");
  EXPECT_EQ(error_of(v2(0x22, 0x11, kV4Block)), "v2: unknown command");
  EXPECT_EQ(error_of(v2(0x2F, 0x11, kV4Block)), "v2: unknown command");
  EXPECT_EQ(error_of(v2(0x21, 0x41, kV4Block)), "v2: unknown address family");
  EXPECT_EQ(error_of(v2(0x21, 0x13, kV4Block)), "v2: unknown transport protocol");
  EXPECT_EQ(error_of(v2(0x21, 0x11, kV4Block.substr(0, 8))),
            "v2: address block shorter than its family needs");
  EXPECT_EQ(error_of(v2(0x21, 0x21, kV4Block)), "v2: address block shorter than its family needs");
  EXPECT_EQ(error_of(v2(0x21, 0x11, kV4Block + raw({0xE0, 0x00}))), "v2: truncated TLV");
  EXPECT_EQ(error_of(v2(0x21, 0x11, kV4Block + raw({0xE0, 0x00, 0x05, 1, 2}))),
            "v2: truncated TLV");
}

TEST(ProxyProtocolV2, LengthOverTheLimitFailsAsSoonAsTheLengthArrives) {
  // 0xFFFF announced: refused after 16 bytes instead of waiting for 64 KiB.
  std::string fixed = kSignature + raw({0x21, 0x11, 0xFF, 0xFF});
  EXPECT_EQ(error_of(fixed), "v2: header longer than the limit");
  std::string big = v2(0x21, 0x11, kV4Block + std::string(200, '\0'));  // NOOP-free zeros
  ProxyParseLimits small{100};
  EXPECT_EQ(parse_proxy_header(big, small).status, ProxyParseStatus::Error);
  ProxyParseLimits exact{big.size()};
  // Zeros are TLVs of type 0 with length 0, three bytes each: 200 is not a multiple of 3.
  EXPECT_EQ(parse_proxy_header(big, exact).error, "v2: truncated TLV");
}

// Every valid header, delivered one byte at a time, is "need more" until its last byte.
TEST(ProxyProtocol, HeadersArrivingByteByByteCompleteOnlyAtTheirLastByte) {
  std::string tlvs;
  append_proxy_tlv(tlvs, kProxyTlvAuthority, "example.com");
  std::vector<std::string> headers = {
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
      "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 2\r\n",
      "PROXY UNKNOWN\r\n",
      "PROXY UNKNOWN whatever the sender puts here\r\n",
      v2(0x21, 0x11, kV4Block),
      v2(0x21, 0x21, kV6Block + tlvs),
      v2(0x20, 0x00, ""),
      build_proxy_v2(v4_endpoints(), tlvs, true),
  };
  for (const std::string& h : headers) {
    for (size_t n = 0; n < h.size(); ++n) {
      ProxyParseResult r = parse(h.substr(0, n));
      ASSERT_EQ(r.status, ProxyParseStatus::NeedMore) << "after " << n << " bytes of " << h;
    }
    ProxyParseResult r = parse(h + "GET / HTTP/1.1\r\n\r\n");
    ASSERT_EQ(r.status, ProxyParseStatus::Done) << h << ": " << r.error;
    EXPECT_EQ(r.header.length, h.size());
  }
}

TEST(ProxyProtocolBuild, V1TextIsExact) {
  EXPECT_EQ(build_proxy_v1(v4_endpoints()), "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
  std::array<uint8_t, 16> six{0x20, 0x01, 0x0d, 0xb8};
  six[15] = 1;
  ProxyEndpoints mixed{ProxyAddress::v6(six, 1), ProxyAddress::v4({10, 0, 0, 1}, 2)};
  EXPECT_EQ(build_proxy_v1(mixed), "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 2\r\n");
  EXPECT_EQ(build_proxy_v1_unknown(), "PROXY UNKNOWN\r\n");
  ProxyParseResult r = parse(build_proxy_v1(mixed));
  ASSERT_EQ(r.status, ProxyParseStatus::Done) << r.error;
  EXPECT_EQ(*r.header.endpoints, mixed);
}

TEST(ProxyProtocolBuild, V2BytesAreExact) {
  EXPECT_EQ(build_proxy_v2(v4_endpoints()), v2(0x21, 0x11, kV4Block));
  EXPECT_EQ(build_proxy_v2_local(), v2(0x20, 0x00, ""));
  std::array<uint8_t, 16> src{0x20, 0x01, 0x0d, 0xb8}, dst{0x20, 0x01, 0x0d, 0xb8};
  src[15] = 1;
  dst[15] = 2;
  ProxyEndpoints six{ProxyAddress::v6(src, 1000), ProxyAddress::v6(dst, 80)};
  EXPECT_EQ(build_proxy_v2(six), v2(0x21, 0x21, kV6Block));
  ProxyParseResult r = parse(build_proxy_v2(six));
  ASSERT_EQ(r.status, ProxyParseStatus::Done);
  EXPECT_EQ(*r.header.endpoints, six);
  // The 16-bit length bounds the TLVs.
  EXPECT_EQ(build_proxy_v2(six, std::string(0xffff, 'x')), "");
}
