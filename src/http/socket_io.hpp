// Socket reads and writes under a Deadline, reporting timeouts and EOF as values. They are
// split into "start" (arm the deadline, return the operation's awaitable) and "done" (disarm,
// classify) instead of being coroutines themselves: a coroutine per socket operation would add
// a frame allocation to every read and write on the hot path.
//
//   IoStatus s = read_done(co_await async_read(sock, buf, d, timeout), buf, d);
#pragma once

#include <boost/asio/write.hpp>
#include <tuple>

#include "core/deadline.hpp"
#include "core/io_buffer.hpp"

namespace portico::http {

enum class IoStatus { Ok, Eof, Timeout, Error };

using IoResult = std::tuple<error_code, size_t>;

inline IoStatus classify(const error_code& ec, const Deadline& d) {
  if (!ec) return IoStatus::Ok;
  if (d.fired()) return IoStatus::Timeout;
  if (ec == asio::error::eof) return IoStatus::Eof;
  return IoStatus::Error;
}

// Reads what is available (at most `max` bytes) into the free space of `buf`.
inline auto async_read(Socket& s, IoBuffer& buf, Deadline& d, double timeout,
                       size_t max = SIZE_MAX) {
  if (buf.writable() == 0) buf.compact();
  d.arm(timeout, &s);
  return s.async_read_some(asio::buffer(buf.write_ptr(), std::min(buf.writable(), max)), await_ec);
}

inline IoStatus read_done(const IoResult& r, IoBuffer& buf, Deadline& d) {
  d.disarm();
  if (!std::get<0>(r)) buf.commit(std::get<1>(r));
  return classify(std::get<0>(r), d);
}

// Writes all of `buffers` (a buffer or a buffer sequence that outlives the operation).
template <class ConstBuffers>
auto async_write_all(Socket& s, const ConstBuffers& buffers, Deadline& d, double timeout) {
  d.arm(timeout, &s);
  return asio::async_write(s, buffers, await_ec);
}

inline IoStatus write_done(const IoResult& r, Deadline& d) {
  d.disarm();
  return classify(std::get<0>(r), d);
}

}  // namespace portico::http
