#include "http/exchange.hpp"

#include <chrono>
#include <vector>

#include "config/snapshot.hpp"
#include "tls/stream.hpp"

namespace portico::http {

namespace {
// One free list per worker thread: the server never moves an Exchange between threads.
thread_local std::vector<std::unique_ptr<Exchange>> t_free_exchanges;
constexpr size_t kMaxFreeExchanges = 256;
}  // namespace

int64_t now_us() { return steady_now_us(); }

ClientConnection::ClientConnection(Worker& w, Socket&& s, uint16_t port)
    : worker(w), socket(std::move(s)), local_port(port) {
  w.deadlines().add(io_deadline);
  w.idle_waits().add(idle_deadline);
  w.connections.fetch_add(1, std::memory_order_relaxed);
  error_code ec;
  socket.non_blocking(true, ec);  // for write_now()
  auto ep = socket.remote_endpoint(ec);
  if (!ec) {
    auto addr = ep.address();
    if (addr.is_v6() && addr.to_v6().is_v4_mapped())
      addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
    remote_ip = addr.to_string();
    remote_port = ep.port();
    if (addr.is_v4()) {
      remote_bytes[10] = remote_bytes[11] = 0xff;
      auto b = addr.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), remote_bytes.begin() + 12);
    } else {
      auto b = addr.to_v6().to_bytes();
      std::copy(b.begin(), b.end(), remote_bytes.begin());
    }
  }
}

ClientConnection::~ClientConnection() {
  worker.buffers().release(in);
  worker.connections.fetch_sub(1, std::memory_order_relaxed);
}

void Exchange::reset() {
  route_id = nullptr;
  upstream_addrs.clear();
  status = upstream_status = attempts = 0;
  bytes_in = bytes_out = 0;
  start_us = upstream_us = 0;
  with_plugins = false;
  method.clear();
  target.clear();
  host.clear();
  response_head.clear();  // a logger reads it: never the previous request's
}

ExchangeLease::ExchangeLease() {
  if (t_free_exchanges.empty()) {
    ex_ = std::make_unique<Exchange>();
  } else {
    ex_ = std::move(t_free_exchanges.back());
    t_free_exchanges.pop_back();
  }
  ex_->reset();
}

ExchangeLease::~ExchangeLease() {
  if (t_free_exchanges.size() < kMaxFreeExchanges) t_free_exchanges.push_back(std::move(ex_));
}

void parse_moved_head(std::string_view head, const char* old_base, Exchange& x) {
  plugins::Context& ctx = x.ctx;
  // Compared as addresses only: the old bytes may be gone.
  auto path = reinterpret_cast<uintptr_t>(ctx.path.data());
  auto base = reinterpret_cast<uintptr_t>(old_base);
  bool path_in_head = path >= base && path < base + x.req.head_size;
  size_t path_offset = path_in_head ? path - base : 0;
  // It parsed before; the limits only need to let the same bytes through again.
  parse_request(head, RequestLimits{SIZE_MAX, SIZE_MAX, SIZE_MAX}, x.req);
  if (path_in_head) ctx.path = head.substr(path_offset, ctx.path.size());
}

void pin_session(SessionPins& pins, const config::Snapshot& snapshot,
                 const config::CompiledRoute& route, const char* head_base, Exchange& x) {
  plugins::Context& ctx = x.ctx;
  pins.head.assign(head_base, x.req.head_size);
  parse_moved_head(pins.head, head_base, x);
  pins.route_plugins = route.plugins;
  pins.global_plugins = snapshot.global_plugins;
  pins.consumer = ctx.consumer ? snapshot.consumers.share(ctx.consumer) : nullptr;
  pins.metadata = snapshot.plugin_metadata;  // (ctx.metadata points into it: kept alive)
  pins.route_id = route.id;
  pins.service_id = route.service_id;
  if (ctx.route_id) ctx.route_id = &pins.route_id;
  if (ctx.service_id) ctx.service_id = &pins.service_id;
  pins.route_info = route.info;
  if (ctx.route_info) ctx.route_info = pins.route_info.get();
  ctx.consumers = nullptr;
}

}  // namespace portico::http
