// async_read_edge: Socket::async_read_some without the wasted recv().
//
// Asio's epoll reactor tries every new read at once (a "speculative" recv) unless the last
// read on the socket returned 0 bytes. In a request/response flow the next bytes are almost
// never there yet, so every read costs a recv() that fails with EAGAIN before the epoll wait:
// measured here, 6 system calls per proxied HTTP request against nginx's 4, and 3 per relayed
// TLV batch against 2. nginx avoids it by remembering that a short read drained the socket
// (its `ready` flag) and waiting for the next edge-triggered event.
//
// This read does the same inside Asio's reactor: its operation reports a short read as
// "exhausted", which makes the reactor skip the speculative attempt until epoll reports the
// socket readable again. The flag is set in the same reactor step as the read, so no event can
// slip in between (setting it afterwards from the completion handler could lose an edge and
// stall the connection).
//
// A short read does not mean drained when the peer's FIN (or a reset) is queued behind the
// data: recv() stops before it, and no new edge will come. As nginx does, the socket is
// registered for EPOLLRDHUP (once, on its first edge read), and a short read counts as
// exhausted only while the epoll events last reported for the socket carry no RDHUP/HUP/ERR;
// once the peer has closed, every read tries recv() first and sees the EOF at once.
//
// Everything else (cancellation by Socket::cancel/close, deadlines, completion tokens,
// allocation through Asio's per-thread recycling cache) behaves as async_read_some.
// Per-operation cancellation slots are not supported (nothing here uses them).
//
// It reaches members Asio keeps private (the reactor's descriptor state: registered events and
// the last reported events, the epoll fd; the socket service's start_op) through pointers to
// members; no Asio code is copied. That ties it to Asio's epoll reactor as shipped in Boost 1.81
// (Debian 12); with any other Boost the plain async_read_some is used.
#pragma once

#include <poll.h>
#include <boost/version.hpp>

#include "core/asio.hpp"

#if BOOST_VERSION / 100 == 1081 && defined(__linux__) && \
    !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#define PORTICO_EDGE_READ 1
#include <sys/epoll.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/detail/epoll_reactor.hpp>
#include <boost/asio/detail/reactive_socket_service.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#include <boost/asio/recycling_allocator.hpp>
#endif

namespace portico {

#if PORTICO_EDGE_READ
namespace edge_read_detail {

namespace ad = asio::detail;
using Service = ad::reactive_socket_service<asio::ip::tcp>;
using Reactor = ad::epoll_reactor;
using Descriptor = Reactor::descriptor_state;

// Protected members: pointers to members named through derived classes.
struct SocketAccess : Socket {
  static Service::implementation_type& impl(Socket& s) {
    return (s.*&SocketAccess::impl_).get_implementation();
  }
  static Service& service(Socket& s) { return (s.*&SocketAccess::impl_).get_service(); }
};
struct ServiceAccess : Service {
  static void start_read(Socket& s, ad::reactor_op* op) {
    // (impl, op type, op, is_continuation, allow the speculative read, noop)
    (SocketAccess::service(s).*&ServiceAccess::start_op)(SocketAccess::impl(s), Reactor::read_op,
                                                         op, false, true, false);
  }
};

// Private members: an explicit instantiation may name them (access is not checked there), and
// the friend function it defines hands the pointer to member out.
template <class Tag, typename Tag::type Member>
struct Expose {
  friend typename Tag::type member(Tag) { return Member; }
};
struct RegisteredEvents {
  using type = uint32_t Descriptor::*;
  friend type member(RegisteredEvents);
};
struct DescriptorMutex {
  using type = ad::conditionally_enabled_mutex Descriptor::*;
  friend type member(DescriptorMutex);
};
struct ReportedEvents {  // what the last epoll_wait reported for the descriptor
  using type = unsigned int ad::scheduler_operation::*;
  friend type member(ReportedEvents);
};
struct EpollFd {
  using type = int Reactor::*;
  friend type member(EpollFd);
};
struct TrySpeculative {  // per operation type: whether the next operation should try at once
  using type = bool (Descriptor::*)[Reactor::max_ops];
  friend type member(TrySpeculative);
};
template struct Expose<RegisteredEvents, &Descriptor::registered_events_>;
template struct Expose<TrySpeculative, &Descriptor::try_speculative_>;
template struct Expose<DescriptorMutex, &Descriptor::mutex_>;
template struct Expose<ReportedEvents, &ad::scheduler_operation::task_result_>;
template struct Expose<EpollFd, &Reactor::epoll_fd_>;

// The descriptor state privately derives from scheduler_operation; a C-style cast is the one
// conversion to an inaccessible base the language allows.
inline unsigned int reported_events(Descriptor* d) {
  return ((ad::scheduler_operation*)d)->*member(ReportedEvents{});
}

constexpr uint32_t kPeerGone = EPOLLRDHUP | EPOLLHUP | EPOLLERR;

// Adds EPOLLRDHUP to the socket's registration (once per socket). If the peer has closed
// already, the modification queues a fresh event that reports it.
inline void watch_peer_close(Socket& s) {
  Descriptor* d = SocketAccess::impl(s).reactor_data_;
  if (!d) return;
  ad::conditionally_enabled_mutex::scoped_lock lock(d->*member(DescriptorMutex{}));
  uint32_t& registered = d->*member(RegisteredEvents{});
  if ((registered & EPOLLRDHUP) || registered == 0) return;
  Reactor& reactor =
      asio::use_service<Reactor>(asio::query(s.get_executor(), asio::execution::context));
  epoll_event ev{};
  ev.events = registered | EPOLLRDHUP;
  ev.data.ptr = d;
  if (epoll_ctl(reactor.*member(EpollFd{}), EPOLL_CTL_MOD, s.native_handle(), &ev) != 0) return;
  registered = ev.events;
  // Asio recycles descriptor states without clearing their last report, which may still tell
  // of the previous socket's FIN: forget it. The modification above has queued a fresh report
  // of whatever is ready (this thread's next epoll_wait delivers it).
  ((ad::scheduler_operation*)d)->*member(ReportedEvents{}) = 0;
}

template <class Handler>
class EdgeRecvOp : public ad::reactor_op {
 public:
  using Alloc = asio::recycling_allocator<EdgeRecvOp>;

  static EdgeRecvOp* create(Socket& s, asio::mutable_buffer buf, Handler&& handler) {
    EdgeRecvOp* p = Alloc().allocate(1);
    return new (p) EdgeRecvOp(s, buf, std::move(handler));
  }

 private:
  EdgeRecvOp(Socket& s, asio::mutable_buffer buf, Handler&& handler)
      : ad::reactor_op(error_code(), &EdgeRecvOp::perform_recv, &EdgeRecvOp::complete),
        fd_(s.native_handle()),
        descriptor_(SocketAccess::impl(s).reactor_data_),
        buf_(buf),
        handler_(std::move(handler)) {}

  static void destroy(EdgeRecvOp* o) {
    o->~EdgeRecvOp();
    Alloc().deallocate(o, 1);
  }

  static status perform_recv(ad::reactor_op* base) {
    auto* o = static_cast<EdgeRecvOp*>(base);
    if (!ad::socket_ops::non_blocking_recv1(o->fd_, o->buf_.data(), o->buf_.size(), 0, true, o->ec_,
                                            o->bytes_transferred_))
      return not_done;  // EAGAIN: stays queued until epoll reports the socket readable
    if (o->bytes_transferred_ == o->buf_.size()) return done;  // more may be waiting
    // Fewer bytes than asked for: TCP handed over all it had, unless a FIN or reset is queued
    // behind them (then the next read must try recv() to see it).
    return (reported_events(o->descriptor_) & kPeerGone) ? done : done_and_exhausted;
  }

  // owner is null when the io_context is destroyed with the operation still queued.
  static void complete(void* owner, ad::scheduler_operation* base, const error_code&, std::size_t) {
    auto* o = static_cast<EdgeRecvOp*>(base);
    Handler handler(std::move(o->handler_));
    error_code ec = o->ec_;
    std::size_t n = o->bytes_transferred_;
    destroy(o);  // before the upcall, which may start the next read
    if (owner) std::move(handler)(ec, n);
  }

  ad::socket_type fd_;
  Descriptor* descriptor_;
  asio::mutable_buffer buf_;
  Handler handler_;
};

}  // namespace edge_read_detail
#endif

// Whether the socket's last read drained it and epoll has reported nothing readable since: then
// no byte and no FIN can be waiting in the kernel, without a system call to ask. This is the
// reactor's own memory (cleared by an edge read's short read, set again by every readiness
// event), nginx's `ready` flag. False whenever it cannot tell (other reads, other reactors).
// An arrival that epoll has not reported yet is not seen, nor one it reported in the batch the
// worker is still going through (the flag is set when the descriptor's events are processed,
// not when epoll_wait returns); nginx has the same window.
inline bool read_drained(Socket& s) {
#if PORTICO_EDGE_READ
  namespace d = edge_read_detail;
  d::Descriptor* state = d::SocketAccess::impl(s).reactor_data_;
  if (!state) return false;
  asio::detail::conditionally_enabled_mutex::scoped_lock lock(state->*member(d::DescriptorMutex{}));
  return !(state->*member(d::TrySpeculative{}))[d::Reactor::read_op];
#else
  (void)s;
  return false;
#endif
}

// Has epoll report the peer's end (FIN or reset) for the socket from now on (once per socket;
// edge reads do it on their first read): peer_closed() then needs no system call.
inline void watch_peer_close(Socket& s) {
#if PORTICO_EDGE_READ
  edge_read_detail::watch_peer_close(s);
#else
  (void)s;
#endif
}

// Whether the peer closed its end (FIN) or reset the connection, as far as epoll has reported
// since watch_peer_close(); unread bytes before the FIN do not hide it. Without the edge
// reactor it asks the kernel (poll).
inline bool peer_closed(Socket& s) {
  if (!s.is_open()) return false;
#if PORTICO_EDGE_READ
  namespace d = edge_read_detail;
  d::Descriptor* state = d::SocketAccess::impl(s).reactor_data_;
  if (!state) return false;
  asio::detail::conditionally_enabled_mutex::scoped_lock lock(state->*member(d::DescriptorMutex{}));
  return (state->*member(d::RegisteredEvents{}) & EPOLLRDHUP) &&
         (d::reported_events(state) & d::kPeerGone);
#else
  pollfd p{s.native_handle(), POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
#endif
}

// Reads what is available into `buf`, completing with (error_code, bytes) like
// Socket::async_read_some.
template <class Token>
auto async_read_edge(Socket& s, asio::mutable_buffer buf, Token&& token) {
#if PORTICO_EDGE_READ
  return asio::async_initiate<Token, void(error_code, std::size_t)>(
      [](auto handler, Socket* s, asio::mutable_buffer buf) {
        namespace d = edge_read_detail;
        if (buf.size() == 0 || !s->is_open())  // Asio's own answers (no-op, bad descriptor)
          return s->async_read_some(buf, std::move(handler));
        d::watch_peer_close(*s);
        auto* op = d::EdgeRecvOp<decltype(handler)>::create(*s, buf, std::move(handler));
        d::ServiceAccess::start_read(*s, op);
      },
      token, &s, buf);
#else
  return s.async_read_some(buf, std::forward<Token>(token));
#endif
}

}  // namespace portico
