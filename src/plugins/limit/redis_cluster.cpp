#include "plugins/limit/redis_cluster.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "core/deadline.hpp"

namespace portico::limit {
namespace {

// CRC-16/XMODEM: polynomial 0x1021, initial value 0, no reflection (Redis's crc16.c).
constexpr std::array<uint16_t, 256> kCrcTable = [] {
  std::array<uint16_t, 256> t{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit)
      crc = static_cast<uint16_t>(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    t[static_cast<size_t>(i)] = crc;
  }
  return t;
}();

uint16_t crc16(std::string_view data) {
  uint16_t crc = 0;
  for (unsigned char c : data)
    crc = static_cast<uint16_t>((crc << 8) ^ kCrcTable[((crc >> 8) ^ c) & 0xff]);
  return crc;
}

// Digits of a port, 1..65535.
bool parse_port(std::string_view text, uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value < 1 || value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

uint16_t redis_key_slot(std::string_view key) {
  size_t open = key.find('{');
  if (open != std::string_view::npos) {
    size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  return crc16(key) & 0x3fff;
}

bool split_host_port(std::string_view text, std::string& host, uint16_t& port) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= text.size()) return false;
  std::string_view h = text.substr(0, colon), p = text.substr(colon + 1);
  if (h.starts_with('[')) {
    if (!h.ends_with(']') || h.size() < 3) return false;
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string_view::npos) {
    return false;  // an IPv6 address must be bracketed
  }
  if (!parse_port(p, port)) return false;
  host.assign(h);
  return true;
}

bool parse_redis_redirect(std::string_view error, std::string_view kind, std::string& host,
                          uint16_t& port) {
  if (!error.starts_with(kind) || error.size() <= kind.size() || error[kind.size()] != ' ')
    return false;
  size_t space = error.find(' ', kind.size() + 1);
  if (space == std::string_view::npos) return false;
  std::string_view target = error.substr(space + 1);
  size_t colon = target.rfind(':');  // (the port follows the last colon of an IPv6 host)
  if (colon == std::string_view::npos || !parse_port(target.substr(colon + 1), port)) return false;
  std::string_view h = target.substr(0, colon);
  if (h.starts_with('[') && h.ends_with(']') && h.size() > 2) h = h.substr(1, h.size() - 2);
  host.assign(h);
  return true;
}

RedisCluster::RedisCluster(Executor ex, RedisClusterSettings settings)
    : ex_(ex), settings_(std::move(settings)), refreshed_(ex), last_used_ms_(steady_now_ms()) {}

RedisCluster::~RedisCluster() { *alive_ = false; }

std::string RedisCluster::describe(const std::string& what) const {
  return "redis cluster " + settings_.name + ": " + what;
}

std::string RedisCluster::owner_of(uint16_t slot) const {
  if (slots_.empty() || slots_[slot] < 0) return {};
  const Node& n = nodes_[static_cast<size_t>(slots_[slot])];
  return n.client->settings().endpoint();
}

size_t RedisCluster::node_index(const std::string& host, uint16_t port) {
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].host == host && nodes_[i].port == port) return i;
  RedisSettings s;
  s.host = host;
  s.port = port;
  s.username = settings_.username;
  s.password = settings_.password;
  s.timeout_ms = settings_.timeout_ms;
  s.tls = settings_.tls;
  s.tls_verify = settings_.tls_verify;
  nodes_.push_back(Node{host, port, std::make_unique<RedisClient>(ex_, s)});
  return nodes_.size() - 1;
}

Task<std::string> RedisCluster::refresh() {
  // Ask the masters of the current map first (they know the newest layout), then the
  // configured nodes: a cluster whose seeds are gone still answers through the others.
  std::vector<std::pair<std::string, uint16_t>> candidates;
  for (int32_t idx : slots_)
    if (idx >= 0) {
      const Node& n = nodes_[static_cast<size_t>(idx)];
      std::pair<std::string, uint16_t> hp{n.host, n.port};
      if (std::find(candidates.begin(), candidates.end(), hp) == candidates.end())
        candidates.push_back(std::move(hp));
    }
  for (const auto& seed : settings_.nodes) {
    std::pair<std::string, uint16_t> hp;
    if (split_host_port(seed, hp.first, hp.second) &&
        std::find(candidates.begin(), candidates.end(), hp) == candidates.end())
      candidates.push_back(std::move(hp));
  }
  std::string why = "no node to ask";
  auto alive = alive_;
  for (const auto& [host, port] : candidates) {
    size_t asked = node_index(host, port);
    std::vector<std::string> args{"CLUSTER", "SLOTS"};
    RedisResult r = co_await nodes_[asked].client->command(std::move(args));
    if (!*alive) co_return "gone";
    if (!r.ok()) {
      why = r.error;
      continue;
    }
    if (r.reply.type != RedisReply::Type::array || r.reply.elements.empty()) {
      why = "CLUSTER SLOTS of " + host + ":" + std::to_string(port) + " gave no slots";
      continue;
    }
    // [start, end, [endpoint, port, id, ...] of the master, replicas...] per range.
    std::vector<int32_t> map(kSlots, -1);
    bool shaped = true;
    for (const RedisReply& range : r.reply.elements) {
      const auto& e = range.elements;
      if (range.type != RedisReply::Type::array || e.size() < 3 ||
          e[0].type != RedisReply::Type::integer || e[1].type != RedisReply::Type::integer ||
          e[2].type != RedisReply::Type::array || e[2].elements.size() < 2 ||
          e[2].elements[1].type != RedisReply::Type::integer || e[0].integer < 0 ||
          e[1].integer >= kSlots || e[0].integer > e[1].integer) {
        shaped = false;
        break;
      }
      const RedisReply& endpoint = e[2].elements[0];
      // NULL or "": the node asked (Redis 7). "?": a hostname endpoint without a hostname, an
      // address nobody knows: the range stays unserved.
      if (endpoint.type == RedisReply::Type::string && endpoint.str == "?") continue;
      std::string master =
          endpoint.type == RedisReply::Type::string && !endpoint.str.empty() ? endpoint.str : host;
      int64_t master_port = e[2].elements[1].integer;
      if (master_port < 1 || master_port > 65535) {
        shaped = false;
        break;
      }
      auto idx = static_cast<int32_t>(node_index(master, static_cast<uint16_t>(master_port)));
      for (int64_t s = e[0].integer; s <= e[1].integer; ++s) map[static_cast<size_t>(s)] = idx;
    }
    if (!shaped) {
      why = "CLUSTER SLOTS of " + host + ":" + std::to_string(port) + ": unexpected reply";
      continue;
    }
    slots_ = std::move(map);
    forget_unused_nodes();
    co_return std::string();
  }
  co_return why;
}

void RedisCluster::forget_unused_nodes() {
  compact_pending_ = in_flight_ > 1;  // (the refresh itself) a running call holds an index
  if (compact_pending_) return;
  std::vector<bool> used(nodes_.size(), false);
  for (int32_t idx : slots_)
    if (idx >= 0) used[static_cast<size_t>(idx)] = true;
  for (const auto& seed : settings_.nodes) {
    std::string host;
    uint16_t port = 0;
    if (!split_host_port(seed, host, port)) continue;
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i].host == host && nodes_[i].port == port) used[i] = true;
  }
  // A client a call still waits on stays, whatever the map says (its reply must find it).
  const int64_t now = steady_now_ms() + 1;
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (!nodes_[i].client->unused_since(now)) used[i] = true;
  if (std::find(used.begin(), used.end(), false) == used.end()) return;
  std::vector<int32_t> moved_to(nodes_.size(), -1);
  std::vector<Node> kept;
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (used[i]) {
      moved_to[i] = static_cast<int32_t>(kept.size());
      kept.push_back(std::move(nodes_[i]));
    }
  nodes_ = std::move(kept);
  for (int32_t& idx : slots_)
    if (idx >= 0) idx = moved_to[static_cast<size_t>(idx)];
}

Task<std::string> RedisCluster::refresh_shared() {
  auto alive = alive_;
  if (refreshing_) {
    // Wait for the running one (it cancels the timer when it ends).
    co_await refreshed_.async_wait(await_ec);
    if (!*alive) co_return "gone";
    co_return last_refresh_error_;
  }
  refreshing_ = true;
  refresh_started_ms_ = steady_now_ms();
  refreshed_.expires_at(Timer::time_point::max());
  ++in_flight_;
  struct Done {  // however the refresh ends (an exception, a destroyed frame): waiters wake
    RedisCluster* self;
    std::shared_ptr<bool> alive;
    ~Done() {
      if (!*alive) return;
      --self->in_flight_;
      self->refreshing_ = false;
      self->refreshed_.cancel();
    }
  } done{this, alive};
  std::string why = co_await refresh();
  if (*alive) last_refresh_error_ = why;
  co_return why;
}

Task<> RedisCluster::refresh_detached(RedisCluster* self, std::shared_ptr<bool> alive) {
  if (!*alive) co_return;
  co_await self->refresh_shared();
}

void RedisCluster::refresh_soon() {
  if (refreshing_ || steady_now_ms() - refresh_started_ms_ < kRefreshIntervalMs) return;
  asio::co_spawn(ex_, refresh_detached(this, alive_), asio::detached);
}

Task<RedisScriptRunner::Integers> RedisCluster::eval_integers(const RedisScript& script,
                                                              std::string key,
                                                              std::vector<std::string> args,
                                                              size_t n) {
  struct InFlight {  // while this call waits, the cluster is in use (RedisClusters::get)
    explicit InFlight(RedisCluster& c) : cluster(c), alive(c.alive_) {
      ++cluster.in_flight_;
      cluster.last_used_ms_ = steady_now_ms();
    }
    ~InFlight() {
      if (!*alive) return;
      // The last call out runs a compaction a refresh had to leave (no call holds an index).
      if (--cluster.in_flight_ == 0 && cluster.compact_pending_) {
        ++cluster.in_flight_;
        cluster.forget_unused_nodes();
        --cluster.in_flight_;
      }
    }
    RedisCluster& cluster;
    std::shared_ptr<bool> alive;
  } in_flight(*this);
  const uint16_t slot = redis_key_slot(key);
  // An unserved slot in a map read a moment ago fails at once: no map read per request.
  bool recent = steady_now_ms() - refresh_started_ms_ < kRefreshIntervalMs;
  if (slots_.empty() || (slots_[slot] < 0 && (!recent || refreshing_))) {
    std::string why = co_await refresh_shared();
    if (slots_.empty()) co_return Integers{describe("cannot read the slot map: " + why), {}, false};
  }
  if (slots_[slot] < 0)
    co_return Integers{describe("slot " + std::to_string(slot) + " is not served"), {}, false};
  size_t node = static_cast<size_t>(slots_[slot]);
  bool asking = false;
  for (int redirections = 0;; ++redirections) {
    std::vector<std::string> keys(1, key);
    RedisResult r = co_await nodes_[node].client->eval(script, std::move(keys), args, asking);
    if (r.ok()) co_return integers_of(r, n, nodes_[node].client->settings().endpoint());
    if (r.reply.type != RedisReply::Type::error) {
      // Lost connection or timeout: the map may be stale (a failover). The script may have run,
      // so the call is not repeated.
      refresh_soon();
      co_return Integers{std::move(r.error), {}, r.sent};
    }
    std::string host;
    uint16_t port = 0;
    const std::string& error = r.reply.str;
    bool moved = parse_redis_redirect(error, "MOVED", host, port);
    if (!moved && !parse_redis_redirect(error, "ASK", host, port)) {
      // CLUSTERDOWN, TRYAGAIN, ...: the layout may be changing.
      if (error.starts_with("CLUSTERDOWN") || error.starts_with("TRYAGAIN")) refresh_soon();
      co_return Integers{std::move(r.error), {}, r.sent};
    }
    if (redirections == kMaxRedirections)
      co_return Integers{describe("too many redirections (last: " + error + ")"), {}, false};
    if (host.empty()) host = nodes_[node].host;
    node = node_index(host, port);
    asking = !moved;
    if (moved) {
      // The slot has a new owner: use it now, and learn the rest of the new layout.
      slots_[slot] = static_cast<int32_t>(node);
      refresh_soon();
    }
  }
}

RedisCluster& RedisClusters::get(Executor ex, const RedisClusterSettings& settings) {
  auto it = clusters_.find(settings);
  if (it == clusters_.end()) {
    int64_t unused_before = steady_now_ms() - kUnusedMs;
    std::erase_if(clusters_,
                  [&](const auto& kv) { return kv.second->unused_since(unused_before); });
    it = clusters_.emplace(settings, std::make_unique<RedisCluster>(ex, settings)).first;
  }
  return *it->second;
}

RedisClusters& RedisClusters::of_this_thread() {
  thread_local RedisClusters clusters;
  return clusters;
}

}  // namespace portico::limit
