#include "http/message_heads.hpp"

#include <gtest/gtest.h>

#include "http/responses.hpp"

using namespace portico::http;

namespace {

RequestHead parsed(std::string_view raw) {
  static std::string keep;  // the head views into it
  keep.assign(raw);
  RequestHead h;
  EXPECT_EQ(parse_request(keep, RequestLimits{}, h).status, ParseStatus::Done);
  return h;
}

portico::upstream::NodeTarget node() {
  portico::upstream::NodeTarget n;
  n.host_header = "10.0.0.5:8080";
  return n;
}

}  // namespace

TEST(UpstreamHead, ForwardingHeadersAndChain) {
  RequestHead h = parsed(
      "GET /a?b HTTP/1.1\r\nHost: api.test\r\nX-Forwarded-For: 1.1.1.1\r\nX-Real-IP: spoof\r\n"
      "X-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n");
  portico::config::Upstream spec;
  std::string out;
  build_upstream_head(out, h, ClientFacts{"9.9.9.9", 9080}, node(), spec, false);
  EXPECT_EQ(
      out,
      "GET /a?b HTTP/1.1\r\nHost: api.test\r\nAccept: */*\r\n"
      "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 9.9.9.9\r\nX-Real-IP: 9.9.9.9\r\n"
      "X-Forwarded-Proto: http\r\nX-Forwarded-Host: api.test\r\nX-Forwarded-Port: 9080\r\n\r\n");
}

TEST(UpstreamHead, HopByHopRemovedAndBodyFramingRewritten) {
  RequestHead h = parsed(
      "POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\n"
      "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nX-Keep: 2\r\n\r\n");
  portico::config::Upstream spec;
  std::string out;
  build_upstream_head(out, h, ClientFacts{"1.2.3.4", 80}, node(), spec, false);
  EXPECT_EQ(out.find("X-Hop"), std::string::npos);
  EXPECT_EQ(out.find("TE:"), std::string::npos);
  EXPECT_EQ(out.find("Expect"), std::string::npos);
  EXPECT_EQ(out.find("Connection"), std::string::npos);
  EXPECT_NE(out.find("X-Keep: 2\r\n"), std::string::npos);
  EXPECT_NE(out.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
}

TEST(UpstreamHead, PassHostModes) {
  RequestHead h = parsed("GET / HTTP/1.1\r\nHost: client.test\r\n\r\n");
  portico::config::Upstream spec;
  std::string out;
  spec.pass_host = portico::config::PassHost::Node;
  build_upstream_head(out, h, ClientFacts{"1.2.3.4", 80}, node(), spec, false);
  EXPECT_NE(out.find("Host: 10.0.0.5:8080\r\n"), std::string::npos);
  spec.pass_host = portico::config::PassHost::Rewrite;
  spec.upstream_host = "internal.svc";
  build_upstream_head(out, h, ClientFacts{"1.2.3.4", 80}, node(), spec, false);
  EXPECT_NE(out.find("Host: internal.svc\r\n"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-Host: client.test\r\n"), std::string::npos);
}

TEST(UpstreamHead, WebSocketKeepsTheUpgrade) {
  RequestHead h = parsed(
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
      "Sec-WebSocket-Key: k\r\n\r\n");
  portico::config::Upstream spec;
  std::string out;
  build_upstream_head(out, h, ClientFacts{"1.2.3.4", 80}, node(), spec, true);
  EXPECT_NE(out.find("Connection: upgrade\r\nUpgrade: websocket\r\n"), std::string::npos);
  build_upstream_head(out, h, ClientFacts{"1.2.3.4", 80}, node(), spec, false);
  EXPECT_EQ(out.find("Upgrade"), std::string::npos);
}

TEST(ResponseHead, FramingAndKeepAlive) {
  ResponseHead r;
  std::string raw =
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\nX-A: b\r\n\r\n";
  ASSERT_EQ(parse_response(raw, 4096, r).status, ParseStatus::Done);
  std::string out;
  build_response_head(out, r, OutFraming::Length, true, false);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 5\r\n\r\n");
  build_response_head(out, r, OutFraming::Length, false, false);
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
  build_response_head(out, r, OutFraming::Length, true, true);
  EXPECT_NE(out.find("Connection: keep-alive\r\n"), std::string::npos);

  std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n";
  ASSERT_EQ(parse_response(chunked, 4096, r).status, ParseStatus::Done);
  build_response_head(out, r, OutFraming::Chunked, true, false);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST(LocalResponse, EveryStatusTheGatewayAnswersWithHasItsReason) {
  // (411 for a chunked body on a WAF route, 410 for an ended polling session, 421 after a
  // certificate change, any rejected_code a limit plugin is given)
  for (auto [status, reason] :
       std::vector<std::pair<int, std::string>>{{411, "Length Required"},
                                                {410, "Gone"},
                                                {421, "Misdirected Request"},
                                                {418, "I'm a teapot"},
                                                {405, "Not Allowed"},
                                                {308, "Permanent Redirect"}}) {
    std::string out;
    build_local_response(out, status, "text/plain", "x", {}, true, false);
    EXPECT_EQ(out.substr(0, out.find("\r\n")), "HTTP/1.1 " + std::to_string(status) + " " + reason);
  }
  EXPECT_STREQ(status_reason(599), "Unknown");
}
