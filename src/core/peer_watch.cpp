#include "core/peer_watch.hpp"

#include "core/edge_read.hpp"

namespace portico {

void PeerWatch::start(Socket& peer, Socket& work) {
  watch_peer_close(peer);
  peer_ = &peer;
  work_ = &work;
}

void PeerWatch::check() {
  if (!peer_ || (!gone_ && !peer_closed(*peer_))) return;
  gone_ = true;
  // Again at every tick until stopped: the work may have been between two operations (the last
  // one's completion queued), and the next one would not have been cancelled.
  error_code ignored;
  work_->cancel(ignored);
}

void PeerWatchList::scan() {
  // cancel() only queues completions, so the list cannot change while we walk it
  for (PeerWatch& w : list_) w.check();
}

}  // namespace portico
