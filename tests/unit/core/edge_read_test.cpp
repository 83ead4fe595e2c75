// async_read_edge skips the recv() Asio would try before waiting for epoll after a short read.
// What must hold for that to be safe: bytes arriving later still wake the read, and a FIN or a
// full buffer behind a short read is still seen at once (never a read waiting for an event
// that will not come).
#include "core/edge_read.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

using namespace portico;
using namespace std::chrono_literals;

namespace {

struct Pair {
  asio::io_context io{1};
  Socket ours{io.get_executor()};
  Socket peer{io.get_executor()};
  Pair() {
    Acceptor acceptor(io.get_executor(), Endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer.connect(acceptor.local_endpoint());
    acceptor.accept(ours);
    ours.non_blocking(true);
  }
  void send(const std::string& s) { asio::write(peer, asio::buffer(s)); }
};

struct Result {
  std::optional<error_code> ec;
  std::string bytes;
};

void start_read(Pair& p, char* buf, size_t size, Result& r) {
  async_read_edge(p.ours, asio::buffer(buf, size), [&r, buf](error_code ec, size_t n) {
    r.ec = ec;
    r.bytes.assign(buf, n);
  });
}

// Starts a read and runs the loop for `d`: with nothing to read yet, the read stays queued.
void queue_read(Pair& p, char* buf, size_t size, Result& r, std::chrono::milliseconds d) {
  start_read(p, buf, size, r);
  p.io.restart();
  p.io.run_for(d);
}

// Runs the loop until `r` completes or two seconds pass.
bool run_until(Pair& p, const Result& r) {
  auto until = std::chrono::steady_clock::now() + 2s;
  while (!r.ec && std::chrono::steady_clock::now() < until) {
    p.io.restart();
    p.io.run_for(10ms);
  }
  return r.ec.has_value();
}

TEST(EdgeRead, BytesArrivingAfterAShortReadWakeTheNextRead) {
  Pair p;
  char buf[16];
  p.send("ab");
  Result first;
  start_read(p, buf, sizeof buf, first);
  ASSERT_TRUE(run_until(p, first));
  EXPECT_FALSE(*first.ec);
  EXPECT_EQ(first.bytes, "ab");

  Result second;
  queue_read(p, buf, sizeof buf, second, 50ms);
  EXPECT_FALSE(second.ec) << "nothing was sent yet";
  p.send("cd");
  ASSERT_TRUE(run_until(p, second)) << "new bytes must wake a read queued after a short one";
  EXPECT_EQ(second.bytes, "cd");
}

TEST(EdgeRead, AFinQueuedBehindDataIsSeenByTheNextRead) {
  Pair p;
  char buf[16];
  p.send("last words");
  p.peer.shutdown(Socket::shutdown_send);
  std::this_thread::sleep_for(20ms);  // data and FIN both queued before the first read
  Result first;
  start_read(p, buf, sizeof buf, first);
  ASSERT_TRUE(run_until(p, first));
  EXPECT_EQ(first.bytes, "last words");
  Result second;
  start_read(p, buf, sizeof buf, second);
  ASSERT_TRUE(run_until(p, second)) << "the FIN must not wait for another epoll event";
  EXPECT_EQ(*second.ec, asio::error::eof);
}

TEST(EdgeRead, AFinReportedWithTheDataIsSeenByTheNextRead) {
  // The read is queued first, so the bytes and the FIN reach it in one epoll report.
  Pair p;
  char buf[16];
  Result first;
  queue_read(p, buf, sizeof buf, first, 20ms);
  ASSERT_FALSE(first.ec);
  p.send("bye");
  p.peer.shutdown(Socket::shutdown_send);
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(run_until(p, first));
  EXPECT_EQ(first.bytes, "bye");
  Result second;
  start_read(p, buf, sizeof buf, second);
  ASSERT_TRUE(run_until(p, second));
  EXPECT_EQ(*second.ec, asio::error::eof);
}

TEST(EdgeRead, AFullBufferLeavesTheRestToTheNextRead) {
  Pair p;
  char buf[4];
  p.send("abcdefgh");
  std::this_thread::sleep_for(20ms);
  std::string got;
  for (int i = 0; i < 2; ++i) {
    Result r;
    start_read(p, buf, sizeof buf, r);
    ASSERT_TRUE(run_until(p, r));
    got += r.bytes;
  }
  EXPECT_EQ(got, "abcdefgh");
}

TEST(EdgeRead, CancelAndCloseAbortAQueuedRead) {
  Pair p;
  char buf[16];
  Result r;
  queue_read(p, buf, sizeof buf, r, 10ms);
  ASSERT_FALSE(r.ec);
  p.ours.cancel();
  ASSERT_TRUE(run_until(p, r));
  EXPECT_EQ(*r.ec, asio::error::operation_aborted);

  Result closed;
  start_read(p, buf, sizeof buf, closed);
  p.ours.close();
  ASSERT_TRUE(run_until(p, closed));
  EXPECT_EQ(*closed.ec, asio::error::operation_aborted);

  Result on_closed;  // a read on a closed socket completes with Asio's error, not a crash
  start_read(p, buf, sizeof buf, on_closed);
  ASSERT_TRUE(run_until(p, on_closed));
  EXPECT_TRUE(*on_closed.ec);
}

TEST(EdgeRead, AReadStillQueuedWhenTheLoopIsDestroyedIsDroppedUnrun) {
  bool ran = false;
  {
    Pair p;
    char buf[16];
    async_read_edge(p.ours, asio::buffer(buf), [&ran](error_code, size_t) { ran = true; });
    p.io.run_for(10ms);
  }
  EXPECT_FALSE(ran);
}

TEST(EdgeRead, WorksAsACoroutineAwait) {
  Pair p;
  std::string got;
  error_code second_ec;
  asio::co_spawn(
      p.io,
      [&]() -> Task<> {
        char buf[16];
        auto [ec, n] = co_await async_read_edge(p.ours, asio::buffer(buf), await_ec);
        got.assign(buf, n);
        auto [ec2, n2] = co_await async_read_edge(p.ours, asio::buffer(buf), await_ec);
        second_ec = ec2;
      },
      asio::detached);
  p.send("hi");
  std::this_thread::sleep_for(10ms);
  p.peer.shutdown(Socket::shutdown_send);
  p.io.run_for(2s);
  EXPECT_EQ(got, "hi");
  EXPECT_EQ(second_ec, asio::error::eof);
}

}  // namespace
