#include "http/proxy.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <cstdio>

#include "core/log.hpp"
#include "http/chunked_decoder.hpp"
#include "http/responses.hpp"
#include "http/socket_io.hpp"

namespace portico::http {
namespace {

using config::HttpLimits;
using upstream::NodeTarget;

constexpr size_t kMaxUpstreamHead = 64 * 1024;
constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";

// How the request body travels: none, already whole in the read buffer (replayable on a
// retry), or streamed from the client while it is sent (a retry after sending is impossible).
enum class BodyPlan { None, InBuffer, Stream, Chunked };

enum class Failure {
  None, ConnectRefused, ConnectTimeout, SendFailed, SendTimeout, ReadTimeout, ReadFailed,
  BadResponse, ClientGone, ClientTimeout, BadBody, BodyTooLarge
};

bool is_idempotent(std::string_view m) { return m != "POST" && m != "PATCH" && m != "LOCK"; }

bool is_connect_failure(Failure f) {
  return f == Failure::ConnectRefused || f == Failure::ConnectTimeout;
}

int failure_status(Failure f) {
  switch (f) {
    case Failure::ConnectTimeout:
    case Failure::ReadTimeout:
    case Failure::SendTimeout: return 504;
    default: return 502;
  }
}

const char* failure_text(Failure f) {
  switch (f) {
    case Failure::ConnectRefused: return "upstream connect failed";
    case Failure::ConnectTimeout: return "upstream connect timed out";
    case Failure::SendFailed: return "upstream send failed";
    case Failure::SendTimeout: return "upstream send timed out";
    case Failure::ReadTimeout: return "upstream read timed out";
    case Failure::ReadFailed: return "upstream closed the connection";
    case Failure::BadResponse: return "invalid upstream response";
    default: return "upstream failed";
  }
}

// Holds a pool buffer for the length of one exchange.
struct BufferLease {
  BufferPool& pool;
  IoBuffer buf;
  explicit BufferLease(BufferPool& p) : pool(p), buf(p.acquire()) {}
  ~BufferLease() { pool.release(buf); }
};

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += kCrlf;
}

// Headers the gateway sets itself are dropped from what the client sent.
bool replaced_request_header(std::string_view n) {
  switch (n.size()) {
    case 4: return iequals(n, "host");
    case 6: return iequals(n, "expect");
    case 9: return iequals(n, "x-real-ip");
    case 14: return iequals(n, "content-length");
    case 15: return iequals(n, "x-forwarded-for");
    case 16: return iequals(n, "x-forwarded-host") || iequals(n, "x-forwarded-port");
    case 17: return iequals(n, "x-forwarded-proto");
    default: return false;
  }
}

void build_upstream_head(Exchange& x, const ClientConnection& c, const NodeTarget& node,
                         const config::Upstream& spec, bool websocket) {
  const RequestHead& r = x.req;
  std::string& out = x.upstream_head;
  out.clear();
  out += r.method;
  out += ' ';
  out += r.target;
  out += " HTTP/1.1\r\n";
  std::string_view host = r.host;
  if (spec.pass_host == config::PassHost::Node || host.empty()) host = node.host_header;
  if (spec.pass_host == config::PassHost::Rewrite) host = spec.upstream_host;
  append_header(out, "Host", host);

  size_t xff_start = std::string::npos;
  std::string_view upgrade;
  for (const Header& h : r.headers) {
    if (is_hop_by_hop(h.name, r.connection)) {
      if (websocket && iequals(h.name, "upgrade")) upgrade = h.value;
      continue;
    }
    if (replaced_request_header(h.name)) {
      if (h.name.size() == 15) {  // x-forwarded-for: keep the chain, append the client below
        if (xff_start == std::string::npos) {
          out += "X-Forwarded-For: ";
          xff_start = out.size();
        } else {
          out += ", ";
        }
        out += h.value;
      }
      continue;
    }
    append_header(out, h.name, h.value);
  }
  if (xff_start == std::string::npos) {
    out += "X-Forwarded-For: ";
  } else {
    // The earlier values were written in place: move them behind any headers written since by
    // rebuilding the line at the end (rare: only with several X-Forwarded-For lines).
    std::string chain = out.substr(xff_start);
    size_t line_start = xff_start - std::string_view("X-Forwarded-For: ").size();
    size_t eol = chain.find("\r\n");
    std::string rest = eol == std::string::npos ? std::string() : chain.substr(eol + 2);
    chain = eol == std::string::npos ? chain : chain.substr(0, eol);
    out.resize(line_start);
    out += rest;
    out += "X-Forwarded-For: ";
    out += chain;
    out += ", ";
  }
  out += c.remote_ip;
  out += kCrlf;
  append_header(out, "X-Real-IP", c.remote_ip);
  append_header(out, "X-Forwarded-Proto", "http");
  append_header(out, "X-Forwarded-Host", r.host);
  append_header(out, "X-Forwarded-Port", std::to_string(c.local_port));
  if (r.chunked)
    out += "Transfer-Encoding: chunked\r\n";
  else if (r.content_length >= 0)
    append_header(out, "Content-Length", std::to_string(r.content_length));
  if (websocket) {
    out += "Connection: upgrade\r\n";
    append_header(out, "Upgrade", upgrade.empty() ? std::string_view("websocket") : upgrade);
  }
  out += kCrlf;
}

// Response framing towards the client.
enum class OutFraming { None, Length, Chunked, Close };

void build_response_head(Exchange& x, OutFraming framing, bool keep_alive) {
  const ResponseHead& r = x.resp;
  std::string& out = x.response_head;
  out.clear();
  out += "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  out += r.reason.empty() ? std::string_view(status_reason(r.status)) : r.reason;
  out += kCrlf;
  for (const Header& h : r.headers) {
    if (is_hop_by_hop(h.name, r.connection)) continue;
    if (h.name.size() == 14 && iequals(h.name, "content-length")) continue;
    append_header(out, h.name, h.value);
  }
  if (framing == OutFraming::Length || (framing == OutFraming::None && r.content_length >= 0))
    append_header(out, "Content-Length", std::to_string(r.content_length));
  else if (framing == OutFraming::Chunked)
    out += "Transfer-Encoding: chunked\r\n";
  if (!keep_alive)
    out += "Connection: close\r\n";
  else if (x.req.minor_version == 0)
    out += "Connection: keep-alive\r\n";
  out += kCrlf;
}

struct UpstreamConn {
  Socket socket;
  uint32_t requests = 0;
  bool reused = false;
};

// Reads the response head, skipping interim 1xx responses (but not 101).
Task<Failure> read_response_head(UpstreamConn& conn, IoBuffer& ub, Exchange& x, Deadline& d,
                                 double timeout) {
  while (true) {
    ParseResult r = parse_response(ub.view(), kMaxUpstreamHead, x.resp);
    if (r.status == ParseStatus::Error) co_return Failure::BadResponse;
    if (r.status == ParseStatus::Done) {
      if (x.resp.status >= 200 || x.resp.status == 101) co_return Failure::None;
      ub.consume(x.resp.head_size);
      continue;
    }
    if (ub.writable() == 0) {
      ub.compact();
      if (ub.writable() == 0) ub.grow(kMaxUpstreamHead);
    }
    IoStatus s = co_await read_some(conn.socket, ub, d, timeout);
    if (s == IoStatus::Timeout) co_return Failure::ReadTimeout;
    if (s != IoStatus::Ok) co_return Failure::ReadFailed;
  }
}

// Streams the rest of a request body from the client to the upstream.
Task<Failure> stream_request_body(ClientConnection& c, Exchange& x, BodyPlan plan,
                                  uint64_t remaining, Socket& up, Deadline& ud,
                                  const config::Upstream& spec, const HttpLimits& limits) {
  auto read_client = [&](size_t max) -> Task<Failure> {
    IoStatus s = co_await read_some(c.socket, c.in, c.io_deadline, limits.client_body_timeout, max);
    if (s == IoStatus::Ok) co_return Failure::None;
    co_return s == IoStatus::Timeout ? Failure::ClientTimeout : Failure::ClientGone;
  };
  if (plan == BodyPlan::Stream) {
    while (remaining > 0) {
      if (c.in.empty()) {
        Failure f = co_await read_client(remaining);
        if (f != Failure::None) co_return f;
      }
      size_t n = std::min<uint64_t>(c.in.size(), remaining);
      IoStatus s = co_await write_all(up, asio::buffer(c.in.data(), n), ud, spec.send_timeout);
      if (s != IoStatus::Ok) co_return s == IoStatus::Timeout ? Failure::SendTimeout : Failure::SendFailed;
      c.in.consume(n);
      remaining -= n;
      x.bytes_in += n;
    }
    co_return Failure::None;
  }
  ChunkedDecoder dec;
  int64_t total = 0;
  char size_line[24];
  while (true) {
    if (c.in.empty()) {
      Failure f = co_await read_client(SIZE_MAX);
      if (f != Failure::None) co_return f;
    }
    auto step = dec.feed(c.in.view());
    switch (step.status) {
      case ChunkedDecoder::Status::Data: {
        total += static_cast<int64_t>(step.data.size());
        if (limits.client_max_body_size > 0 && total > limits.client_max_body_size)
          co_return Failure::BodyTooLarge;
        int n = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", step.data.size());
        std::array<asio::const_buffer, 3> bufs{asio::buffer(size_line, static_cast<size_t>(n)),
                                               asio::buffer(step.data), asio::buffer(kCrlf)};
        IoStatus s = co_await write_all(up, bufs, ud, spec.send_timeout);
        if (s != IoStatus::Ok) co_return s == IoStatus::Timeout ? Failure::SendTimeout : Failure::SendFailed;
        break;
      }
      case ChunkedDecoder::Status::NeedMore:
        break;
      case ChunkedDecoder::Status::Done: {
        c.in.consume(step.consumed);
        x.bytes_in += step.consumed;
        IoStatus s = co_await write_all(up, asio::buffer(kLastChunk), ud, spec.send_timeout);
        if (s != IoStatus::Ok) co_return Failure::SendFailed;
        co_return Failure::None;
      }
      case ChunkedDecoder::Status::Error:
        co_return Failure::BadBody;
    }
    c.in.consume(step.consumed);
    x.bytes_in += step.consumed;
    if (step.status == ChunkedDecoder::Status::NeedMore && c.in.writable() == 0) c.in.compact();
    if (step.status == ChunkedDecoder::Status::NeedMore) {
      Failure f = co_await read_client(SIZE_MAX);
      if (f != Failure::None) co_return f;
    }
  }
}

// Relays bytes one way until EOF (then half-closes the other side) or an error (closes both).
Task<> pump(Socket& from, Socket& to, IoBuffer& buf, Deadline& idle, double timeout,
            uint64_t& counter) {
  while (true) {
    idle.arm(timeout, &from, &to, true);
    buf.clear();
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buf.write_ptr(), buf.writable()),
                                                 await_ec);
    error_code ignored;
    if (ec) {
      if (ec == asio::error::eof) {
        to.shutdown(Socket::shutdown_send, ignored);
      } else {
        from.close(ignored);
        to.close(ignored);
      }
      co_return;
    }
    auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.write_ptr(), n), await_ec);
    if (wec) {
      from.close(ignored);
      to.close(ignored);
      co_return;
    }
    counter += n;
  }
}

Task<bool> relay_websocket(ClientConnection& c, Exchange& x, Socket& up, IoBuffer& ub,
                           const HttpLimits& limits) {
  using namespace asio::experimental::awaitable_operators;
  Worker& w = c.worker;
  x.response_head.clear();
  x.response_head += "HTTP/1.1 101 Switching Protocols\r\n";
  for (const Header& h : x.resp.headers) {
    if (iequals(h.name, "connection") || iequals(h.name, "upgrade")) continue;
    append_header(x.response_head, h.name, h.value);
  }
  x.response_head += "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n";
  x.status = 101;
  ub.consume(x.resp.head_size);
  std::array<asio::const_buffer, 2> head{asio::buffer(x.response_head), asio::buffer(ub.view())};
  if (co_await write_all(c.socket, head, c.io_deadline, limits.send_timeout) != IoStatus::Ok)
    co_return false;
  x.bytes_out += x.response_head.size() + ub.size();
  ub.clear();
  c.in.consume(x.req.head_size);
  if (!c.in.empty()) {  // frames the client sent right behind its handshake
    if (co_await write_all(up, asio::buffer(c.in.view()), c.io_deadline, limits.send_timeout) !=
        IoStatus::Ok)
      co_return false;
    x.bytes_in += c.in.size();
    c.in.clear();
  }
  log_access(c, x);  // logged at upgrade time; the relay may last hours
  Deadline idle;
  w.deadlines().add(idle);
  uint64_t in_bytes = 0, out_bytes = 0;
  co_await (pump(c.socket, up, c.in, idle, limits.websocket_idle_timeout, in_bytes) &&
            pump(up, c.socket, ub, idle, limits.websocket_idle_timeout, out_bytes));
  idle.disarm();
  co_return false;
}

}  // namespace

Task<bool> respond_error(ClientConnection& c, Exchange& x, int status, std::string_view message,
                         bool keep_alive, const HttpLimits& limits) {
  bool keep = keep_alive && x.req.keep_alive && !c.worker.draining() &&
              c.requests < static_cast<uint32_t>(limits.keepalive_requests) &&
              limits.keepalive_timeout > 0;
  build_error_response(x.response_head, status, message, keep);
  x.status = status;
  IoStatus s = co_await write_all(c.socket, asio::buffer(x.response_head), c.io_deadline,
                                  limits.send_timeout);
  x.bytes_out += x.response_head.size();
  log_access(c, x);
  if (!keep) c.needs_lingering_close = true;
  co_return keep && s == IoStatus::Ok;
}

Task<bool> proxy_request(ClientConnection& c, Exchange& x, const config::CompiledRoute& route,
                         const HttpLimits& limits) {
  Worker& w = c.worker;
  const upstream::UpstreamTarget& up = *route.upstream;
  const config::Upstream& spec = up.spec();
  const RequestHead& req = x.req;
  const bool websocket = route.websocket && req.upgrade_websocket;
  size_t head = req.head_size;
  size_t buffered = 0;
  BodyPlan plan = BodyPlan::None;
  if (req.chunked) {
    plan = BodyPlan::Chunked;
  } else if (req.content_length > 0) {
    buffered = std::min<size_t>(c.in.size() - head, static_cast<size_t>(req.content_length));
    plan = buffered == static_cast<size_t>(req.content_length) ? BodyPlan::InBuffer : BodyPlan::Stream;
  }
  const bool replayable = plan == BodyPlan::None || plan == BodyPlan::InBuffer;
  const bool retry_after_send = replayable && (is_idempotent(req.method) || spec.retry_non_idempotent);
  bool body_streamed = false;

  if (req.expect_continue && (plan == BodyPlan::Stream ||
                              (plan == BodyPlan::Chunked && c.in.size() == head))) {
    static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
    if (co_await write_all(c.socket, asio::buffer(k100), c.io_deadline, limits.send_timeout) !=
        IoStatus::Ok)
      co_return false;
  }

  Deadline ud;
  w.deadlines().add(ud);
  BufferLease ub_lease(w.buffers());
  IoBuffer& ub = ub_lease.buf;
  UpstreamConn conn{Socket(w.executor())};
  upstream::TriedNodes tried;
  const int max_attempts = up.max_attempts();
  const int64_t retry_until =
      spec.retry_timeout > 0 ? steady_now_ms() + static_cast<int64_t>(spec.retry_timeout * 1000) : 0;
  Failure failure = Failure::None;
  bool have_response = false;
  const NodeTarget* node = nullptr;
  const int64_t up_start = now_us();

  while (x.attempts < max_attempts) {
    if (x.attempts > 0 && retry_until && steady_now_ms() >= retry_until) break;
    int idx = up.pick(w.index(), tried);
    if (idx == upstream::UpstreamTarget::kNone) break;
    tried.add(static_cast<size_t>(idx));
    ++x.attempts;
    node = &up.nodes()[static_cast<size_t>(idx)];
    if (!x.upstream_addrs.empty()) x.upstream_addrs += ", ";
    x.upstream_addrs += node->address;
    if (!body_streamed) build_upstream_head(x, c, *node, spec, websocket);

    // A pooled connection may have been closed by the node meanwhile: then one fresh try on the
    // same node, which is safe because nothing of the request was processed.
    for (int fresh = 0; fresh < 2; ++fresh) {
      failure = Failure::None;
      conn.reused = false;
      error_code ignored;
      conn.socket.close(ignored);
      if (fresh == 0) {
        if (auto pooled = w.pool().take(node->endpoint)) {
          conn.socket = std::move(pooled->socket);
          conn.requests = pooled->requests;
          conn.reused = true;
        }
      }
      if (!conn.reused) {
        conn.socket = Socket(w.executor());
        conn.requests = 0;
        ud.arm(spec.connect_timeout, &conn.socket);
        auto [ec] = co_await conn.socket.async_connect(node->endpoint, await_ec);
        bool timed_out = ud.fired();
        ud.disarm();
        if (ec) {
          failure = timed_out ? Failure::ConnectTimeout : Failure::ConnectRefused;
          break;
        }
        conn.socket.set_option(asio::ip::tcp::no_delay(true), ignored);
      }
      std::array<asio::const_buffer, 2> bufs{asio::buffer(x.upstream_head),
                                             asio::buffer(c.in.data() + head, buffered)};
      IoStatus s = co_await write_all(conn.socket, bufs, ud, spec.send_timeout);
      if (s != IoStatus::Ok) {
        if (conn.reused && !body_streamed) continue;
        failure = s == IoStatus::Timeout ? Failure::SendTimeout : Failure::SendFailed;
        break;
      }
      if ((plan == BodyPlan::Stream || plan == BodyPlan::Chunked) && !body_streamed) {
        body_streamed = true;
        uint64_t remaining = plan == BodyPlan::Stream ? static_cast<uint64_t>(req.content_length) - buffered : 0;
        x.bytes_in += buffered;
        c.in.consume(head + buffered);
        head = buffered = 0;
        failure = co_await stream_request_body(c, x, plan, remaining, conn.socket, ud, spec, limits);
        if (failure == Failure::ClientGone || failure == Failure::ClientTimeout ||
            failure == Failure::BadBody || failure == Failure::BodyTooLarge) {
          conn.socket.close(ignored);
          x.upstream_us = now_us() - up_start;
          if (failure == Failure::ClientGone) {
            x.status = 499;
            log_access(c, x);
            co_return false;
          }
          int status = failure == Failure::ClientTimeout ? 408 : failure == Failure::BodyTooLarge ? 413 : 400;
          co_return co_await respond_error(
              c, x, status,
              failure == Failure::ClientTimeout   ? "request body timeout"
              : failure == Failure::BodyTooLarge ? "request body too large"
                                                  : "invalid chunked body",
              false, limits);
        }
        if (failure != Failure::None) break;
      }
      ub.clear();
      failure = co_await read_response_head(conn, ub, x, ud, spec.read_timeout);
      if (failure == Failure::None) {
        have_response = true;
        break;
      }
      if (conn.reused && failure == Failure::ReadFailed && ub.empty() && !body_streamed) continue;
      break;
    }
    if (have_response) break;
    error_code ignored;
    conn.socket.close(ignored);
    log::warn("upstream " + node->address + " failed for route " + route.id + ": " +
              failure_text(failure));
    bool retry = is_connect_failure(failure) || (retry_after_send && !body_streamed &&
                                                 failure != Failure::BadResponse);
    if (!retry) break;
  }
  x.upstream_us = now_us() - up_start;

  if (!have_response) {
    int status = failure == Failure::None ? 502 : failure_status(failure);
    const char* text = failure == Failure::None ? "no upstream node available" : failure_text(failure);
    bool request_consumed = plan != BodyPlan::Stream && plan != BodyPlan::Chunked;
    if (request_consumed) {
      x.bytes_in += buffered;
      c.in.consume(head + buffered);
    }
    co_return co_await respond_error(c, x, status, text, request_consumed || body_streamed, limits);
  }

  ResponseHead& resp = x.resp;
  x.upstream_status = resp.status;
  if (!body_streamed) {
    x.bytes_in += buffered;
  }
  if (resp.status == 101) {
    if (!websocket) {
      conn.socket.close();
      co_return co_await respond_error(c, x, 502, "unexpected 101 from upstream", false, limits);
    }
    co_return co_await relay_websocket(c, x, conn.socket, ub, limits);
  }
  if (!body_streamed) c.in.consume(head + buffered);  // request views are not used past here

  enum class InFraming { None, Length, Chunked, UntilClose };
  const bool no_body = x.method == "HEAD" || resp.status < 200 || resp.status == 204 ||
                       resp.status == 304;
  InFraming in = no_body           ? InFraming::None
                 : resp.chunked    ? InFraming::Chunked
                 : resp.content_length >= 0 ? InFraming::Length
                                   : InFraming::UntilClose;
  OutFraming out = OutFraming::None;
  if (in == InFraming::Length) out = OutFraming::Length;
  if (in == InFraming::Chunked || in == InFraming::UntilClose)
    out = req.minor_version == 1 ? OutFraming::Chunked : OutFraming::Close;
  const bool keep_alive = req.keep_alive && out != OutFraming::Close && !w.draining() &&
                          c.requests < static_cast<uint32_t>(limits.keepalive_requests) &&
                          limits.keepalive_timeout > 0;
  build_response_head(x, out, keep_alive);
  x.status = resp.status;
  ub.consume(resp.head_size);
  const bool upstream_keep_alive = resp.keep_alive;
  const int64_t content_length = resp.content_length;

  auto fail_mid_body = [&]() {
    error_code ignored;
    conn.socket.close(ignored);
    log_access(c, x);
  };
  bool upstream_done = false;  // the whole response body was read from the upstream
  switch (in) {
    case InFraming::None: {
      if (co_await write_all(c.socket, asio::buffer(x.response_head), c.io_deadline,
                             limits.send_timeout) != IoStatus::Ok) {
        fail_mid_body();
        co_return false;
      }
      x.bytes_out += x.response_head.size();
      upstream_done = true;
      break;
    }
    case InFraming::Length: {
      uint64_t remaining = static_cast<uint64_t>(content_length);
      size_t first = std::min<uint64_t>(ub.size(), remaining);
      std::array<asio::const_buffer, 2> bufs{asio::buffer(x.response_head),
                                             asio::buffer(ub.data(), first)};
      if (co_await write_all(c.socket, bufs, c.io_deadline, limits.send_timeout) != IoStatus::Ok) {
        fail_mid_body();
        co_return false;
      }
      x.bytes_out += x.response_head.size() + first;
      ub.consume(first);
      remaining -= first;
      while (remaining > 0) {
        IoStatus s = co_await read_some(conn.socket, ub, ud, spec.read_timeout, remaining);
        if (s != IoStatus::Ok) {
          fail_mid_body();
          co_return false;
        }
        size_t n = ub.size();
        if (co_await write_all(c.socket, asio::buffer(ub.data(), n), c.io_deadline,
                               limits.send_timeout) != IoStatus::Ok) {
          fail_mid_body();
          co_return false;
        }
        x.bytes_out += n;
        ub.consume(n);
        remaining -= n;
      }
      upstream_done = true;
      break;
    }
    case InFraming::Chunked:
    case InFraming::UntilClose: {
      if (co_await write_all(c.socket, asio::buffer(x.response_head), c.io_deadline,
                             limits.send_timeout) != IoStatus::Ok) {
        fail_mid_body();
        co_return false;
      }
      x.bytes_out += x.response_head.size();
      const bool rechunk = out == OutFraming::Chunked;
      ChunkedDecoder dec;
      // Decoded pieces of one read are written with one gather write.
      constexpr size_t kMaxPieces = 16;
      char size_lines[kMaxPieces][20];
      std::vector<asio::const_buffer> pieces;
      pieces.reserve(kMaxPieces * 3 + 1);
      while (!upstream_done) {
        if (ub.empty()) {
          IoStatus s = co_await read_some(conn.socket, ub, ud, spec.read_timeout);
          if (s == IoStatus::Eof && in == InFraming::UntilClose) {
            upstream_done = true;
          } else if (s != IoStatus::Ok) {
            fail_mid_body();
            co_return false;
          }
        }
        pieces.clear();
        size_t consumed = 0;
        size_t payload = 0;
        auto add_piece = [&](std::string_view data) {
          if (rechunk) {
            size_t i = pieces.size() / 3;
            int n = std::snprintf(size_lines[i], sizeof(size_lines[i]), "%zx\r\n", data.size());
            pieces.push_back(asio::buffer(size_lines[i], static_cast<size_t>(n)));
            pieces.push_back(asio::buffer(data));
            pieces.push_back(asio::buffer(kCrlf));
          } else {
            pieces.push_back(asio::buffer(data));
          }
          payload += data.size();
        };
        if (in == InFraming::UntilClose) {
          if (!ub.empty()) add_piece(ub.view());
          consumed = ub.size();
        } else {
          while (pieces.size() + 3 <= kMaxPieces * 3 && consumed < ub.size()) {
            auto step = dec.feed(ub.view().substr(consumed));
            consumed += step.consumed;
            if (step.status == ChunkedDecoder::Status::Data) {
              add_piece(step.data);
            } else if (step.status == ChunkedDecoder::Status::Done) {
              upstream_done = true;
              break;
            } else if (step.status == ChunkedDecoder::Status::Error) {
              log::warn("invalid chunked response from " + node->address + ": " + dec.error());
              fail_mid_body();
              co_return false;
            } else {
              break;  // NeedMore
            }
          }
        }
        if (upstream_done && rechunk) pieces.push_back(asio::buffer(kLastChunk));
        if (!pieces.empty()) {
          if (co_await write_all(c.socket, pieces, c.io_deadline, limits.send_timeout) !=
              IoStatus::Ok) {
            fail_mid_body();
            co_return false;
          }
        }
        x.bytes_out += payload;
        ub.consume(consumed);
        if (!upstream_done && consumed == 0 && !ub.empty()) ub.compact();
        if (!upstream_done && in == InFraming::Chunked && !ub.empty() && consumed == 0) {
          IoStatus s = co_await read_some(conn.socket, ub, ud, spec.read_timeout);
          if (s != IoStatus::Ok) {
            fail_mid_body();
            co_return false;
          }
        }
      }
      break;
    }
  }

  if (upstream_done && upstream_keep_alive && in != InFraming::UntilClose && ub.empty() &&
      conn.requests + 1 < static_cast<uint32_t>(spec.keepalive_requests)) {
    w.pool().put(node->endpoint, std::move(conn.socket), conn.requests + 1,
                 spec.keepalive_idle_timeout, static_cast<size_t>(spec.keepalive_size));
  } else {
    error_code ignored;
    conn.socket.close(ignored);
  }
  log_access(c, x);
  co_return keep_alive;
}

}  // namespace portico::http
