#include "metrics/stream_metrics.hpp"

namespace portico::metrics {

std::string_view to_string(StreamDirection d) {
  return d == StreamDirection::ToUpstream ? "to_upstream" : "to_client";
}

std::string_view to_string(StreamClose reason) {
  static constexpr std::array<std::string_view, kStreamCloseReasons> kNames = {
      "client_closed",  "upstream_closed", "client_error",     "upstream_error",
      "idle_timeout",   "stalled",         "bad_start_marker", "bad_end_marker",
      "bad_length",     "oversize",        "truncated",        "bad_upstream_frame",
      "connect_failed", "no_route",        "proxy_protocol",   "shutdown",
      "ip_refused",     "conn_limited",    "tls_handshake",    "upstream_stalled"};
  return kNames[static_cast<size_t>(reason)];
}

std::string_view to_string(StreamRefusal reason) {
  static constexpr std::array<std::string_view, kStreamRefusals> kNames = {
      "rate_limit_connection", "rate_limit_user", "command_denied"};
  return kNames[static_cast<size_t>(reason)];
}

StreamCounters::Slot& StreamCounters::slot_for(uint32_t cmd, bool named) {
  if (!named) return other_;
  // Open addressing; only the worker inserts, so a plain probe is enough.
  size_t i = (cmd * 2654435761u) % kCmdSlots;
  for (size_t probe = 0; probe < kCmdSlots; ++probe, i = (i + 1) % kCmdSlots) {
    int64_t owner = slots_[i].cmd.load(std::memory_order_relaxed);
    if (owner == cmd) return slots_[i];
    if (owner == -1) {
      slots_[i].cmd.store(cmd, std::memory_order_release);
      return slots_[i];
    }
  }
  return other_;
}

void StreamCounters::frame(StreamDirection d, uint32_t cmd, bool named, size_t size) {
  Slot& s = slot_for(cmd, named);
  add(s.frames[static_cast<size_t>(d)], 1);
  add(s.bytes[static_cast<size_t>(d)], size);
}

void StreamCounters::collect(Totals& into) const {
  auto get = [](const Counter& c) { return c.load(std::memory_order_relaxed); };
  into.opened += get(opened_);
  into.closed += get(closed_);
  into.heartbeats += get(heartbeats_);
  into.connect_failures += get(connect_failures_);
  for (size_t i = 0; i < kStreamCloseReasons; ++i) into.closes[i] += get(closes_[i]);
  for (size_t i = 0; i < kStreamRefusals; ++i)
    for (size_t k = 0; k < 2; ++k) into.refusals[i][k] += get(refusals_[i][k]);
  for (size_t d = 0; d < kStreamDirections; ++d) into.bytes[d] += get(bytes_[d]);
  auto add_slot = [&](int64_t key, const Slot& s) {
    CmdTotals& t = into.by_cmd[key];
    for (size_t d = 0; d < kStreamDirections; ++d) {
      t.frames[d] += get(s.frames[d]);
      t.bytes[d] += get(s.bytes[d]);
    }
  };
  for (const Slot& s : slots_) {
    int64_t cmd = s.cmd.load(std::memory_order_acquire);
    if (cmd >= 0) add_slot(cmd, s);
  }
  add_slot(-1, other_);
}

}  // namespace portico::metrics
