#include "plugins/limit/redis_client.hpp"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <openssl/evp.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <deque>

#include "core/byte_stream.hpp"
#include "core/deadline.hpp"
#include "core/hex.hpp"
#include "core/log.hpp"
#include "core/name_lookup.hpp"

namespace portico::limit {

namespace {

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      break;  // nil
  }
  return out;
}

// RESP encoding of one command (hiredis's formatter; binary-safe arguments).
std::string format_command(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* raw = nullptr;
  int n = redisFormatCommandArgv(&raw, static_cast<int>(args.size()), argv.data(), lens.data());
  if (n < 0 || raw == nullptr) return {};
  std::string out(raw, static_cast<size_t>(n));
  redisFreeCommand(raw);
  return out;
}

std::string hex_sha1(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha1(), nullptr);
  return hex::encode(digest, len);
}

}  // namespace

std::string RedisSettings::endpoint() const {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

RedisScript::RedisScript(std::string body) : body_(std::move(body)), sha1_(hex_sha1(body_)) {}

// One call waiting for its reply. The reader fills `result` and cancels `timer`; the timer's
// expiry is the call's timeout.
struct RedisClient::Pending {
  explicit Pending(Executor ex) : timer(ex) {}
  Timer timer;
  bool done = false;
  bool handshake = false;  // AUTH/SELECT sent by the client itself: an error fails the connection
  RedisResult result;
};

struct RedisClient::Connection {
  explicit Connection(RedisClient* owner)
      : owner(owner), socket(owner->ex_), connect_timer(owner->ex_), reader(redisReaderCreate()) {}
  ~Connection() { redisReaderFree(reader); }

  RedisClient* owner;  // null once the client is gone or has moved on to a new connection
  std::string endpoint;
  Socket socket;
  ByteStream stream{socket};  // the socket, or TLS over it (redis_ssl) once set up
  Timer connect_timer;        // covers TCP connect, the TLS handshake and the AUTH/SELECT replies
  redisReader* reader;
  bool ready = false;   // TCP connected: queued commands may be written
  bool failed = false;  // terminal
  bool writing = false;
  int handshake_left = 0;
  std::string out;  // formatted commands waiting for the socket
  // Commands queued while AUTH/SELECT are unanswered: sent only once they succeed, so a
  // refused SELECT cannot let a counter script run in database 0.
  std::string held;
  std::string in_flight;                         // the buffer of the current async_write
  std::deque<std::shared_ptr<Pending>> pending;  // in the order Redis will answer
  std::array<char, 16 * 1024> in;
};

RedisClient::RedisClient(Executor ex, RedisSettings settings)
    : ex_(ex),
      settings_(std::move(settings)),
      endpoint_(settings_.endpoint()),
      last_used_ms_(steady_now_ms()) {}

RedisClient::~RedisClient() {
  *alive_ = false;
  if (conn_) {
    auto c = std::move(conn_);
    c->owner = nullptr;
    fail(c, "client closed", false);
  }
}

std::string RedisClient::describe(const std::string& what) const {
  return "redis " + endpoint_ + ": " + what;
}

Task<RedisResult> RedisClient::command(std::vector<std::string> args) {
  return send(format_command(args));
}

Task<RedisResult> RedisClient::eval(const RedisScript& script, std::vector<std::string> keys,
                                    std::vector<std::string> args, bool asking) {
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(std::to_string(keys.size()));
  for (auto& k : keys) argv.push_back(std::move(k));
  for (auto& a : args) argv.push_back(std::move(a));
  RedisResult r = co_await send(format_command(argv), asking);
  // NOSCRIPT: the script cache is empty (Redis restarted, SCRIPT FLUSH, a failover). The
  // EVALSHA did not run, so running EVAL now cannot count twice; EVAL also caches the script.
  if (!r.ok() && r.reply.type == RedisReply::Type::error && r.reply.str.starts_with("NOSCRIPT")) {
    argv[0] = "EVAL";
    argv[1] = script.body();
    r = co_await send(format_command(argv), asking);
  }
  co_return r;
}

Task<RedisResult> RedisClient::send(std::string formatted, bool asking) {
  struct InFlight {  // while this call waits, the client is in use (RedisClients::drop_unused)
    explicit InFlight(RedisClient& c) : client(c), alive(c.alive_) {
      ++client.in_flight_;
      client.last_used_ms_ = steady_now_ms();
    }
    ~InFlight() {
      if (*alive) --client.in_flight_;
    }
    RedisClient& client;
    std::shared_ptr<bool> alive;
  } in_flight(*this);
  if (formatted.empty()) co_return RedisResult{describe("cannot encode the command"), {}};
  if (!conn_) {
    int64_t now = steady_now_ms();
    if (now < retry_at_ms_) {
      co_return RedisResult{describe(last_failure_ + " (next attempt in " +
                                     std::to_string(retry_at_ms_ - now) + " ms)"),
                            {}};
    }
    conn_ = open_connection();
  }
  ConnectionPtr c = conn_;
  auto p = std::make_shared<Pending>(ex_);
  p->timer.expires_after(std::chrono::milliseconds(settings_.timeout_ms));
  std::string& queue = c->handshake_left > 0 ? c->held : c->out;
  if (asking) {
    // Queued together: no other call's command can come between ASKING and this one.
    auto ask = std::make_shared<Pending>(ex_);
    ask->done = true;  // its "+OK" is dropped
    c->pending.push_back(ask);
    const std::vector<std::string> asking_command{"ASKING"};
    queue += format_command(asking_command);
  }
  c->pending.push_back(p);
  queue += formatted;
  p->result.sent = true;
  flush(c);

  co_await p->timer.async_wait(await_ec);
  if (p->done) co_return std::move(p->result);
  if (Timer::clock_type::now() >= p->timer.expiry()) {
    // Replies come in order, so a reply that is late holds up every call behind it: give up
    // on the connection; the next call starts a new one (after the back-off).
    const std::string ms = std::to_string(settings_.timeout_ms);
    const bool set_up = c->ready && c->handshake_left == 0;
    fail(c, set_up ? "no reply within " + ms + " ms" : "connect timed out after " + ms + " ms",
         true);
    co_return std::move(p->result);
  }
  // Cancelled by the caller (e.g. the request was abandoned): the reply, when it comes, is
  // dropped by deliver(), which still keeps the pipeline in step.
  p->done = true;
  RedisResult cancelled{describe("call cancelled"), {}};
  cancelled.sent = true;
  co_return cancelled;
}

RedisClient::ConnectionPtr RedisClient::open_connection() {
  auto c = std::make_shared<Connection>(this);
  c->endpoint = endpoint_;
  // AUTH and SELECT go first in the pipeline; the caller's command queues behind them.
  auto queue_handshake = [&](const std::vector<std::string>& args) {
    auto p = std::make_shared<Pending>(ex_);
    p->handshake = true;
    c->pending.push_back(p);
    c->out += format_command(args);
    ++c->handshake_left;
  };
  if (!settings_.password.empty()) {
    if (settings_.username.empty())
      queue_handshake({"AUTH", settings_.password});
    else
      queue_handshake({"AUTH", settings_.username, settings_.password});
  }
  if (settings_.database != 0) queue_handshake({"SELECT", std::to_string(settings_.database)});

  c->connect_timer.expires_after(std::chrono::milliseconds(settings_.timeout_ms));
  c->connect_timer.async_wait([c, timeout = settings_.timeout_ms](error_code ec) {
    if (ec || c->failed || (c->ready && c->handshake_left == 0)) return;
    fail(c, "connect timed out after " + std::to_string(timeout) + " ms", true);
  });
  asio::co_spawn(ex_, connect(c, settings_), asio::detached);
  return c;
}

Task<> RedisClient::connect(ConnectionPtr c, RedisSettings s) {
  error_code ec;
  // (Not Asio's resolver: a worker's io_context has no thread for it. See core/name_lookup.)
  NameLookup names = co_await lookup_name(s.host, static_cast<double>(s.timeout_ms) / 1000);
  if (c->failed) co_return;
  if (names.addresses.empty()) {
    fail(c, "cannot resolve: " + names.error, true);
    co_return;
  }
  std::vector<Endpoint> endpoints;
  for (const auto& a : names.addresses) endpoints.emplace_back(a, s.port);
  auto [cec, ep] = co_await asio::async_connect(c->socket, endpoints, await_ec);
  if (c->failed) co_return;
  if (cec) {
    fail(c, "connect failed: " + cec.message(), true);
    co_return;
  }
  c->socket.set_option(asio::ip::tcp::no_delay(true), ec);
  if (s.tls) {
    // connect_timer bounds the handshake (it closes the socket under it): the Deadline is never
    // added to a worker's list, since a connection may outlive its worker's thread.
    Deadline unused;
    tls::Connected t =
        co_await tls::connect(c->socket, s.host, ep.address().to_string(), s.tls_verify, unused,
                              static_cast<double>(s.timeout_ms) / 1000);
    if (c->failed) co_return;
    if (!t.stream) {
      fail(c, "TLS handshake failed: " + t.error, true);
      co_return;
    }
    c->stream.use_tls(std::move(t.stream));
  }
  c->ready = true;
  if (c->handshake_left == 0) {
    c->connect_timer.cancel();
    if (c->owner) c->owner->backoff_ms_ = 0;
  }
  flush(c);
  co_await read_loop(c);
}

Task<> RedisClient::read_loop(ConnectionPtr c) {
  for (;;) {
    auto [ec, n] = co_await c->stream.read_some(asio::buffer(c->in));
    if (c->failed) co_return;
    if (ec) {
      fail(c,
           ec == asio::error::eof ? "connection closed by the server"
                                  : "read failed: " + ec.message(),
           false);
      co_return;
    }
    if (redisReaderFeed(c->reader, c->in.data(), n) != REDIS_OK) {
      fail(c, "out of memory", false);
      co_return;
    }
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(c->reader, &raw) != REDIS_OK) {
        fail(c, std::string("protocol error: ") + c->reader->errstr, false);
        co_return;
      }
      if (raw == nullptr) break;
      RedisReply reply = convert(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      deliver(c, std::move(reply));
      if (c->failed) co_return;
    }
  }
}

void RedisClient::deliver(const ConnectionPtr& c, RedisReply reply) {
  if (c->pending.empty()) {
    fail(c, "a reply nobody asked for", false);
    return;
  }
  std::shared_ptr<Pending> p = std::move(c->pending.front());
  c->pending.pop_front();
  const bool error = reply.type == RedisReply::Type::error;
  if (p->handshake) {
    if (error) {
      // e.g. "WRONGPASS invalid username-password pair", "ERR DB index is out of range"
      fail(c, "connection setup refused: " + reply.str, true);
      return;
    }
    if (--c->handshake_left == 0) {
      c->connect_timer.cancel();
      if (c->owner) c->owner->backoff_ms_ = 0;
      c->out += c->held;
      c->held.clear();
      flush(c);
    }
    return;
  }
  if (p->done) return;  // its caller gave up (cancelled)
  if (error) p->result.error = "redis " + c->endpoint + ": " + reply.str;
  p->result.reply = std::move(reply);
  p->done = true;
  p->timer.cancel();
}

void RedisClient::flush(const ConnectionPtr& c) {
  if (!c->ready || c->failed || c->writing || c->out.empty()) return;
  c->writing = true;
  c->in_flight.swap(c->out);
  // One write carries every command queued since the last one.
  // (A plain socket writes from a callback: no coroutine frame per flush.)
  if (c->stream.secure()) {
    asio::co_spawn(c->socket.get_executor(), write_tls(c), asio::detached);
    return;
  }
  asio::async_write(c->socket, asio::buffer(c->in_flight),
                    [c](error_code ec, size_t) { written(c, ec); });
}

Task<> RedisClient::write_tls(ConnectionPtr c) {
  auto [ec, n] = co_await c->stream.write_all(asio::buffer(c->in_flight));
  written(c, ec);
}

void RedisClient::written(const ConnectionPtr& c, error_code ec) {
  c->writing = false;
  c->in_flight.clear();
  if (c->failed) return;
  if (ec) {
    fail(c, "write failed: " + ec.message(), false);
    return;
  }
  flush(c);
}

void RedisClient::fail(const ConnectionPtr& c, const std::string& what, bool unreachable) {
  if (c->failed) return;
  const std::string reason = "redis " + c->endpoint + ": " + what;
  c->failed = true;
  error_code ec;
  c->socket.close(ec);
  c->connect_timer.cancel();
  auto pending = std::move(c->pending);
  c->pending.clear();
  for (auto& p : pending) {
    if (p->handshake || p->done) continue;
    p->result.error = reason;
    p->done = true;
    p->timer.cancel();
  }
  RedisClient* owner = c->owner;
  c->owner = nullptr;
  if (owner == nullptr || owner->conn_ != c) return;
  owner->conn_.reset();
  if (unreachable) {
    owner->backoff_ms_ =
        owner->backoff_ms_ == 0 ? kFirstBackoffMs : std::min(owner->backoff_ms_ * 2, kMaxBackoffMs);
    owner->retry_at_ms_ = steady_now_ms() + owner->backoff_ms_;
    owner->last_failure_ = what;
  }
}

RedisClient& RedisClients::get(Executor ex, const RedisSettings& settings) {
  auto it = clients_.find(settings);
  if (it == clients_.end()) {
    drop_unused(steady_now_ms());
    it = clients_.emplace(settings, std::make_unique<RedisClient>(ex, settings)).first;
  }
  return *it->second;
}

void RedisClients::drop_unused(int64_t now_ms) {
  std::erase_if(clients_,
                [&](const auto& kv) { return kv.second->unused_since(now_ms - kUnusedMs); });
}

RedisClients& RedisClients::of_this_thread() {
  thread_local RedisClients clients;
  return clients;
}

RedisScriptRunner::Integers integers_of(const RedisResult& r, size_t n,
                                        const std::string& endpoint) {
  RedisScriptRunner::Integers out;
  out.sent = r.sent;
  if (!r.ok()) {
    out.error = r.error;
    return out;
  }
  const auto& e = r.reply.elements;
  bool shaped = r.reply.type == RedisReply::Type::array && e.size() == n;
  for (size_t i = 0; shaped && i < n; ++i) shaped = e[i].type == RedisReply::Type::integer;
  if (!shaped) {
    out.error = "redis " + endpoint + ": unexpected script reply";
    return out;
  }
  for (const auto& v : e) out.values.push_back(v.integer);
  return out;
}

Task<RedisClient::Integers> RedisClient::eval_integers(const RedisScript& script, std::string key,
                                                       std::vector<std::string> args, size_t n) {
  // (Built outside the co_await: GCC 12 rejects braced lists in a coroutine's call.)
  std::vector<std::string> keys(1, std::move(key));
  RedisResult r = co_await eval(script, std::move(keys), std::move(args));
  co_return integers_of(r, n, endpoint_);
}

void warn_redis_failure(std::string_view plugin, const std::string& error, int64_t& last_ms) {
  int64_t now = steady_now_ms();
  if (now - last_ms < 1000) return;
  last_ms = now;
  log::warn(std::string(plugin) + ": " + error);
}

}  // namespace portico::limit
