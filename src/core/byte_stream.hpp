// What a connection (a client's, or one to an upstream) reads and writes through: its TCP
// socket, or TLS over it. Plain connections keep the socket's own fast paths (edge reads, one
// non-blocking send); TLS goes through OpenSSL (tls/stream.hpp), out of this header.
#pragma once

#include <boost/asio/write.hpp>
#include <string>

#include "core/asio.hpp"
#include "core/edge_read.hpp"
#include "tls/stream.hpp"

namespace portico {

class ByteStream {
 public:
  explicit ByteStream(Socket& socket) : socket_(&socket) {}

  Socket& socket() { return *socket_; }
  bool secure() const { return tls_ != nullptr; }
  void use_tls(tls::StreamPtr tls) {
    tls_ = std::move(tls);
    if (tls_) tls::rebind(*tls_, socket_);
  }
  // The TLS session, for a keep-alive pool (it points at no socket until use_tls takes it back).
  tls::StreamPtr release_tls() {
    if (tls_) tls::rebind(*tls_, nullptr);
    return std::move(tls_);
  }
  // TLS holds bytes read ahead of what was asked (see tls::holds_input).
  bool holds_input() const { return tls_ && tls::holds_input(*tls_); }
  tls::Stream* tls() { return tls_.get(); }

  // Reads what is available into `b`.
  Task<IoResult> read_some(asio::mutable_buffer b) {
    if (tls_) return tls::read_some(*tls_, b);
    return async_read_edge(*socket_, b, await_ec);
  }

  // Writes all of `buffers` (which must outlive the operation). Over TLS a sequence of several
  // buffers is copied into one record-sized write first: each buffer would otherwise become a
  // record and a send of its own. One write at a time per stream.
  template <class ConstBuffers>
  Task<IoResult> write_all(const ConstBuffers& buffers) {
    if (!tls_) return asio::async_write(*socket_, buffers, await_ec);
    auto begin = asio::buffer_sequence_begin(buffers);
    auto end = asio::buffer_sequence_end(buffers);
    if (begin != end && std::next(begin) == end)
      return tls::write_all(*tls_, asio::const_buffer(*begin));
    staged_.clear();
    if (staged_.capacity() > kKeepStaged) std::string().swap(staged_);  // after a big one
    for (auto it = begin; it != end; ++it) {
      asio::const_buffer b(*it);
      staged_.append(static_cast<const char*>(b.data()), b.size());
    }
    return tls::write_all(*tls_, asio::buffer(staged_));
  }

  // Sends what the socket takes at once without waiting (a plain connection's common case: no
  // asynchronous operation). Over TLS nothing is sent here: write_all does it.
  template <class ConstBuffers>
  size_t write_now(const ConstBuffers& buffers, error_code& ec) {
    ec.clear();
    if (tls_) return 0;
    size_t n = socket_->write_some(buffers, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) ec.clear();
    return n;
  }

  // The response in flight was cut (upstream failure, write timeout): TLS ends without
  // close_notify, so the client cannot take what it got for a whole response.
  void abandon() {
    if (tls_) tls::abandon(*tls_);
  }

 private:
  static constexpr size_t kKeepStaged = 64 * 1024;
  Socket* socket_;
  tls::StreamPtr tls_;
  std::string staged_;
};

}  // namespace portico
