#include "http/proxy_protocol_accept.hpp"

#include <atomic>

#include "core/log.hpp"

namespace portico::http {
namespace {

void refuse(ClientConnection& c, const config::ListenAddress& listener,
            std::atomic<uint64_t>& counter, std::string_view reason) {
  counter.fetch_add(1, std::memory_order_relaxed);
  if (log::enabled(log::Level::Debug))
    log::debug("PROXY protocol: closing connection from " + c.remote_ip + ":" +
               std::to_string(c.remote_port) + " on " + listener.to_string() + ": " +
               std::string(reason));
}

}  // namespace

void adopt_proxy_source(ClientConnection& c, const stream::ProxyHeader& header) {
  if (!header.endpoints) return;
  const stream::ProxyAddress& source = header.endpoints->source;
  c.remote_bytes = source.bytes;
  c.remote_ip = source.ip_string();
  c.remote_port = source.port;
}

Task<bool> accept_proxy_header(ClientConnection& c, const config::ListenAddress& listener,
                               double timeout) {
  metrics::ProxyProtocolRejections& rejections = c.worker.proxy_protocol_rejections;
  // The spec's rule: only trusted proxies may use the protocol, or anyone could claim any address.
  if (!listener.trusts(c.remote_bytes)) {
    refuse(c, listener, rejections.untrusted, "peer not in trusted_addresses");
    co_return false;
  }
  if (!c.in.allocated()) c.in = c.worker.buffers().acquire();
  c.io_deadline.arm(timeout, &c.socket);  // the whole header, not per read
  while (true) {
    stream::ProxyParseResult r = stream::parse_proxy_header(c.in.view());
    if (r.status == stream::ProxyParseStatus::Done) {
      c.io_deadline.disarm();
      adopt_proxy_source(c, r.header);
      c.in.consume(r.header.length);
      co_return true;
    }
    if (r.status == stream::ProxyParseStatus::Error || c.in.writable() == 0) {
      c.io_deadline.disarm();
      refuse(c, listener, rejections.invalid, r.error.empty() ? "header too long" : r.error);
      co_return false;
    }
    auto [ec, n] = co_await c.socket.async_read_some(
        asio::buffer(c.in.write_ptr(), c.in.writable()), await_ec);
    if (ec) {
      bool timed_out = c.io_deadline.fired();
      c.io_deadline.disarm();
      if (timed_out)
        refuse(c, listener, rejections.timeout, "no complete header in time");
      else
        refuse(c, listener, rejections.truncated,
               c.in.empty() ? "closed before sending a header" : "closed mid-header");
      co_return false;
    }
    c.in.commit(n);
  }
}

}  // namespace portico::http
