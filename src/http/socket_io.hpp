// Socket reads and writes under a Deadline, reporting timeouts and EOF as values. They are
// split into "start" (arm the deadline, return the operation's awaitable) and "done" (disarm,
// classify) instead of being coroutines themselves: a coroutine per socket operation would add
// a frame allocation to every read and write on the hot path.
//
//   IoStatus s = read_done(co_await async_read(sock, buf, d, timeout), buf, d);
#pragma once

#include <boost/asio/write.hpp>
#include <tuple>
#include <vector>

#include "core/byte_stream.hpp"
#include "core/deadline.hpp"
#include "core/edge_read.hpp"
#include "core/io_buffer.hpp"

namespace portico::http {

enum class IoStatus { Ok, Eof, Timeout, Error };

inline IoStatus classify(const error_code& ec, const Deadline& d) {
  if (!ec) return IoStatus::Ok;
  if (d.fired()) return IoStatus::Timeout;
  if (ec == asio::error::eof) return IoStatus::Eof;
  return IoStatus::Error;
}

// Reads what is available (at most `max` bytes) into the free space of `buf`. When the free
// space is used up it compacts `buf`, which moves its unread bytes: views into them go stale.
inline auto async_read(Socket& s, IoBuffer& buf, Deadline& d, double timeout,
                       size_t max = SIZE_MAX) {
  if (buf.writable() == 0) buf.compact();
  d.arm(timeout, &s);
  return async_read_edge(s, asio::buffer(buf.write_ptr(), std::min(buf.writable(), max)), await_ec);
}

// The same on a client connection (plain or TLS).
inline auto async_read(ByteStream& s, IoBuffer& buf, Deadline& d, double timeout,
                       size_t max = SIZE_MAX) {
  if (buf.writable() == 0) buf.compact();
  d.arm(timeout, &s.socket());
  return s.read_some(asio::buffer(buf.write_ptr(), std::min(buf.writable(), max)));
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

template <class ConstBuffers>
auto async_write_all(ByteStream& s, const ConstBuffers& buffers, Deadline& d, double timeout) {
  d.arm(timeout, &s.socket());
  return s.write_all(buffers);
}

inline IoStatus write_done(const IoResult& r, Deadline& d) {
  d.disarm();
  return classify(std::get<0>(r), d);
}

// What write_now could not send at once.
struct WriteRest {
  std::vector<asio::const_buffer> buffers;
  IoStatus status = IoStatus::Ok;  // Error when the socket failed outright
};

// Most writes fit in the socket buffer: send them with one non-blocking sendmsg, without an
// asynchronous operation (no completion to schedule, no coroutine suspension). Returns true
// when everything was written or the socket failed (see rest.status); false leaves the unsent
// tail in `rest` for write_rest(). The socket must be in non-blocking mode. (A TLS client
// stream sends nothing here: all of it is left for write_rest.)
template <class ConstBuffers>
size_t send_now(Socket& s, const ConstBuffers& buffers, error_code& ec) {
  size_t n = s.write_some(buffers, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec.clear();
  return n;
}
template <class ConstBuffers>
size_t send_now(ByteStream& s, const ConstBuffers& buffers, error_code& ec) {
  return s.write_now(buffers, ec);
}
template <class Stream, class ConstBuffers>
bool write_now(Stream& s, const ConstBuffers& buffers, WriteRest& rest) {
  error_code ec;
  size_t n = send_now(s, buffers, ec);
  rest.buffers.clear();
  if (ec) {
    rest.status = IoStatus::Error;
    return true;
  }
  rest.status = IoStatus::Ok;
  for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
       ++it) {
    asio::const_buffer b(*it);
    if (n >= b.size()) {
      n -= b.size();
      continue;
    }
    rest.buffers.push_back(b + n);
    n = 0;
  }
  return rest.buffers.empty();
}

// Sends what write_now left over, waiting for the socket as long as `timeout` allows per write.
// Together, with no coroutine frame in the common case:
//   IoStatus s = write_now(sock, bufs, rest) ? rest.status : co_await write_rest(sock, rest, d, t);
template <class Stream>
Task<IoStatus> write_rest(Stream& s, WriteRest& rest, Deadline& d, double timeout) {
  IoResult r = co_await async_write_all(s, rest.buffers, d, timeout);
  co_return write_done(r, d);
}

}  // namespace portico::http
