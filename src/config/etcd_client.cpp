#include "config/etcd_client.hpp"

#include "core/base64.hpp"

#include <openssl/err.h>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/log.hpp"

namespace portico::config {

namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;
using TcpStream = beast::basic_stream<asio::ip::tcp, Executor>;
using TlsStream = beast::ssl_stream<TcpStream>;
using Response = http::response<http::string_body>;
using Request = http::request<http::string_body>;

namespace {

constexpr uint64_t kMaxResponse = uint64_t{1} << 30;  // a 50k-route range is ~30 MB

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string text;
};

Url parse_url(const std::string& text) {
  Url u;
  u.text = text;
  std::string rest = text;
  if (rest.rfind("https://", 0) == 0) {
    u.tls = true;
    rest = rest.substr(8);
  } else if (rest.rfind("http://", 0) == 0) {
    rest = rest.substr(7);
  }
  if (size_t slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']', colon) == std::string::npos) {
    u.host = rest.substr(0, colon);
    u.port = rest.substr(colon + 1);
  } else {
    u.host = rest;
    u.port = u.tls ? "443" : "2379";
  }
  if (u.host.size() > 2 && u.host.front() == '[') u.host = u.host.substr(1, u.host.size() - 2);
  return u;
}

// An error code as an operator reads it ("Connection refused", "certificate verify failed"),
// without the source location Boost appends to what().
std::string describe(const error_code& ec) {
  std::string text = ec.message();
  if (ec.category() == asio::error::get_ssl_category()) {
    char buf[256];
    ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof(buf));
    text = buf;
  }
  return text;
}

std::string describe(const std::exception& e) {
  if (const auto* se = dynamic_cast<const boost::system::system_error*>(&e))
    return describe(se->code());
  return e.what();
}

bool timed_out(const std::exception& e) {
  const auto* se = dynamic_cast<const boost::system::system_error*>(&e);
  return se && se->code() == beast::error::timeout;
}

int64_t to_int(const json& v) {
  if (v.is_string()) return std::stoll(v.get<std::string>());
  if (v.is_number_integer()) return v.get<int64_t>();
  return 0;
}

int64_t header_revision(const json& body) {
  auto h = body.find("header");
  if (h == body.end()) return 0;
  auto r = h->find("revision");
  return r == h->end() ? 0 : to_int(*r);
}

EtcdKv decode_kv(const json& kv) {
  EtcdKv out;
  if (!base64_decode(kv.value("key", ""), out.key) ||
      !base64_decode(kv.value("value", ""), out.value))
    throw EtcdError("etcd sent a key or value that is not base64");
  if (auto it = kv.find("create_revision"); it != kv.end()) out.create_revision = to_int(*it);
  if (auto it = kv.find("mod_revision"); it != kv.end()) out.mod_revision = to_int(*it);
  return out;
}

template <class Stream>
Task<Response> round_trip(Stream& stream, Request& req, beast::flat_buffer& buffer) {
  co_await http::async_write(stream, req, use_task);
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxResponse);
  co_await http::async_read(stream, buffer, parser, use_task);
  co_return parser.release();
}

// Reads a streaming response whose body is newline-separated JSON messages (etcd's gateway
// writes one message per chunk, each ending in '\n') and hands each line over.
template <class Stream>
Task<> read_lines(Stream& stream, Request& req, beast::flat_buffer& buffer, TcpStream& lowest,
                  const std::function<void(std::string_view)>& on_line) {
  co_await http::async_write(stream, req, use_task);
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<uint64_t>::max());
  std::string pending;
  auto on_chunk = [&](uint64_t, beast::string_view body, error_code&) -> size_t {
    pending.append(body.data(), body.size());
    return body.size();
  };
  parser.on_chunk_body(on_chunk);
  co_await http::async_read_header(stream, buffer, parser, use_task);
  if (parser.get().result() != http::status::ok) {
    co_await http::async_read(stream, buffer, parser, use_task);
    throw EtcdError("watch refused: HTTP " + std::to_string(parser.get().result_int()) + " " +
                    parser.get().body());
  }
  lowest.expires_never();  // a quiet watch is normal: liveness is probed separately
  while (!parser.is_done()) {
    co_await http::async_read_some(stream, buffer, parser, use_task);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
      if (nl > start) on_line(std::string_view(pending).substr(start, nl - start));
    pending.erase(0, start);
  }
}

// One HTTP/1.1 keep-alive connection to one endpoint, plain or TLS.
class Connection {
 public:
  Connection(Executor ex, asio::ssl::context* ssl, const Url& url) : ex_(ex), url_(url) {
    if (url.tls)
      tls_.emplace(TcpStream(ex), *ssl);
    else
      tcp_.emplace(ex);
  }

  TcpStream& lowest() { return tls_ ? beast::get_lowest_layer(*tls_) : *tcp_; }

  Task<> connect(std::chrono::milliseconds timeout) {
    asio::ip::basic_resolver<asio::ip::tcp, Executor> resolver(ex_);
    auto results = co_await resolver.async_resolve(url_.host, url_.port, use_task);
    lowest().expires_after(timeout);
    co_await lowest().async_connect(results, use_task);
    lowest().socket().set_option(asio::socket_base::keep_alive(true));
    lowest().socket().set_option(asio::ip::tcp::no_delay(true));
    if (tls_) {
      if (!SSL_set_tlsext_host_name(tls_->native_handle(), url_.host.c_str()))
        throw EtcdError("cannot set TLS server name");
      tls_->set_verify_callback(asio::ssl::host_name_verification(url_.host));
      co_await tls_->async_handshake(asio::ssl::stream_base::client, use_task);
    }
    connected_ = true;
  }

  Task<Response> request(Request& req, std::chrono::milliseconds timeout) {
    lowest().expires_after(timeout);
    // Not a conditional expression: GCC 12 mishandles co_await inside ?: with class types.
    Response res;
    if (tls_)
      res = co_await round_trip(*tls_, req, buffer_);
    else
      res = co_await round_trip(*tcp_, req, buffer_);
    if (!res.keep_alive()) close();
    co_return res;
  }

  Task<> stream(Request& req, std::chrono::milliseconds timeout,
                const std::function<void(std::string_view)>& on_line) {
    lowest().expires_after(timeout);
    if (tls_)
      co_await read_lines(*tls_, req, buffer_, lowest(), on_line);
    else
      co_await read_lines(*tcp_, req, buffer_, lowest(), on_line);
  }

  void close() {
    connected_ = false;
    error_code ec;
    lowest().socket().shutdown(asio::socket_base::shutdown_both, ec);
    lowest().socket().close(ec);
  }
  bool connected() const { return connected_; }
  const Url& url() const { return url_; }

 private:
  Executor ex_;
  Url url_;
  std::optional<TcpStream> tcp_;
  std::optional<TlsStream> tls_;
  beast::flat_buffer buffer_;
  bool connected_ = false;
};

}  // namespace

struct EtcdClient::Impl {
  Executor ex;
  EtcdSettings settings;
  std::vector<Url> urls;
  size_t current = 0;
  std::optional<asio::ssl::context> ssl;
  std::vector<std::unique_ptr<Connection>> idle;
  std::unique_ptr<Connection> watch_conn;
  std::string token;
  std::chrono::milliseconds timeout;

  Impl(Executor e, EtcdSettings s) : ex(e), settings(std::move(s)) {
    timeout = std::chrono::milliseconds(static_cast<int64_t>(settings.timeout * 1000));
    for (const auto& text : settings.endpoints) urls.push_back(parse_url(text));
    bool any_tls = false;
    for (const auto& u : urls) any_tls |= u.tls;
    if (any_tls) setup_tls();
  }

  void setup_tls() {
    ssl.emplace(asio::ssl::context::tls_client);
    ssl->set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    const EtcdTls& t = settings.tls;
    if (t.ca.empty())
      ssl->set_default_verify_paths();
    else
      ssl->load_verify_file(t.ca);
    ssl->set_verify_mode(t.verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
    if (!t.cert.empty()) {
      ssl->use_certificate_chain_file(t.cert);
      ssl->use_private_key_file(t.key, asio::ssl::context::pem);
    }
  }

  Request make_request(const Url& url, const std::string& path, const json& body) {
    Request req(http::verb::post, path, 11);
    req.set(http::field::host, url.host + ":" + url.port);
    req.set(http::field::content_type, "application/json");
    if (!token.empty()) req.set(http::field::authorization, token);
    req.body() = body.dump();
    req.prepare_payload();
    return req;
  }

  // A keep-alive connection to the current endpoint: several calls may be in flight at once
  // (admin requests, the liveness probe, a resync), each on its own connection.
  std::unique_ptr<Connection> take_idle(const Url& url) {
    while (!idle.empty()) {
      auto c = std::move(idle.back());
      idle.pop_back();
      if (c->connected() && c->url().text == url.text) return c;
    }
    return nullptr;
  }

  void give_back(std::unique_ptr<Connection> c) {
    if (c->connected() && idle.size() < 4) idle.push_back(std::move(c));
  }

  // Sends one request, trying each endpoint once (starting with the one that worked last) and
  // a stale keep-alive connection once more. Returns the parsed JSON answer or throws.
  // A write (`resendable` false) whose answer timed out is not sent again: etcd may have
  // applied it, and sending it twice could create a second object or answer a delete 404.
  Task<json> call(const std::string& path, const json& body, bool resendable = true) {
    std::string last_error = "no endpoint configured";
    for (size_t tried = 0; tried < urls.size(); ++tried) {
      const Url url = urls[current];
      for (int attempt = 0; attempt < 2; ++attempt) {
        auto conn = take_idle(url);
        bool reused = conn != nullptr;
        bool sent = false;
        try {
          if (!conn) {
            conn = std::make_unique<Connection>(ex, ssl ? &*ssl : nullptr, url);
            co_await conn->connect(timeout);
            if (!settings.user.empty() && token.empty()) co_await authenticate(*conn);
          }
          sent = true;
          auto [ok, answer, message] = co_await send(*conn, url, path, body);
          if (!ok && !settings.user.empty() && is_auth_failure(answer)) {
            token.clear();  // an expired token: authenticate again and retry once
            co_await authenticate(*conn);
            std::tie(ok, answer, message) = co_await send(*conn, url, path, body);
          }
          give_back(std::move(conn));
          if (ok) co_return answer;
          throw EtcdError("etcd " + url.text + " refused " + path + ": " + message);
        } catch (const EtcdError&) {
          throw;
        } catch (const std::exception& e) {
          last_error = url.text + ": " + describe(e);
          if (conn) conn->close();
          // The other idle ones most likely died with it (a network blip, a NAT that forgot
          // them): each would cost a full timeout. A retry opens a fresh connection.
          if (reused) idle.clear();
          // Sent: etcd may have applied it, whether the answer timed out or the connection
          // broke (a member killed right after applying). The caller decides (txn()).
          if (!resendable && sent)
            throw EtcdUnanswered(
                (timed_out(e) ? "no answer from " + url.text + " to " + path + " within the timeout"
                              : "the connection to " + url.text + " failed after sending " + path +
                                    " (" + describe(e) + ")") +
                ": it may or may not have been applied");
          if (!reused) break;  // a fresh connection failed: next endpoint
        }
      }
      current = (current + 1) % urls.size();
    }
    throw EtcdError("etcd unreachable (" + last_error + ")");
  }

  // A transaction whose answer was lost is sent once more, on a fresh connection: its compares
  // hold for at most one of the two copies (each requires the state before the write), so the
  // outcome becomes known instead of "it may or may not have been applied". `resent` tells the
  // caller that a failed compare may be the first copy's doing.
  Task<json> txn(json body, bool& resent) {
    resent = false;
    try {
      co_return co_await call("/v3/kv/txn", body, false);
    } catch (const EtcdUnanswered& e) {
      log::warn(std::string("etcd: ") + e.what() + "; sending it once more");
      resent = true;
    }
    idle.clear();  // on a new connection: the pooled ones most likely went with the first
    try {
      co_return co_await call("/v3/kv/txn", body, false);
    } catch (const EtcdUnanswered&) {
      throw;
    } catch (const EtcdError& e) {
      // No verdict on the second copy: the first one's outcome is still unknown.
      throw EtcdUnanswered(std::string(e.what()) +
                           " (sending it again); the first copy may or may not have been applied");
    }
  }

  Task<std::tuple<bool, json, std::string>> send(Connection& conn, const Url& url,
                                                 const std::string& path, const json& body) {
    Request req = make_request(url, path, body);
    Response res = co_await conn.request(req, timeout);
    json answer = json::parse(res.body(), nullptr, false);
    bool ok = res.result() == http::status::ok && !answer.is_discarded();
    std::string message = answer.is_object() ? answer.value("message", res.body()) : res.body();
    co_return std::make_tuple(ok, std::move(answer), std::move(message));
  }

  static bool is_auth_failure(const json& answer) {
    if (!answer.is_object()) return false;
    int64_t code = answer.contains("code") ? to_int(answer["code"]) : 0;
    return code == 16 || answer.value("message", "").find("auth token") != std::string::npos;
  }

  Task<> authenticate(Connection& conn) {
    json body = {{"name", settings.user}, {"password", settings.password}};
    Request req = make_request(conn.url(), "/v3/auth/authenticate", body);
    req.erase(http::field::authorization);
    Response res = co_await conn.request(req, timeout);
    json answer = json::parse(res.body(), nullptr, false);
    if (res.result() != http::status::ok || !answer.is_object() || !answer.contains("token"))
      throw EtcdError("etcd authentication as \"" + settings.user + "\" failed");
    token = answer["token"].get<std::string>();
  }

  static Range to_range(const json& answer) {
    Range r;
    r.revision = header_revision(answer);
    if (auto kvs = answer.find("kvs"); kvs != answer.end())
      for (const auto& kv : *kvs) r.kvs.push_back(decode_kv(kv));
    if (auto count = answer.find("count"); count != answer.end()) r.count = to_int(*count);
    return r;
  }

  static Write to_write(const json& answer) {
    Write w;
    w.revision = header_revision(answer);
    if (answer.contains("deleted")) w.deleted = to_int(answer["deleted"]);
    return w;
  }

  // A transaction's answer says "succeeded": true when its compare held, and nothing at all when
  // it did not: the JSON gateway leaves out fields at their default (etcd issue #10065).
  static Write to_txn(const json& answer) {
    Write w = to_write(answer);
    auto it = answer.find("succeeded");
    w.succeeded = it != answer.end() && it->is_boolean() && it->get<bool>();
    return w;
  }
};

EtcdClient::EtcdClient(Executor ex, EtcdSettings settings)
    : impl_(std::make_unique<Impl>(ex, std::move(settings))) {}
EtcdClient::~EtcdClient() = default;

const std::string& EtcdClient::endpoint() const { return impl_->urls[impl_->current].text; }

Task<EtcdClient::Range> EtcdClient::get(std::string key) {
  json body = {{"key", base64_encode(key)}};
  json answer = co_await impl_->call("/v3/kv/range", body);
  co_return Impl::to_range(answer);
}

Task<EtcdClient::Range> EtcdClient::get_prefix(std::string prefix) {
  json body = {{"key", base64_encode(prefix)},
               {"range_end", base64_encode(prefix_range_end(prefix))}};
  json answer = co_await impl_->call("/v3/kv/range", body);
  co_return Impl::to_range(answer);
}

namespace {

// A range read of one key and no value: `key` itself, or the first key of [key, range_end);
// `newest`: the key changed last instead (etcd walks and sorts the whole range for it).
json one_key_read(const std::string& key, const std::string& range_end, bool newest) {
  json read = {{"key", base64_encode(key)}, {"limit", 1}, {"keys_only", true}};
  if (!range_end.empty()) read["range_end"] = base64_encode(range_end);
  if (newest) {
    read["sort_order"] = "DESCEND";
    read["sort_target"] = "MOD";
  }
  return read;
}

}  // namespace

Task<EtcdClient::Range> EtcdClient::first_key(std::string prefix) {
  json answer =
      co_await impl_->call("/v3/kv/range", one_key_read(prefix, prefix_range_end(prefix), false));
  co_return Impl::to_range(answer);
}

Task<EtcdClient::Range> EtcdClient::newest_key(std::string prefix) {
  json answer =
      co_await impl_->call("/v3/kv/range", one_key_read(prefix, prefix_range_end(prefix), true));
  co_return Impl::to_range(answer);
}

Task<EtcdClient::Write> EtcdClient::put(std::string key, std::string value) {
  json body = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  co_return Impl::to_write(co_await impl_->call("/v3/kv/put", body, false));
}

namespace {

// A transaction doing `op` if every compare holds; if one does not, it reads each compared key
// instead (see Write::conflict_revision).
json txn_body(const std::vector<EtcdCompare>& compares, json op,
              const std::vector<std::string>& touch) {
  json body = json::object();
  body["compare"] = json::array();
  body["failure"] = json::array();
  for (const EtcdCompare& c : compares) {
    json compare = {{"key", base64_encode(c.key)},
                    {"result", c.result == EtcdCompare::Result::Equal ? "EQUAL" : "LESS"},
                    {"target", "MOD"},
                    {"mod_revision", std::to_string(c.mod_revision)}};
    body["compare"].push_back(std::move(compare));
    json failure_op = json::object();
    failure_op["request_range"] = one_key_read(c.key, "", false);
    body["failure"].push_back(std::move(failure_op));
  }
  body["success"] = json::array({std::move(op)});
  for (const std::string& key : touch) {
    json put = json::object();
    put["request_put"] = {{"key", base64_encode(key)}, {"value", ""}};
    body["success"].push_back(std::move(put));
  }
  return body;
}

// A transaction's answer: its success branch's delete count, or its failure branch's newest
// mod_revision.
EtcdClient::Write txn_result(const json& answer, EtcdClient::Write w) {
  auto responses = answer.find("responses");
  if (responses == answer.end() || !responses->is_array()) return w;
  for (const json& r : *responses) {
    if (auto d = r.find("response_delete_range"); d != r.end() && d->contains("deleted"))
      w.deleted = to_int((*d)["deleted"]);
    if (auto range = r.find("response_range"); range != r.end() && range->contains("kvs"))
      for (const json& kv : (*range)["kvs"])
        w.conflict_revision = std::max(w.conflict_revision, decode_kv(kv).mod_revision);
  }
  return w;
}

}  // namespace

Task<EtcdClient::Write> EtcdClient::put_when(std::string key, std::string value,
                                             std::vector<EtcdCompare> compares,
                                             std::vector<std::string> touch) {
  json op = json::object();
  op["request_put"] = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  bool resent = false;
  json answer = co_await impl_->txn(txn_body(compares, std::move(op), touch), resent);
  Write w = txn_result(answer, Impl::to_txn(answer));
  if (!w.succeeded && resent) {
    // The first copy applied if the key holds exactly this value now.
    auto now = co_await get(key);
    if (!now.kvs.empty() && now.kvs.front().value == value)
      w = Write{true, now.kvs.front().mod_revision, 0, 0};
  }
  co_return w;
}

Task<EtcdClient::Write> EtcdClient::remove_when(std::string key, std::vector<EtcdCompare> compares,
                                                std::vector<std::string> touch) {
  json op = json::object();
  op["request_delete_range"] = {{"key", base64_encode(key)}};
  bool resent = false;
  json answer = co_await impl_->txn(txn_body(compares, std::move(op), touch), resent);
  Write w = txn_result(answer, Impl::to_txn(answer));
  if (resent && (!w.succeeded || w.deleted == 0)) {
    // The key is gone: the first copy deleted it (or another writer did; either way, gone).
    // Its revision is unknown (the read's may be another prefix's): 0 asks no one to wait.
    auto now = co_await get(key);
    if (now.kvs.empty()) w = Write{true, 0, 1, 0};
  }
  co_return w;
}

bool EtcdClient::cancel_watch() {
  if (!impl_->watch_conn) return false;
  impl_->watch_conn->close();
  return true;
}

Task<> EtcdClient::watch(std::string prefix, int64_t start_revision, WatchHandlers handlers) {
  Impl& im = *impl_;
  // A unary call first: it picks a live endpoint and (re)authenticates.
  co_await first_key(prefix);
  const Url& url = im.urls[im.current];
  im.watch_conn = std::make_unique<Connection>(im.ex, im.ssl ? &*im.ssl : nullptr, url);
  json create = {{"key", base64_encode(prefix)},
                 {"range_end", base64_encode(prefix_range_end(prefix))},
                 {"start_revision", std::to_string(start_revision)}};
  json watch_body = {{"create_request", create}};
  Request req = im.make_request(url, "/v3/watch", watch_body);
  std::string failure;
  int64_t compacted = 0;
  auto fail = [&](std::string why) {
    if (failure.empty()) failure = std::move(why);
    im.watch_conn->close();
  };
  auto on_line = [&](std::string_view line) {
    json msg = json::parse(line, nullptr, false);
    if (!msg.is_object()) return;
    if (msg.contains("error")) {
      fail("watch error: " + msg["error"].value("message", std::string(line)));
      return;
    }
    const json& result = msg["result"];
    if (result.contains("compact_revision") && to_int(result["compact_revision"]) > 0) {
      compacted = to_int(result["compact_revision"]);
      fail("compacted");
      return;
    }
    if (result.value("canceled", false)) {
      fail("watch canceled by etcd: " + result.value("cancel_reason", ""));
      return;
    }
    int64_t rev = header_revision(result);
    if (result.value("created", false)) {
      handlers.on_created(rev);
      return;
    }
    auto evs = result.find("events");
    if (evs == result.end()) return;
    std::vector<EtcdEvent> events;
    events.reserve(evs->size());
    for (const auto& e : *evs) {
      EtcdEvent ev;
      ev.deleted = e.value("type", "PUT") == "DELETE";
      ev.kv = decode_kv(e["kv"]);
      events.push_back(std::move(ev));
    }
    handlers.on_events(events, rev);
  };
  try {
    co_await im.watch_conn->connect(im.timeout);
    co_await im.watch_conn->stream(req, im.timeout, on_line);
  } catch (const EtcdError&) {
    im.watch_conn.reset();  // else cancel_watch() would report a watch that is not there
    throw;
  } catch (const std::exception& e) {
    if (failure.empty()) failure = "watch connection lost: " + describe(e);
  }
  im.watch_conn.reset();
  if (compacted > 0) throw EtcdCompacted(compacted);
  throw EtcdError(failure.empty() ? "watch stream ended" : failure);
}

std::string prefix_range_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

std::string base64_encode(std::string_view in) { return portico::base64_encode(in); }

bool base64_decode(std::string_view in, std::string& out) {
  auto decoded = portico::base64_decode(in);
  if (!decoded) return false;
  out = std::move(*decoded);
  return true;
}

}  // namespace portico::config
