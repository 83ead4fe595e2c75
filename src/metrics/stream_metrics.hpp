// Counters of one worker's stream (L4) connections: written by that worker only (relaxed loads
// and stores, no lock, no read-modify-write), summed by the control thread at scrape time. The
// cmd label is bounded: only commands a route names in its config get their own label (at most
// kCmdSlots per worker); every other command counts as "other".
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string_view>

namespace portico::metrics {

enum class StreamDirection : uint8_t { ToUpstream, ToClient };
inline constexpr size_t kStreamDirections = 2;
std::string_view to_string(StreamDirection d);

// Why a stream connection ended.
enum class StreamClose : uint8_t {
  ClientClosed,    // the client closed (after its half-close was relayed)
  UpstreamClosed,  // an upstream connection closed
  ClientError,     // read/write error on the client socket
  UpstreamError,   // read/write error on an upstream socket
  IdleTimeout,     // no byte from the client within idle_timeout
  Stalled,         // a frame stayed incomplete past stall_timeout
  BadStartMarker,  // TLV decode errors, client side (TLV.md "Bad input")
  BadEndMarker,
  BadLength,
  Oversize,
  Truncated,
  BadUpstreamFrame,  // an upstream sent bytes that are not a valid frame
  ConnectFailed,     // no upstream node accepted the connection (after retries)
  NoRoute,           // no stream route matches the connection
  ProxyHeader,       // PROXY protocol listener: missing, untrusted or invalid header
  Shutdown,          // the worker stopped
  IpRefused,         // the route's ip-restriction refused the client
  ConnLimited,       // the route's limit-conn: past conn + burst connections for the key
  TlsHandshake,      // ssl listener: the TLS handshake failed (tls handshake counters say why)
  UpstreamStalled,   // an upstream left a frame incomplete past stall_timeout
};
inline constexpr size_t kStreamCloseReasons = 20;
std::string_view to_string(StreamClose reason);

// Frames answered or dropped at the edge instead of being forwarded.
enum class StreamRefusal : uint8_t { RateLimitConnection, RateLimitUser, CommandDenied };
inline constexpr size_t kStreamRefusals = 3;
std::string_view to_string(StreamRefusal reason);

class StreamCounters {
 public:
  static constexpr size_t kCmdSlots = 256;

  // Worker thread only.
  void opened() { add(opened_, 1); }
  void closed(StreamClose why) {
    add(closed_, 1);
    add(closes_[static_cast<size_t>(why)], 1);
  }
  void refused(StreamRefusal why, bool replied) {
    add(refusals_[static_cast<size_t>(why)][replied ? 1 : 0], 1);
  }
  void heartbeat_answered() { add(heartbeats_, 1); }
  void connect_failed() { add(connect_failures_, 1); }
  void bytes(StreamDirection d, size_t n) { add(bytes_[static_cast<size_t>(d)], n); }
  // `named`: the route names this cmd in its config (it may get a label of its own).
  void frame(StreamDirection d, uint32_t cmd, bool named, size_t size);

  struct CmdTotals {
    uint64_t frames[kStreamDirections] = {0, 0};
    uint64_t bytes[kStreamDirections] = {0, 0};
  };
  struct Totals {
    uint64_t opened = 0, closed = 0, heartbeats = 0, connect_failures = 0;
    std::array<uint64_t, kStreamCloseReasons> closes{};
    std::array<std::array<uint64_t, 2>, kStreamRefusals> refusals{};  // [reason][replied]
    std::array<uint64_t, kStreamDirections> bytes{};
    std::map<int64_t, CmdTotals> by_cmd;  // -1: "other"
  };
  // Any thread: adds this worker's counts to `into`.
  void collect(Totals& into) const;

 private:
  using Counter = std::atomic<uint64_t>;
  static void add(Counter& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  struct Slot {
    std::atomic<int64_t> cmd{-1};  // -1: free; set once, by the worker
    Counter frames[kStreamDirections];
    Counter bytes[kStreamDirections];
  };
  Slot& slot_for(uint32_t cmd, bool named);

  Counter opened_{0}, closed_{0}, heartbeats_{0}, connect_failures_{0};
  std::array<Counter, kStreamCloseReasons> closes_{};
  std::array<std::array<Counter, 2>, kStreamRefusals> refusals_{};
  std::array<Counter, kStreamDirections> bytes_{};
  std::array<Slot, kCmdSlots> slots_{};
  Slot other_;
};

}  // namespace portico::metrics
