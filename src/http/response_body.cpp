#include "http/response_body.hpp"

#include <array>
#include <cstdio>
#include <vector>

#include "core/log.hpp"
#include "http/chunked_decoder.hpp"
#include "http/message_heads.hpp"
#include "http/proxy.hpp"
#include "http/responses.hpp"
#include "http/socket_io.hpp"
#include "plugins/runner.hpp"

namespace portico::http {
namespace {

constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";

enum class InFraming { None, Length, Chunked, UntilClose };

// Copies a chunked or close-delimited upstream body, decoding chunks and re-chunking when the
// client speaks HTTP/1.1. Returns false when either side failed mid-body.
Task<bool> forward_unframed(ClientConnection& c, Exchange& x, UpstreamSide& up, InFraming in,
                            bool rechunk, const config::Upstream& spec,
                            const config::HttpLimits& limits, ChunkedDecoder dec = {}) {
  // All pieces decoded from one read go out in one gather write.
  constexpr size_t kMaxPieces = 16;
  char size_lines[kMaxPieces][20];
  std::vector<asio::const_buffer> pieces;
  pieces.reserve(kMaxPieces * 3 + 1);
  IoBuffer& ub = up.buf;
  bool done = false;
  while (!done) {
    if (ub.empty()) {
      IoStatus s = read_done(co_await async_read(up.stream, ub, up.deadline, spec.read_timeout), ub,
                             up.deadline);
      if (s == IoStatus::Eof && in == InFraming::UntilClose) {
        done = true;
      } else if (s != IoStatus::Ok) {
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
      while (pieces.size() < kMaxPieces * 3 && consumed < ub.size()) {
        auto step = dec.feed(ub.view().substr(consumed));
        consumed += step.consumed;
        if (step.status == ChunkedDecoder::Status::Data) {
          add_piece(step.data);
        } else if (step.status == ChunkedDecoder::Status::Done) {
          done = true;
          break;
        } else if (step.status == ChunkedDecoder::Status::Error) {
          log::warn("invalid chunked response from " + up.node->address + ": " + dec.error());
          co_return false;
        }  // NeedMore: everything was consumed
      }
    }
    if (done && rechunk) pieces.push_back(asio::buffer(kLastChunk));
    if (!pieces.empty()) {
      IoStatus s =
          write_now(c.stream, pieces, x.unsent)
              ? x.unsent.status
              : co_await write_rest(c.stream, x.unsent, c.io_deadline, limits.send_timeout);
      if (s != IoStatus::Ok) co_return false;
    }
    x.bytes_out += payload;
    ub.consume(consumed);
  }
  co_return true;
}

// Reads the upstream body into `body` (decoded): 1 when whole, 0 when it grew past `cap` (the
// rest is still to come; `dec` holds the chunked decoder's place), -1 when the upstream failed.
Task<int> collect_body(UpstreamSide& up, InFraming in, uint64_t length, ChunkedDecoder& dec,
                       std::string& body, size_t cap, const config::Upstream& spec) {
  IoBuffer& ub = up.buf;
  while (true) {
    if (in == InFraming::Length) {
      size_t n = std::min<uint64_t>(ub.size(), length - body.size());
      body.append(ub.data(), n);
      ub.consume(n);
      if (body.size() == length) co_return 1;
    } else if (in == InFraming::UntilClose) {
      body.append(ub.data(), ub.size());
      ub.consume(ub.size());
    } else {
      size_t consumed = 0;
      while (consumed < ub.size() && body.size() <= cap) {
        auto step = dec.feed(ub.view().substr(consumed));
        consumed += step.consumed;
        if (step.status == ChunkedDecoder::Status::Data) body.append(step.data);
        if (step.status == ChunkedDecoder::Status::Error) co_return -1;
        if (step.status == ChunkedDecoder::Status::Done) {
          ub.consume(consumed);
          co_return 1;
        }
      }
      ub.consume(consumed);
    }
    if (body.size() > cap) co_return 0;
    IoStatus s = read_done(co_await async_read(up.stream, ub, up.deadline, spec.read_timeout), ub,
                           up.deadline);
    if (s == IoStatus::Eof && in == InFraming::UntilClose) co_return 1;
    if (s != IoStatus::Ok) co_return -1;
  }
}

// The body_filter phase: the upstream body is read whole (up to the plugins' limit), filtered,
// and sent with a Content-Length. A body past the limit goes out as it came (chunked), the part
// already read first.
Task<bool> forward_filtered(ClientConnection& c, Exchange& x, UpstreamSide& up,
                            const config::Upstream& spec, const config::HttpLimits& limits,
                            InFraming in, bool keep_alive, int status, size_t cap) {
  plugins::Context& ctx = x.ctx;
  const bool http10 = x.req.minor_version == 0;
  if (http10) keep_alive = false;
  ResponseHead head = x.resp;
  head.content_length = -1;
  head.chunked = false;
  build_response_head(x.response_head, head, OutFraming::None, keep_alive, http10,
                      &ctx.response_headers, status);
  x.response_head.resize(x.response_head.size() - 2);  // the framing header comes next
  x.status = status;
  const bool upstream_keep_alive = x.resp.keep_alive;
  const uint64_t length =
      in == InFraming::Length ? static_cast<uint64_t>(x.resp.content_length) : 0;
  up.buf.consume(x.resp.head_size);  // x.resp's views are not used past here
  std::string body;
  ChunkedDecoder dec;
  int got = co_await collect_body(up, in, length, dec, body, cap, spec);
  if (got < 0) {
    up.release_connection(spec, false);
    ctx.response_headers.clear();  // header_filter runs again for the error
    co_return co_await respond_error(c, x, 502, "upstream failed mid-body", false, limits);
  }
  bool whole = got == 1;
  if (whole) {
    const size_t edits_before = ctx.response_headers.size();
    plugins::run_body_filter(ctx, body);
    append_header_edits(x.response_head, ctx.response_headers, edits_before);
    x.response_head += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  } else {
    x.response_head += http10 ? "\r\n" : "Transfer-Encoding: chunked\r\n\r\n";
  }
  char size_line[24];
  int n = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", body.size());
  bool rechunk = !whole && !http10;
  std::array<asio::const_buffer, 4> bufs{
      asio::buffer(x.response_head), asio::buffer(size_line, rechunk ? static_cast<size_t>(n) : 0),
      asio::buffer(body), asio::buffer(kCrlf.data(), rechunk ? kCrlf.size() : 0)};
  IoStatus s = write_now(c.stream, bufs, x.unsent)
                   ? x.unsent.status
                   : co_await write_rest(c.stream, x.unsent, c.io_deadline, limits.send_timeout);
  bool ok = s == IoStatus::Ok;
  x.bytes_out += x.response_head.size() + body.size();
  if (ok && !whole) {
    if (in == InFraming::Length) {
      // cannot happen: a Content-Length over the cap never takes this path
      ok = false;
    } else {
      ok = co_await forward_unframed(c, x, up, in, rechunk, spec, limits, dec);
    }
  }
  up.release_connection(spec, ok && upstream_keep_alive && in != InFraming::UntilClose);
  if (!ok) c.stream.abandon();  // a cut response must not end with TLS's close_notify
  record_exchange(c, x);
  co_return ok&& keep_alive && (whole || !http10);
}

// response-rewrite's body: the upstream's body is not read (its connection is closed, not
// pooled) and the plugin's goes out with the upstream's headers and the plugins' edits.
Task<bool> replace_body(ClientConnection& c, Exchange& x, UpstreamSide& up,
                        const config::Upstream& spec, const config::HttpLimits& limits,
                        bool keep_alive) {
  const plugins::Context& ctx = x.ctx;
  ResponseHead head = x.resp;
  head.content_length = static_cast<int64_t>(ctx.response_body->size());
  head.chunked = false;
  int status = ctx.response_status.value_or(head.status);
  build_response_head(x.response_head, head, OutFraming::Length, keep_alive,
                      x.req.minor_version == 0, &ctx.response_headers, status);
  x.status = status;
  std::array<asio::const_buffer, 2> bufs{asio::buffer(x.response_head),
                                         asio::buffer(*ctx.response_body)};
  IoStatus s = write_now(c.stream, bufs, x.unsent)
                   ? x.unsent.status
                   : co_await write_rest(c.stream, x.unsent, c.io_deadline, limits.send_timeout);
  x.bytes_out += x.response_head.size() + ctx.response_body->size();
  up.release_connection(spec, false);
  record_exchange(c, x);
  co_return s == IoStatus::Ok&& keep_alive;
}

}  // namespace

Task<bool> forward_response(ClientConnection& c, Exchange& x, UpstreamSide& up,
                            const config::Upstream& spec, const config::HttpLimits& limits) {
  IoBuffer& ub = up.buf;
  const bool bodiless_status = x.resp.status < 200 || x.resp.status == 204 || x.resp.status == 304;
  // The upstream answers the method it was sent, which proxy-rewrite may have changed: a HEAD
  // there sends no body whatever its Content-Length says, and a client's HEAD gets none.
  const bool client_head = x.method == "HEAD";
  const bool upstream_head =
      x.with_plugins && x.ctx.upstream.method ? *x.ctx.upstream.method == "HEAD" : client_head;
  const bool no_body = client_head || upstream_head || bodiless_status;
  // A GET rewritten to HEAD: the client was promised a body by nothing but the upstream's
  // headers; it gets an empty one.
  if (upstream_head && !client_head && !bodiless_status) {
    x.resp.content_length = 0;
    x.resp.chunked = false;
  }
  // A HEAD rewritten to GET: the upstream's body is not read, so the connection is not reused.
  const bool body_left_unread = client_head && !upstream_head && !bodiless_status;
  const ResponseHead& resp = x.resp;
  const InFraming in = no_body                    ? InFraming::None
                       : resp.chunked             ? InFraming::Chunked
                       : resp.content_length >= 0 ? InFraming::Length
                                                  : InFraming::UntilClose;
  const bool client_http10 = x.req.minor_version == 0;
  OutFraming out = OutFraming::None;
  if (in == InFraming::Length || (upstream_head && !client_head && !bodiless_status))
    out = OutFraming::Length;
  if (in == InFraming::Chunked || in == InFraming::UntilClose)
    out = client_http10 ? OutFraming::Close : OutFraming::Chunked;
  const bool keep_alive = x.req.keep_alive && out != OutFraming::Close && !c.worker.draining() &&
                          c.requests < static_cast<uint32_t>(limits.keepalive_requests) &&
                          limits.keepalive_timeout > 0;
  if (x.with_plugins) {
    plugins::Context& ctx = x.ctx;
    ctx.status = resp.status;
    ctx.response = &resp;
    plugins::run_header_filter(ctx);
    ctx.response = nullptr;
    // HEAD, 1xx, 204 and 304 answers have no body to replace (nor may they carry one).
    if (ctx.response_body && !no_body)
      co_return co_await replace_body(c, x, up, spec, limits, keep_alive);
  }
  const int status = x.with_plugins ? x.ctx.response_status.value_or(resp.status) : resp.status;
  if (x.with_plugins && in != InFraming::None) {
    size_t cap = plugins::response_body_limit(x.ctx);
    if (cap > 0 && (in != InFraming::Length || static_cast<uint64_t>(resp.content_length) <= cap))
      co_return co_await forward_filtered(c, x, up, spec, limits, in, keep_alive, status, cap);
  }
  build_response_head(x.response_head, resp, out, keep_alive, client_http10,
                      x.with_plugins ? &x.ctx.response_headers : nullptr, status);
  x.status = status;
  const bool upstream_keep_alive = resp.keep_alive;
  uint64_t remaining = in == InFraming::Length ? static_cast<uint64_t>(resp.content_length) : 0;
  ub.consume(resp.head_size);  // x.resp's views are not used past here

  // The head goes out together with the first body bytes already read.
  size_t first = in == InFraming::Length ? std::min<uint64_t>(ub.size(), remaining) : 0;
  std::array<asio::const_buffer, 2> head{asio::buffer(x.response_head),
                                         asio::buffer(ub.data(), first)};
  IoStatus s = write_now(c.stream, head, x.unsent)
                   ? x.unsent.status
                   : co_await write_rest(c.stream, x.unsent, c.io_deadline, limits.send_timeout);
  bool ok = s == IoStatus::Ok;
  x.bytes_out += x.response_head.size() + first;
  ub.consume(first);
  remaining -= first;

  while (ok && remaining > 0) {
    s = read_done(co_await async_read(up.stream, ub, up.deadline, spec.read_timeout, remaining), ub,
                  up.deadline);
    if (s != IoStatus::Ok) {
      ok = false;
      break;
    }
    size_t n = ub.size();
    auto piece = asio::buffer(ub.data(), n);
    s = write_now(c.stream, piece, x.unsent)
            ? x.unsent.status
            : co_await write_rest(c.stream, x.unsent, c.io_deadline, limits.send_timeout);
    ok = s == IoStatus::Ok;
    x.bytes_out += n;
    ub.consume(n);
    remaining -= n;
  }
  if (ok && (in == InFraming::Chunked || in == InFraming::UntilClose))
    ok = co_await forward_unframed(c, x, up, in, out == OutFraming::Chunked, spec, limits);

  up.release_connection(
      spec, ok && upstream_keep_alive && in != InFraming::UntilClose && !body_left_unread);
  if (!ok) c.stream.abandon();  // a cut response must not end with TLS's close_notify
  record_exchange(c, x);
  co_return ok&& keep_alive;
}

}  // namespace portico::http
