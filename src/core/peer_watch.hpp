// PeerWatch: notices that a connection's peer went away (FIN or reset) while the gateway works
// on its behalf elsewhere, and cancels that work. A proxied request whose client gave up (a
// mobile app's own timeout, a closed tab) stops waiting on its upstream and is not retried on
// the next node: nginx's default (`proxy_ignore_client_abort off`, status 499). Otherwise one
// impatient client keeps every node of an upstream busy for `retries` x the read timeout.
//
// No system call and no operation per request: the worker looks at its watches every deadline
// tick and asks what epoll last reported for each peer's socket (edge_read.hpp).
#pragma once

#include <boost/intrusive/list.hpp>

#include "core/asio.hpp"
#include "core/deadline.hpp"

namespace portico {

class PeerWatch : public DeadlineHook {  // (the same self-unlinking hook as deadlines)
 public:
  PeerWatch() = default;
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

  // From now on `peer` going away cancels the pending operations of `work` (at every tick, until
  // stop()).
  void start(Socket& peer, Socket& work);
  void stop() { peer_ = nullptr; }
  // The peer went away while watched (and `work` was cancelled then).
  bool gone() const { return gone_; }

 private:
  friend class PeerWatchList;
  void check();

  Socket* peer_ = nullptr;
  Socket* work_ = nullptr;
  bool gone_ = false;
};

class PeerWatchList {
 public:
  void add(PeerWatch& w) { list_.push_back(w); }  // unlinks itself when destroyed
  void scan();

 private:
  boost::intrusive::list<PeerWatch, boost::intrusive::constant_time_size<false>> list_;
};

}  // namespace portico
