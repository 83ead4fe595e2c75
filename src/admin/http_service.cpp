#include "admin/http_service.hpp"

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "core/log.hpp"

namespace portico::admin {

namespace beast = boost::beast;
namespace http = beast::http;
using TcpStream = beast::basic_stream<asio::ip::tcp, Executor>;

namespace {
constexpr int kMaxConnections = 256;
constexpr auto kIdleTimeout = std::chrono::seconds(30);
constexpr auto kRefusalLinger = std::chrono::seconds(2);

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void parse_target(std::string_view target, HttpRequest& req) {
  size_t q = target.find('?');
  req.path = percent_decode(target.substr(0, q), false);
  if (q == std::string_view::npos) return;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::string key = percent_decode(pair.substr(0, eq), true);
    std::string value =
        eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1), true);
    if (!key.empty()) req.query[key] = value;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
}

std::string error_json(const std::string& message) {
  std::string out = "{\"error_msg\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') out += '\\';
    out += c >= 0x20 ? c : ' ';
  }
  return out + "\"}\n";
}
}  // namespace

std::string percent_decode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += plus_is_space && in[i] == '+' ? ' ' : in[i];
  }
  return out;
}

struct HttpService::Impl : std::enable_shared_from_this<Impl> {
  Executor ex;
  std::string name;
  size_t max_body;
  HttpHandler handler;
  PeerFilter admits;
  Acceptor acceptor;
  int connections = 0;
  int refusing = 0;  // peers outside admin.allow being answered
  bool stopped = false;

  Impl(Executor e, std::string n, size_t limit, HttpHandler h, PeerFilter f)
      : ex(e),
        name(std::move(n)),
        max_body(limit),
        handler(std::move(h)),
        admits(std::move(f)),
        acceptor(e) {}

  Task<> accept_loop() {
    auto self = shared_from_this();
    while (!stopped) {
      auto [ec, socket] = co_await acceptor.async_accept(await_ec);
      if (ec) {
        if (stopped || ec == asio::error::operation_aborted) co_return;
        log::warn(name + ": accept failed: " + ec.message());
        continue;
      }
      if (connections >= kMaxConnections) continue;  // closes the socket: too many clients
      if (admits) {
        error_code peer_ec;
        auto peer = socket.remote_endpoint(peer_ec);
        if (peer_ec) continue;
        if (!admits(peer.address())) {
          if (refusing < kMaxConnections)
            asio::co_spawn(ex, refuse(Socket(std::move(socket)), peer.address()), asio::detached);
          continue;
        }
      }
      asio::co_spawn(ex, session(Socket(std::move(socket))), asio::detached);
    }
  }

  // A peer outside admin.allow gets its 403 at once, before it has sent a request, and holds no
  // connection slot: slow requests from anywhere cannot lock the Admin API. What it sends is
  // read and dropped for a moment, so that closing does not reset the answer away.
  Task<> refuse(Socket socket, asio::ip::address peer) {
    auto self = shared_from_this();
    ++refusing;
    std::string body = error_json("address " + peer.to_string() + " is not in admin.allow");
    std::string answer =
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    TcpStream stream(std::move(socket));
    stream.expires_after(kRefusalLinger);
    auto [wec, written] = co_await asio::async_write(stream, asio::buffer(answer), await_ec);
    error_code ec;
    stream.socket().shutdown(asio::socket_base::shutdown_send, ec);
    std::array<char, 4096> sink;
    while (!wec) {
      auto [rec, n] = co_await stream.async_read_some(asio::buffer(sink), await_ec);
      if (rec) break;
    }
    --refusing;
  }

  Task<> session(Socket socket) {
    auto self = shared_from_this();
    ++connections;
    TcpStream stream(std::move(socket));
    error_code ec;
    asio::ip::address remote = stream.socket().remote_endpoint(ec).address();
    beast::flat_buffer buffer;
    try {
      while (!stopped) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(max_body);
        parser.header_limit(64 * 1024);
        stream.expires_after(kIdleTimeout);
        auto [rec, n] = co_await http::async_read(stream, buffer, parser, await_ec);
        if (rec == http::error::end_of_stream || rec == asio::error::eof ||
            rec == beast::error::timeout)
          break;
        http::response<http::string_body> res;
        bool keep_alive = false;
        if (rec == http::error::body_limit) {
          res.result(http::status::payload_too_large);
          res.body() =
              error_json("request body larger than " + std::to_string(max_body) + " bytes");
        } else if (rec) {
          res.result(http::status::bad_request);
          res.body() = error_json("bad request: " + rec.message());
        } else {
          auto& msg = parser.get();
          HttpRequest req;
          req.method = std::string(msg.method_string());
          parse_target(msg.target(), req);
          for (const auto& field : msg) {
            std::string key(field.name_string());
            for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            req.headers[key] = std::string(field.value());
          }
          req.body = std::move(msg.body());
          req.remote = remote;
          keep_alive = msg.keep_alive();
          HttpResponse out = co_await handler(req);
          res.result(static_cast<unsigned>(out.status));
          res.set(http::field::content_type, out.content_type);
          res.body() = std::move(out.body);
        }
        if (res.find(http::field::content_type) == res.end())
          res.set(http::field::content_type, "application/json");
        res.set(http::field::server, "portico");
        res.keep_alive(keep_alive);
        res.prepare_payload();
        stream.expires_after(kIdleTimeout);
        auto [wec, written] = co_await http::async_write(stream, res, await_ec);
        if (wec || !keep_alive) break;
      }
    } catch (const std::exception& e) {
      log::error(name + ": request failed: " + e.what());
    }
    stream.socket().shutdown(asio::socket_base::shutdown_send, ec);
    --connections;
  }
};

HttpService::HttpService(Executor ex, std::string name, size_t max_body, HttpHandler handler,
                         PeerFilter admits)
    : impl_(std::make_shared<Impl>(ex, std::move(name), max_body, std::move(handler),
                                   std::move(admits))) {}

HttpService::~HttpService() { stop(); }

void HttpService::start(const config::ListenAddress& address) {
  Endpoint ep(asio::ip::make_address(address.host), address.port);
  error_code ec;
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error(impl_->name + " cannot listen on " + address.to_string() + ": " +
                             ec.message());
  asio::co_spawn(impl_->ex, impl_->accept_loop(), asio::detached);
  log::info(impl_->name + " listening on " + address.to_string());
}

void HttpService::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  error_code ec;
  impl_->acceptor.close(ec);
}

}  // namespace portico::admin
