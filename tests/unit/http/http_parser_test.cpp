#include "http/http_parser.hpp"

#include <gtest/gtest.h>

using namespace portico::http;

namespace {
ParseResult parse(std::string_view s, RequestHead& h, RequestLimits l = {}) {
  return parse_request(s, l, h);
}
}  // namespace

TEST(HttpParser, ParsesSimpleGet) {
  RequestHead h;
  auto r = parse("GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-A:  v \r\n\r\n", h);
  ASSERT_EQ(r.status, ParseStatus::Done);
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/a/b?x=1");
  EXPECT_EQ(h.path, "/a/b");
  EXPECT_EQ(h.query, "x=1");
  EXPECT_EQ(h.host, "example.com");
  ASSERT_EQ(h.headers.size(), 2u);
  EXPECT_EQ(h.headers[1].value, "v");
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.has_body());
}

TEST(HttpParser, IncompleteUntilEmptyLine) {
  RequestHead h;
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n", h).status, ParseStatus::Incomplete);
  EXPECT_EQ(parse("GET / HT", h).status, ParseStatus::Incomplete);
}

TEST(HttpParser, RejectsContentLengthWithTransferEncoding) {
  RequestHead h;
  auto r = parse(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", h);
  EXPECT_EQ(r.status, ParseStatus::Error);
  EXPECT_EQ(r.error_status, 400);
}

TEST(HttpParser, RejectsDifferingDuplicateContentLength) {
  RequestHead h;
  auto r = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", h);
  EXPECT_EQ(r.error_status, 400);
  auto same =
      parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", h);
  EXPECT_EQ(same.status, ParseStatus::Done);
  EXPECT_EQ(h.content_length, 3);
}

// One Connection value is read (keep-alive, upgrade, hop-by-hop names): several lines would
// hide a `close` or a private header named on another line.
TEST(HttpParser, SeveralConnectionLines) {
  RequestHead h;
  auto r = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nConnection: x-foo\r\n\r\n", h);
  EXPECT_EQ(r.error_status, 400);
  ResponseHead resp;
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\n"
                           "Content-Length: 0\r\n\r\n",
                           4096, resp)
                .status,
            ParseStatus::Done);
  EXPECT_FALSE(resp.keep_alive);
}

TEST(HttpParser, RejectsNonNumericContentLength) {
  RequestHead h;
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", h).error_status, 400);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 4\r\n\r\n", h).error_status,
            400);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", h)
                .error_status,
            400);
}

TEST(HttpParser, RejectsObsFold) {
  RequestHead h;
  auto r = parse("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", h);
  EXPECT_EQ(r.error_status, 400);
}

TEST(HttpParser, RejectsInvalidHeaderNames) {
  RequestHead h;
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n", h).error_status, 400);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", h).error_status, 400);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", h).error_status, 400);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", h).error_status, 400);
}

TEST(HttpParser, RejectsControlCharactersInValues) {
  RequestHead h;
  std::string s = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b";
  s.push_back('\0');
  s += "c\r\n\r\n";
  EXPECT_EQ(parse(s, h).error_status, 400);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", h).error_status, 400);
}

TEST(HttpParser, TransferEncodingRules) {
  RequestHead h;
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", h).status,
            ParseStatus::Done);
  EXPECT_TRUE(h.chunked);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", h)
                .error_status,
            501);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", h)
                .error_status,
            400);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n",
                  h)
                .error_status,
            400);
  EXPECT_EQ(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", h).error_status, 400);
}

TEST(HttpParser, HostRules) {
  RequestHead h;
  EXPECT_EQ(parse("GET / HTTP/1.1\r\n\r\n", h).error_status, 400);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", h).error_status, 400);
  EXPECT_EQ(parse("GET / HTTP/1.0\r\n\r\n", h).status, ParseStatus::Done);
  EXPECT_FALSE(h.keep_alive);
  EXPECT_EQ(parse("GET http://b.example/x?y HTTP/1.1\r\nHost: a\r\n\r\n", h).status,
            ParseStatus::Done);
  EXPECT_EQ(h.host, "b.example");
  EXPECT_EQ(h.target, "/x?y");
}

TEST(HttpParser, LimitsGiveTheirStatus) {
  RequestHead h;
  RequestLimits l;
  l.max_head = 1024;
  l.max_uri = 256;
  std::string long_uri = "GET /" + std::string(300, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(parse(long_uri, h, l).error_status, 414);
  std::string unfinished_uri = "GET /" + std::string(300, 'a');
  EXPECT_EQ(parse(unfinished_uri, h, l).error_status, 414);
  std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(1100, 'b');
  EXPECT_EQ(parse(big, h, l).error_status, 431);
}

TEST(HttpParser, VersionRules) {
  RequestHead h;
  EXPECT_EQ(parse("GET / HTTP/2.0\r\nHost: a\r\n\r\n", h).error_status, 505);
  EXPECT_EQ(parse("GET / HTTX/1.1\r\nHost: a\r\n\r\n", h).error_status, 400);
  EXPECT_EQ(parse("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", h).error_status, 400);
}

TEST(HttpParser, ConnectionAndUpgrade) {
  RequestHead h;
  ASSERT_EQ(
      parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n",
            h)
          .status,
      ParseStatus::Done);
  EXPECT_TRUE(h.upgrade_websocket);
  EXPECT_FALSE(h.keep_alive);
  EXPECT_TRUE(is_hop_by_hop("Keep-Alive", ""));
  EXPECT_TRUE(is_hop_by_hop("X-Custom", "close, x-custom"));
  EXPECT_FALSE(is_hop_by_hop("X-Other", "close, x-custom"));
}

TEST(HttpParser, ExpectContinue) {
  RequestHead h;
  ASSERT_EQ(
      parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", h)
          .status,
      ParseStatus::Done);
  EXPECT_TRUE(h.expect_continue);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", h).error_status, 417);
}

TEST(HttpParser, ParsesResponses) {
  ResponseHead r;
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 4096, r).status,
            ParseStatus::Done);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_length, 5);
  EXPECT_EQ(r.head_size, 38u);
  ASSERT_EQ(parse_response("HTTP/1.0 204\r\n\r\n", 4096, r).status, ParseStatus::Done);
  EXPECT_FALSE(r.keep_alive);
  EXPECT_EQ(
      parse_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                     4096, r)
          .error_status,
      502);
  EXPECT_EQ(parse_response("HTTP/1.1 2000 OK\r\n\r\n", 4096, r).error_status, 502);
}
