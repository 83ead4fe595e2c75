// Socket reads and writes with a Deadline, reporting timeouts and EOF as values.
#pragma once

#include <boost/asio/write.hpp>

#include "core/deadline.hpp"
#include "core/io_buffer.hpp"

namespace portico::http {

enum class IoStatus { Ok, Eof, Timeout, Error };

inline IoStatus classify(const error_code& ec, const Deadline& d) {
  if (!ec) return IoStatus::Ok;
  if (d.fired()) return IoStatus::Timeout;
  if (ec == asio::error::eof) return IoStatus::Eof;
  return IoStatus::Error;
}

// Reads what is available (at most `max` bytes) into the free space of `buf`.
inline Task<IoStatus> read_some(Socket& s, IoBuffer& buf, Deadline& d, double timeout,
                                size_t max = SIZE_MAX) {
  if (buf.writable() == 0) buf.compact();
  size_t want = std::min(buf.writable(), max);
  d.arm(timeout, &s);
  auto [ec, n] = co_await s.async_read_some(asio::buffer(buf.write_ptr(), want), await_ec);
  d.disarm();
  if (!ec) buf.commit(n);
  co_return classify(ec, d);
}

template <class ConstBuffers>
Task<IoStatus> write_all(Socket& s, const ConstBuffers& buffers, Deadline& d, double timeout) {
  d.arm(timeout, &s);
  auto [ec, n] = co_await asio::async_write(s, buffers, await_ec);
  d.disarm();
  co_return classify(ec, d);
}

}  // namespace portico::http
