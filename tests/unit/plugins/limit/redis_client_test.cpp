#include "plugins/limit/redis_client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <chrono>
#include <set>

#include "core/deadline.hpp"
#include "redis_test_server.hpp"

using namespace portico;
using namespace portico::limit;
using portico::testing::RedisTestServer;
using portico::testing::run;

namespace {

using Args = std::vector<std::string>;
using Clock = std::chrono::steady_clock;

int64_t ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

class RedisClientTest : public ::testing::Test {
 protected:
  RedisSettings settings(int64_t database = 0) {
    RedisSettings s;
    s.host = "127.0.0.1";
    s.port = server_.port();
    s.database = database;
    s.timeout_ms = 500;
    return s;
  }
  RedisResult call(RedisClient& client, Args args) {
    return run(io_, client.command(std::move(args)));
  }

  RedisTestServer server_;
  asio::io_context io_{1};
};

// A server that accepts connections (the kernel does, from its backlog) and never answers.
class SilentServer {
 public:
  explicit SilentServer(asio::io_context& io) : acceptor_(io.get_executor()) {
    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.bind(Endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen(16);
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  Acceptor acceptor_;
};

}  // namespace

TEST_F(RedisClientTest, RunsCommandsAndReadsEveryReplyType) {
  RedisClient client(io_.get_executor(), settings());
  RedisResult r = call(client, {"SET", "k", "v"});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.reply.type, RedisReply::Type::status);
  EXPECT_EQ(r.reply.str, "OK");

  r = call(client, {"GET", "k"});
  EXPECT_EQ(r.reply.type, RedisReply::Type::string);
  EXPECT_EQ(r.reply.str, "v");

  r = call(client, {"GET", "missing"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.reply.type, RedisReply::Type::nil);

  r = call(client, {"INCRBY", "n", "41"});
  EXPECT_EQ(r.reply.type, RedisReply::Type::integer);
  EXPECT_EQ(r.reply.integer, 41);

  r = call(client, {"MGET", "k", "missing", "n"});
  ASSERT_EQ(r.reply.type, RedisReply::Type::array);
  ASSERT_EQ(r.reply.elements.size(), 3u);
  EXPECT_EQ(r.reply.elements[0].str, "v");
  EXPECT_EQ(r.reply.elements[1].type, RedisReply::Type::nil);
  EXPECT_EQ(r.reply.elements[2].str, "41");
}

TEST_F(RedisClientTest, ErrorRepliesAreValuesAndTheConnectionStaysUsable) {
  RedisClient client(io_.get_executor(), settings());
  ASSERT_TRUE(call(client, {"RPUSH", "list", "a"}).ok());
  RedisResult r = call(client, {"INCR", "list"});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.reply.type, RedisReply::Type::error);
  EXPECT_EQ(r.error.rfind("redis 127.0.0.1:" + std::to_string(server_.port()) + ": WRONGTYPE", 0),
            0u)
      << r.error;
  r = call(client, {"LLEN", "list"});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.reply.integer, 1);
}

TEST_F(RedisClientTest, ArgumentsAreBinarySafe) {
  RedisClient client(io_.get_executor(), settings());
  const std::string value("a\r\nb\0c $3\r\n", 12);
  ASSERT_TRUE(call(client, {"SET", "bin key", value}).ok());
  RedisResult r = call(client, {"GET", "bin key"});
  EXPECT_EQ(r.reply.str, value);
}

TEST_F(RedisClientTest, OverlappingCallsArePipelinedAndAnsweredInOrder) {
  RedisClient client(io_.get_executor(), settings());
  std::vector<int64_t> replies;
  int done = 0;
  constexpr int kCalls = 300;
  for (int i = 0; i < kCalls; ++i) {
    asio::co_spawn(
        io_.get_executor(),
        [&]() -> Task<> {
          Args incr{"INCR", "counter"};  // GCC 12: no braced list in a co_await
          RedisResult r = co_await client.command(std::move(incr));
          replies.push_back(r.ok() ? r.reply.integer : -1);
          if (++done == kCalls) io_.stop();
        },
        asio::detached);
  }
  io_.restart();
  io_.run();
  ASSERT_EQ(replies.size(), static_cast<size_t>(kCalls));
  // Every call got its own reply: the counter values 1..300, each once.
  EXPECT_EQ(std::set<int64_t>(replies.begin(), replies.end()).size(), static_cast<size_t>(kCalls));
  EXPECT_EQ(*std::min_element(replies.begin(), replies.end()), 1);
  EXPECT_EQ(*std::max_element(replies.begin(), replies.end()), kCalls);
}

TEST_F(RedisClientTest, CallsMadeWhileConnectingWaitForSelectThenAllRun) {
  RedisClient client(io_.get_executor(), settings(5));
  int done = 0;
  int failed = 0;
  constexpr int kCalls = 50;
  for (int i = 0; i < kCalls; ++i) {
    asio::co_spawn(
        io_.get_executor(),
        [&]() -> Task<> {
          Args incr{"INCR", "in5"};
          RedisResult r = co_await client.command(std::move(incr));
          if (!r.ok()) ++failed;
          if (++done == kCalls) io_.stop();
        },
        asio::detached);
  }
  io_.restart();
  io_.run();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(call(client, {"GET", "in5"}).reply.str, std::to_string(kCalls));
  RedisClient db0(io_.get_executor(), settings(0));
  EXPECT_EQ(call(db0, {"GET", "in5"}).reply.type, RedisReply::Type::nil);
}

TEST_F(RedisClientTest, SelectsTheConfiguredDatabase) {
  RedisClient db0(io_.get_executor(), settings(0));
  RedisClient db3(io_.get_executor(), settings(3));
  ASSERT_TRUE(call(db0, {"SET", "k", "zero"}).ok());
  RedisResult r = call(db3, {"GET", "k"});
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.reply.type, RedisReply::Type::nil);
  ASSERT_TRUE(call(db3, {"SET", "k", "three"}).ok());
  EXPECT_EQ(call(db0, {"GET", "k"}).reply.str, "zero");
  EXPECT_EQ(call(db3, {"GET", "k"}).reply.str, "three");
}

TEST_F(RedisClientTest, AnOutOfRangeDatabaseIsAClearErrorAndNothingRunsElsewhere) {
  RedisClient client(io_.get_executor(), settings(100000));
  RedisResult r = call(client, {"SET", "k", "written"});
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("connection setup refused: ERR DB index is out of range"),
            std::string::npos)
      << r.error;
  // The SET waited for SELECT's answer: it was never sent, so database 0 is untouched.
  RedisClient db0(io_.get_executor(), settings(0));
  EXPECT_EQ(call(db0, {"GET", "k"}).reply.type, RedisReply::Type::nil);
}

TEST_F(RedisClientTest, EvalShaFallsBackToEvalAfterScriptFlush) {
  RedisClient client(io_.get_executor(), settings());
  RedisClient admin(io_.get_executor(), settings());
  static const RedisScript script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  EXPECT_EQ(script.sha1().size(), 40u);
  auto eval = [&](std::string by) {
    std::vector<std::string> keys{"scripted"};
    std::vector<std::string> args{std::move(by)};
    return run(io_, client.eval(script, std::move(keys), std::move(args)));
  };
  RedisResult r = eval("2");  // the first EVALSHA meets NOSCRIPT too
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.reply.integer, 2);
  r = call(admin, {"SCRIPT", "EXISTS", script.sha1()});
  ASSERT_EQ(r.reply.elements.size(), 1u);
  EXPECT_EQ(r.reply.elements[0].integer, 1);  // EVAL cached it

  ASSERT_TRUE(call(admin, {"SCRIPT", "FLUSH"}).ok());
  r = eval("3");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.reply.integer, 5);  // ran exactly once more
  EXPECT_EQ(call(admin, {"GET", "scripted"}).reply.str, "5");
}

TEST_F(RedisClientTest, ScriptErrorsAreValues) {
  RedisClient client(io_.get_executor(), settings());
  static const RedisScript broken("return redis.call('NOSUCHCOMMAND')");
  RedisResult r = run(io_, client.eval(broken, {}, {}));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.reply.type, RedisReply::Type::error);
  EXPECT_TRUE(call(client, {"PING"}).ok());
}

TEST_F(RedisClientTest, StoppedServerGivesQuickErrorsAndTheClientRecoversByItself) {
  RedisClient client(io_.get_executor(), settings());
  ASSERT_TRUE(call(client, {"SET", "k", "v"}).ok());
  server_.stop();

  auto start = Clock::now();
  RedisResult r = call(client, {"GET", "k"});
  EXPECT_FALSE(r.ok());
  EXPECT_LE(ms_since(start), 600) << "no error beyond the 500 ms timeout";
  // Now the connect is refused, then the back-off answers at once without a connect.
  r = call(client, {"GET", "k"});
  EXPECT_FALSE(r.ok());
  start = Clock::now();
  for (int i = 0; i < 100; ++i) {
    r = call(client, {"GET", "k"});
    EXPECT_FALSE(r.ok());
  }
  EXPECT_LT(ms_since(start), 100) << "a dead Redis costs nothing per call during the back-off";
  EXPECT_NE(r.error.find("connect failed"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("next attempt in"), std::string::npos) << r.error;

  server_.start();  // same port, empty (no persistence)
  start = Clock::now();
  bool recovered = false;
  while (!recovered && ms_since(start) < 5000) {
    r = call(client, {"SET", "k", "again"});
    recovered = r.ok();
    if (!recovered) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(recovered) << r.error;
  EXPECT_LE(ms_since(start), RedisClient::kMaxBackoffMs + 500);
  EXPECT_EQ(call(client, {"GET", "k"}).reply.str, "again");
}

TEST_F(RedisClientTest, ASilentServerTimesOutAfterTheTimeout) {
  SilentServer silent(io_);
  RedisSettings s = settings();
  s.port = silent.port();
  s.timeout_ms = 200;
  RedisClient client(io_.get_executor(), s);
  auto start = Clock::now();
  RedisResult r = call(client, {"PING"});
  const int64_t took = ms_since(start);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("no reply within 200 ms"), std::string::npos) << r.error;
  EXPECT_GE(took, 190);
  EXPECT_LE(took, 400);
  // A timeout starts the back-off too: the next call fails at once.
  start = Clock::now();
  EXPECT_FALSE(call(client, {"PING"}).ok());
  EXPECT_LT(ms_since(start), 50);
}

TEST_F(RedisClientTest, ASilentServerDuringAuthIsAConnectTimeout) {
  SilentServer silent(io_);
  RedisSettings s = settings();
  s.port = silent.port();
  s.password = "secret";
  s.timeout_ms = 200;
  RedisClient client(io_.get_executor(), s);
  RedisResult r = call(client, {"PING"});
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("connect timed out after 200 ms"), std::string::npos) << r.error;
}

TEST_F(RedisClientTest, RefusedConnectionIsAnErrorValue) {
  server_.stop();
  RedisClient client(io_.get_executor(), settings());
  RedisResult r = call(client, {"PING"});
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("connect failed"), std::string::npos) << r.error;
  EXPECT_FALSE(client.connected());
}

TEST_F(RedisClientTest, ResolvesHostNames) {
  RedisSettings s = settings();
  s.host = "localhost";
  RedisClient client(io_.get_executor(), s);
  RedisResult r = call(client, {"PING"});
  // localhost may resolve to ::1 first; the client tries every address.
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.reply.str, "PONG");
}

TEST(RedisClientAuth, PasswordIsSentAndAWrongOneIsAClearError) {
  RedisTestServer server("s3cret");
  asio::io_context io{1};
  RedisSettings s;
  s.port = server.port();
  s.timeout_ms = 500;

  RedisClient anonymous(io.get_executor(), s);
  RedisResult r = run(io, anonymous.command({"PING"}));
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("NOAUTH"), std::string::npos) << r.error;

  s.password = "wrong";
  RedisClient wrong(io.get_executor(), s);
  r = run(io, wrong.command({"PING"}));
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("connection setup refused: WRONGPASS"), std::string::npos) << r.error;

  s.password = "s3cret";
  RedisClient right(io.get_executor(), s);
  r = run(io, right.command({"PING"}));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.reply.str, "PONG");

  // An ACL user (Redis 6+): AUTH username password.
  ASSERT_TRUE(
      run(io, right.command({"ACL", "SETUSER", "limiter", "on", ">pw2", "~portico:*", "+@all"}))
          .ok());
  s.username = "limiter";
  s.password = "pw2";
  s.database = 2;
  RedisClient user(io.get_executor(), s);
  r = run(io, user.command({"SET", "portico:x", "1"}));
  ASSERT_TRUE(r.ok()) << r.error;
  r = run(io, user.command({"SET", "other", "1"}));
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("NOPERM"), std::string::npos) << r.error;
}

TEST(RedisClients, OneClientPerDistinctSettings) {
  asio::io_context io{1};
  RedisClients clients;
  RedisSettings a;
  a.port = 7001;
  RedisSettings b = a;
  b.database = 1;
  RedisClient& first = clients.get(io.get_executor(), a);
  EXPECT_EQ(&clients.get(io.get_executor(), a), &first);
  EXPECT_NE(&clients.get(io.get_executor(), b), &first);
  EXPECT_EQ(clients.size(), 2u);
}

Task<> ping(RedisClient& client, bool& done) {
  std::vector<std::string> args{"PING"};
  co_await client.command(std::move(args));
  done = true;
}

// After config changes, clients of settings no call uses any more go (with their connections);
// one a call is waiting on stays.
TEST(RedisClients, DropsClientsNoCallUsedForAMinute) {
  asio::io_context io{1};
  RedisClients clients;
  RedisSettings a, b;
  a.port = 7001;
  b.port = 7002;
  clients.get(io.get_executor(), a);
  RedisClient& busy = clients.get(io.get_executor(), b);
  SilentServer silent(io);  // accepts and never answers: the call waits (until its timeout)
  RedisSettings s = b;
  s.port = silent.port();
  s.timeout_ms = 500;
  RedisClient& waiting = clients.get(io.get_executor(), s);
  EXPECT_NE(&busy, &waiting);
  bool done = false;
  asio::co_spawn(io, ping(waiting, done), asio::detached);
  io.run_for(std::chrono::milliseconds(50));
  ASSERT_FALSE(done);
  clients.drop_unused(portico::steady_now_ms() + RedisClients::kUnusedMs + 1);
  EXPECT_EQ(clients.size(), 1u);  // the one with a call in flight
  io.run();                       // the call times out
  EXPECT_TRUE(done);
  clients.drop_unused(portico::steady_now_ms() + RedisClients::kUnusedMs + 1);
  EXPECT_EQ(clients.size(), 0u);
}
