#include "http/request_body.hpp"

#include <array>
#include <cstdio>

#include "http/chunked_decoder.hpp"
#include "http/socket_io.hpp"

namespace portico::http {
namespace {
constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";

Failure client_failure(IoStatus s) {
  return s == IoStatus::Timeout ? Failure::ClientTimeout : Failure::ClientGone;
}
Failure upstream_failure(IoStatus s) {
  return s == IoStatus::Timeout ? Failure::SendTimeout : Failure::SendFailed;
}
}  // namespace

Task<Failure> stream_request_body(ClientConnection& c, Exchange& x, bool chunked,
                                  uint64_t remaining, UpstreamSide& up,
                                  const config::Upstream& spec, const config::HttpLimits& limits) {
  if (!chunked) {
    while (remaining > 0) {
      if (c.in.empty()) {
        IoStatus s = read_done(co_await async_read(c.stream, c.in, c.io_deadline,
                                                   limits.client_body_timeout, remaining),
                               c.in, c.io_deadline);
        if (s != IoStatus::Ok) co_return client_failure(s);
      }
      size_t n = std::min<uint64_t>(c.in.size(), remaining);
      auto piece = asio::buffer(c.in.data(), n);
      IoStatus s = write_done(
          co_await async_write_all(up.stream, piece, up.deadline, spec.send_timeout), up.deadline);
      if (s != IoStatus::Ok) co_return upstream_failure(s);
      c.in.consume(n);
      remaining -= n;
      x.bytes_in += n;
    }
    co_return Failure::None;
  }

  ChunkedDecoder dec;
  int64_t total = 0;
  int64_t max_size = limits.client_max_body_size;  // 0: none
  if (x.with_plugins && x.ctx.max_body_size > 0 &&
      (max_size == 0 || x.ctx.max_body_size < max_size))
    max_size = x.ctx.max_body_size;  // client-control's, for this route
  char size_line[24];
  while (true) {
    if (c.in.empty()) {
      IoStatus s =
          read_done(co_await async_read(c.stream, c.in, c.io_deadline, limits.client_body_timeout),
                    c.in, c.io_deadline);
      if (s != IoStatus::Ok) co_return client_failure(s);
    }
    auto step = dec.feed(c.in.view());
    if (step.status == ChunkedDecoder::Status::Error) co_return Failure::BadBody;
    if (step.status == ChunkedDecoder::Status::Data) {
      total += static_cast<int64_t>(step.data.size());
      if (max_size > 0 && total > max_size) co_return Failure::BodyTooLarge;
      int n = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", step.data.size());
      std::array<asio::const_buffer, 3> bufs{asio::buffer(size_line, static_cast<size_t>(n)),
                                             asio::buffer(step.data), asio::buffer(kCrlf)};
      IoStatus s = write_done(
          co_await async_write_all(up.stream, bufs, up.deadline, spec.send_timeout), up.deadline);
      if (s != IoStatus::Ok) co_return upstream_failure(s);
    }
    c.in.consume(step.consumed);
    x.bytes_in += step.consumed;
    if (step.status == ChunkedDecoder::Status::Done) {
      IoStatus s = write_done(co_await async_write_all(up.stream, asio::buffer(kLastChunk),
                                                       up.deadline, spec.send_timeout),
                              up.deadline);
      co_return s == IoStatus::Ok ? Failure::None : upstream_failure(s);
    }
  }
}

}  // namespace portico::http
