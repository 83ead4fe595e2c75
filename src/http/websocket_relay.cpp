#include "http/websocket_relay.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "http/message_heads.hpp"
#include "http/responses.hpp"
#include "http/socket_io.hpp"
#include "plugins/runner.hpp"

namespace portico::http {
namespace {

// Relays one direction until EOF (then half-closes the other side) or an error (closes both).
// Both directions share `idle`, so traffic either way keeps the relay alive.
Task<> pump(ByteStream& from, ByteStream& to, IoBuffer& buf, Deadline& idle, double timeout,
            uint64_t& counter) {
  Socket& from_socket = from.socket();
  Socket& to_socket = to.socket();
  while (true) {
    idle.arm(timeout, &from_socket, &to_socket, true);
    buf.clear();
    auto [ec, n] = co_await from.read_some(asio::buffer(buf.write_ptr(), buf.writable()));
    error_code ignored;
    if (ec) {
      if (ec == asio::error::eof) {
        to_socket.shutdown(Socket::shutdown_send, ignored);
      } else {
        from_socket.close(ignored);
        to_socket.close(ignored);
      }
      co_return;
    }
    auto [wec, wn] = co_await to.write_all(asio::buffer(buf.write_ptr(), n));
    if (wec) {
      from_socket.close(ignored);
      to_socket.close(ignored);
      co_return;
    }
    counter += n;
  }
}

}  // namespace

Task<bool> relay_websocket(ClientConnection& c, Exchange& x, UpstreamSide& up,
                           const config::CompiledRoute& route,
                           std::shared_ptr<const config::Snapshot>& snapshot,
                           const config::HttpLimits& limits) {
  using namespace asio::experimental::awaitable_operators;
  build_upgrade_head(x.response_head, x.resp);
  x.status = 101;
  IoBuffer& ub = up.buf;
  ub.consume(x.resp.head_size);
  std::array<asio::const_buffer, 2> head{asio::buffer(x.response_head), asio::buffer(ub.view())};
  if (write_done(co_await async_write_all(c.stream, head, c.io_deadline, limits.send_timeout),
                 c.io_deadline) != IoStatus::Ok)
    co_return false;
  x.bytes_out += x.response_head.size() + ub.size();
  ub.clear();
  const char* head_base = c.in.data();  // intact until the pumps read (pin_session)
  c.in.consume(x.req.head_size);
  if (!c.in.empty()) {  // frames the client sent right behind its handshake
    auto early = asio::buffer(c.in.view());
    if (write_done(co_await async_write_all(up.stream, early, up.deadline, limits.send_timeout),
                   up.deadline) != IoStatus::Ok)
      co_return false;
    x.bytes_in += c.in.size();
    c.in.clear();
  }
  // Logged at upgrade time (the relay may last hours); the plugins' log phase runs when it ends,
  // so limit-conn counts the relay until then (as nginx's log phase does).
  record_exchange(c, x, /*log_phase=*/false);
  const double idle_timeout = limits.websocket_idle_timeout;
  SessionPins pins;
  LogPhaseOnThrow log_on_throw(x);  // (after pins: the pinned Context points into them)
  pin_session(pins, *snapshot, route, head_base, x);
  x.route_id = nullptr;
  snapshot.reset();  // `route` and `limits` are gone from here on
  Deadline idle;
  c.worker.deadlines().add(idle);
  uint64_t in_bytes = 0, out_bytes = 0;
  co_await (pump(c.stream, up.stream, c.in, idle, idle_timeout, in_bytes) &&
            pump(up.stream, c.stream, ub, idle, idle_timeout, out_bytes));
  idle.disarm();
  up.close();
  if (x.with_plugins) {
    x.ctx.status = x.status;
    x.bytes_in += in_bytes;
    x.bytes_out += out_bytes;
    fill_log_facts(x);  // the whole session: loggers see its length and bytes
    plugins::run_log(x.ctx);
  }
  co_return false;
}

}  // namespace portico::http
