// A pipelined Redis client for one worker thread: Asio sockets on the worker's executor, hiredis
// only to encode commands and parse replies. Errors are values; a broken connection is replaced
// at the next call, after a short back-off when Redis could not be reached.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/asio.hpp"

namespace portico::limit {

struct RedisSettings {
  std::string host = "127.0.0.1";  // an IP literal, or a name (core/name_lookup)
  uint16_t port = 6379;
  std::string username;  // empty: `AUTH <password>` (the default user)
  std::string password;  // empty: no AUTH
  int64_t database = 0;  // SELECTed after connect when not 0
  // Milliseconds for connect + AUTH + SELECT, and for each command's reply (APISIX's
  // redis_timeout).
  int64_t timeout_ms = 1000;
  bool tls = false;         // redis_ssl: TLS over the connection (SNI: host, unless an address)
  bool tls_verify = false;  // redis_ssl_verify: the certificate must chain to a trusted CA
                            // (the system's, or SSL_CERT_FILE/SSL_CERT_DIR) and name the host

  bool operator==(const RedisSettings&) const = default;
  auto operator<=>(const RedisSettings&) const = default;
  std::string endpoint() const;  // "host:port", for messages
};

struct RedisReply {
  enum class Type { nil, integer, string, status, error, array };
  Type type = Type::nil;
  int64_t integer = 0;
  std::string str;  // string, status and error replies
  std::vector<RedisReply> elements;
};

struct RedisResult {
  // Empty on success. Otherwise why: unreachable, timeout, AUTH refused, connection lost, or an
  // error reply (then reply.type is error too). Always starts with "redis host:port: ".
  std::string error;
  RedisReply reply;
  // The command was queued on a connection, so Redis may have run it even when `error` says
  // the reply was lost; false: it never left the client (back-off, a slot not served).
  bool sent = false;
  bool ok() const { return error.empty(); }
};

// A warning line for a Redis failure of `plugin`, at most one a second per thread and plugin
// (Redis down fails every request: one line each would flood the log). `last_ms` is the
// caller's own (thread_local) clock of its last line.
void warn_redis_failure(std::string_view plugin, const std::string& error, int64_t& last_ms);

// A Lua script and its SHA1, for EVALSHA. Make these once (static), not per request.
class RedisScript {
 public:
  explicit RedisScript(std::string body);
  const std::string& body() const { return body_; }
  const std::string& sha1() const { return sha1_; }  // 40 lowercase hex digits

 private:
  std::string body_;
  std::string sha1_;
};

// Where the limits' one-key scripts run: one Redis (RedisClient) or a Redis Cluster
// (RedisCluster, redis_cluster.hpp).
class RedisScriptRunner {
 public:
  struct Integers {
    std::string error;
    std::vector<int64_t> values;
    bool sent = false;  // as RedisResult::sent
  };
  // The script on `key` answering `n` integers: them, or why not in `error`.
  virtual Task<Integers> eval_integers(const RedisScript& script, std::string key,
                                       std::vector<std::string> args, size_t n) = 0;

 protected:
  ~RedisScriptRunner() = default;
};

// A script's reply as `n` integers, or "redis <endpoint>: unexpected script reply".
RedisScriptRunner::Integers integers_of(const RedisResult& r, size_t n,
                                        const std::string& endpoint);

// One connection, used by every coroutine of one worker. Calls may overlap: their commands are
// pipelined on the connection (Redis answers in order), so a worker waits one round trip per
// batch, not per request. Calls must come from the executor's thread; the client must outlive
// its calls (keep it for the worker's lifetime).
class RedisClient final : public RedisScriptRunner {
 public:
  // Back-off after a failed connect or a timeout: calls fail at once with the last error
  // until it expires; it doubles from the first to the last value and resets on success.
  static constexpr int64_t kFirstBackoffMs = 100;
  static constexpr int64_t kMaxBackoffMs = 1000;

  RedisClient(Executor ex, RedisSettings settings);
  ~RedisClient();  // closes the connection
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one command ({"INCR", "k"}) and waits for its reply, at most settings.timeout_ms
  // (plus the connect when there is no connection). Never throws for Redis or network errors.
  // (GCC 12 rejects `co_await c.command({"A", "b"})`: build the vector first.)
  Task<RedisResult> command(std::vector<std::string> args);
  // EVALSHA, and EVAL when Redis does not know the script (NOSCRIPT: a restart or SCRIPT FLUSH).
  // `script` must outlive the call. `asking`: each is sent right behind an ASKING (a cluster
  // slot being migrated to this node).
  Task<RedisResult> eval(const RedisScript& script, std::vector<std::string> keys,
                         std::vector<std::string> args, bool asking = false);
  Task<Integers> eval_integers(const RedisScript& script, std::string key,
                               std::vector<std::string> args, size_t n) override;

  const RedisSettings& settings() const { return settings_; }
  // A connection exists (ready or being set up).
  bool connected() const { return conn_ != nullptr; }
  // No call waits on it, and none started since `since_ms` (steady clock): it may be dropped.
  bool unused_since(int64_t since_ms) const { return in_flight_ == 0 && last_used_ms_ < since_ms; }

 private:
  struct Pending;
  struct Connection;
  using ConnectionPtr = std::shared_ptr<Connection>;

  // `asking`: an ASKING goes right before the command, its reply dropped.
  Task<RedisResult> send(std::string formatted, bool asking = false);
  ConnectionPtr open_connection();
  // Static: they may outlive the client (they end once the connection fails).
  static Task<> connect(ConnectionPtr c, RedisSettings s);
  static Task<> read_loop(ConnectionPtr c);
  static void flush(const ConnectionPtr& c);
  static Task<> write_tls(ConnectionPtr c);
  static void written(const ConnectionPtr& c, error_code ec);
  static void deliver(const ConnectionPtr& c, RedisReply reply);
  // Ends the connection: every waiting call gets "redis host:port: <what>". `unreachable`: a
  // connect failure, refused AUTH/SELECT or a timeout, which starts (or extends) the back-off.
  static void fail(const ConnectionPtr& c, const std::string& what, bool unreachable);
  std::string describe(const std::string& what) const;

  Executor ex_;
  RedisSettings settings_;
  std::string endpoint_;
  ConnectionPtr conn_;
  int in_flight_ = 0;        // calls waiting for their reply
  int64_t last_used_ms_;     // when the last call started (or the client was made)
  int64_t retry_at_ms_ = 0;  // steady_now_ms() before which no connect is tried
  int64_t backoff_ms_ = 0;
  std::string last_failure_;
  // False once the client is gone: calls whose frames are destroyed later (a worker stopping
  // with calls suspended) must not touch it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A worker's clients, one per distinct RedisSettings. Not thread-safe: one per worker thread,
// destroyed before that worker's io_context (a thread_local in a worker thread qualifies: the
// thread ends before Worker destroys its io_context).
class RedisClients {
 public:
  // Settings seen for the first time (a config change) also drop the clients no call has used
  // for kUnusedMs: those of settings no config names any more, and their connections.
  RedisClient& get(Executor ex, const RedisSettings& settings);
  size_t size() const { return clients_.size(); }
  void drop_unused(int64_t now_ms);
  static constexpr int64_t kUnusedMs = 60'000;

  // The calling thread's registry (a thread_local). Only for threads whose io_context outlives
  // them, i.e. worker threads.
  static RedisClients& of_this_thread();

 private:
  std::map<RedisSettings, std::unique_ptr<RedisClient>> clients_;
};

}  // namespace portico::limit
