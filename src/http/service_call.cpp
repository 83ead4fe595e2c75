#include "http/service_call.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cctype>
#include <charconv>
#include <memory>
#include <optional>

#include "core/byte_stream.hpp"
#include "core/deadline.hpp"
#include "core/name_lookup.hpp"
#include "http/chunked_decoder.hpp"
#include "http/http_parser.hpp"

namespace portico::http {
namespace {

constexpr size_t kMaxHead = 32 * 1024;

// What the timer may touch after the coroutine is gone: shared by both.
struct Exchange {
  explicit Exchange(const Executor& ex) : socket(ex), timer(ex) {}
  Socket socket;
  Timer timer;
  bool expired = false;
  std::optional<ByteStream> stream;  // over `socket`, once open() succeeded
};

// An exchange whose timer closes the socket after `timeout` seconds, whatever is in progress;
// the guard cancels the timer when the caller is done.
struct TimedExchange {
  std::shared_ptr<Exchange> x;
  ~TimedExchange() { x->timer.cancel(); }
};
TimedExchange start_exchange(const Executor& executor, double timeout) {
  auto x = std::make_shared<Exchange>(executor);
  x->timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000)));
  x->timer.async_wait([x](error_code ec) {
    if (ec) return;
    x->expired = true;
    error_code ignored;
    x->socket.close(ignored);
  });
  return {x};
}

// Resolves, connects and, with `tls`, shakes hands; x.stream is then open. Empty on success,
// else why not.
Task<std::string> open(Exchange& x, const std::string& host, uint16_t port, bool tls,
                       bool verify_tls, double timeout, const std::string& sni = {}) {
  NameLookup names = co_await lookup_name(host, timeout);
  if (names.addresses.empty() || x.expired)
    co_return names.error.empty() ? "no address" : names.error;
  std::vector<asio::ip::tcp::endpoint> endpoints;
  for (const auto& a : names.addresses) endpoints.emplace_back(a, port);
  auto [cec, endpoint] = co_await asio::async_connect(x.socket, endpoints, await_ec);
  if (cec || x.expired) co_return "cannot connect: " + cec.message();
  error_code nodelay;
  x.socket.set_option(asio::ip::tcp::no_delay(true), nodelay);
  x.stream.emplace(x.socket);
  if (tls) {
    Deadline unused;  // the exchange's timer bounds the handshake
    tls::Connected t =
        co_await tls::connect(x.socket, sni.empty() ? host : sni, endpoint.address().to_string(),
                              verify_tls, unused, timeout);
    if (!t.stream || x.expired) co_return "TLS: " + t.error;
    x.stream->use_tls(std::move(t.stream));
  }
  co_return std::string();
}

ServiceAnswer failed(std::string why, const Exchange& x) {
  ServiceAnswer a;
  a.timed_out = x.expired;
  a.error = x.expired ? "timed out" : std::move(why);
  return a;
}

std::string request_head(const ServiceUrl& url, const ServiceRequest& r) {
  std::string head = r.method;
  head.append(" ").append(r.target.empty() ? url.target : r.target).append(" HTTP/1.1\r\nHost: ");
  head.append(r.host.empty() ? url.host_header : r.host).append("\r\nConnection: close\r\n");
  for (const auto& [name, value] : r.headers)
    head.append(name).append(": ").append(value) += "\r\n";
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT")
    head.append("Content-Length: ").append(std::to_string(r.body.size())) += "\r\n";
  return head + "\r\n";
}

}  // namespace

std::optional<ServiceUrl> parse_service_url(std::string_view text, std::string& why) {
  ServiceUrl url;
  if (text.starts_with("https://")) {
    url.https = true;
    text.remove_prefix(8);
  } else if (text.starts_with("http://")) {
    text.remove_prefix(7);
  } else {
    why = "must start with http:// or https://";
    return std::nullopt;
  }
  size_t slash = text.find_first_of("/?");
  std::string_view authority = text.substr(0, slash);
  std::string_view target = slash == std::string_view::npos ? "/" : text.substr(slash);
  url.target = target.front() == '?' ? "/" + std::string(target) : std::string(target);
  url.host_header = std::string(authority);
  std::string_view port;
  if (authority.starts_with("[")) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "has an unclosed [ in its address";
      return std::nullopt;
    }
    url.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        why = "has something after its address";
        return std::nullopt;
      }
      port = authority.substr(close + 2);
    }
  } else {
    size_t colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  url.port = url.https ? 443 : 80;
  if (!port.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
      why = "has an invalid port";
      return std::nullopt;
    }
    url.port = static_cast<uint16_t>(value);
  }
  // A name or an IPv4 address (letters, digits, '-', '.', '_'), or an IPv6 one in brackets.
  const bool bracketed = authority.starts_with("[");
  auto host_char = [&](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '.' || c == '_' || (bracketed && c == ':');
  };
  if (url.host.empty() || !std::all_of(url.host.begin(), url.host.end(), host_char)) {
    why = "needs a host name or address (no user info; an IPv6 address goes in brackets)";
    return std::nullopt;
  }
  for (char c : url.target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '#') {
      why = "has a space, control byte or fragment in its path";
      return std::nullopt;
    }
  return url;
}

Task<ServiceAnswer> call_service(const ServiceUrl& url, const ServiceRequest& request) {
  // One timer for the whole exchange: its expiry cancels whatever is in progress.
  TimedExchange timed = start_exchange(co_await asio::this_coro::executor, request.timeout);
  Exchange* x = timed.x.get();
  if (std::string why =
          co_await open(*x, url.host, url.port, url.https, request.verify_tls, request.timeout);
      !why.empty())
    co_return failed(why, *x);
  ByteStream& stream = *x->stream;
  std::string head = request.raw_head.empty() ? request_head(url, request) : request.raw_head;
  std::array<asio::const_buffer, 2> out{asio::buffer(head), asio::buffer(request.body)};
  auto [wec, written] = co_await stream.write_all(out);
  if (wec || x->expired) co_return failed("cannot send: " + wec.message(), *x);

  std::string in;
  ResponseHead resp;
  error_code last_read;  // why read_more stopped: eof is a clean end, anything else is not
  auto read_more = [&]() -> Task<bool> {
    size_t had = in.size();
    in.resize(had + 16 * 1024);
    auto [ec, n] = co_await stream.read_some(asio::buffer(in.data() + had, in.size() - had));
    in.resize(had + n);
    last_read = ec;
    co_return !ec && n > 0 && !x->expired;
  };
  while (true) {
    ParseResult p = parse_response(in, kMaxHead, resp);
    if (p.status == ParseStatus::Done && resp.status >= 200) break;
    if (p.status == ParseStatus::Done) {  // 1xx: the real answer follows
      in.erase(0, resp.head_size);
      resp = ResponseHead{};
      continue;
    }
    if (p.status == ParseStatus::Error)
      co_return failed(std::string("bad answer: ") + p.reason, *x);
    if (!co_await read_more()) co_return failed("closed before answering", *x);
  }
  ServiceAnswer answer;
  answer.status = resp.status;
  for (const Header& h : resp.headers) answer.headers.emplace_back(h.name, h.value);
  size_t at = resp.head_size;  // (header views die with the reads below: copied above)
  if (request.method == "HEAD" || resp.status == 204 || resp.status == 304) co_return answer;
  if (resp.chunked) {
    ChunkedDecoder chunks;
    while (!chunks.done()) {
      ChunkedDecoder::Step s = chunks.feed(std::string_view(in).substr(at));
      at += s.consumed;
      if (s.status == ChunkedDecoder::Status::Error) co_return failed("bad chunked answer", *x);
      if (s.status == ChunkedDecoder::Status::Data && request.keep_body) answer.body.append(s.data);
      if (answer.body.size() > request.max_body) co_return failed("answer too long", *x);
      if (s.status == ChunkedDecoder::Status::NeedMore) {
        in.erase(0, at);  // framing read so far goes: a flood of extensions cannot pile up
        at = 0;
        if (!co_await read_more()) co_return failed("closed in the answer", *x);
      }
    }
    co_return answer;
  }
  const bool until_close = resp.content_length < 0;
  if (!request.keep_body) {  // read to the end, keeping nothing
    uint64_t left = until_close ? UINT64_MAX : static_cast<uint64_t>(resp.content_length);
    uint64_t have = in.size() - at;
    while (have < left) {
      in.clear();
      if (!co_await read_more()) break;
      have += in.size();
    }
    if (x->expired) co_return failed("", *x);
    if (until_close ? last_read != asio::error::eof : have < left)
      co_return failed("closed in the answer", *x);
    co_return answer;
  }
  if (!until_close && static_cast<uint64_t>(resp.content_length) > request.max_body)
    co_return failed("answer too long", *x);
  const size_t want = until_close ? request.max_body + 1 : static_cast<size_t>(resp.content_length);
  while (in.size() - at < want && co_await read_more()) {
  }
  if (x->expired) co_return failed("", *x);
  if (in.size() - at > request.max_body && until_close) co_return failed("answer too long", *x);
  if (until_close && last_read != asio::error::eof)  // a reset is no end of the answer
    co_return failed("connection failed in the answer: " + last_read.message(), *x);
  if (!until_close && in.size() - at < want) co_return failed("closed in the answer", *x);
  answer.body = in.substr(at, std::min(want, in.size() - at));
  co_return answer;
}

Task<std::string> send_to_service(const std::string& host, uint16_t port, bool tls, bool verify_tls,
                                  std::string_view data, double timeout, const std::string& sni) {
  TimedExchange timed = start_exchange(co_await asio::this_coro::executor, timeout);
  Exchange* x = timed.x.get();
  if (std::string why = co_await open(*x, host, port, tls, verify_tls, timeout, sni); !why.empty())
    co_return x->expired ? "timed out" : why;
  auto [ec, n] = co_await x->stream->write_all(asio::buffer(data));
  if (ec || x->expired) co_return x->expired ? "timed out" : "cannot send: " + ec.message();
  co_return std::string();
}

}  // namespace portico::http
