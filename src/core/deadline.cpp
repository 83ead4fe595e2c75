#include "core/deadline.hpp"

namespace portico {

void Deadline::fire() {
  when_ms_ = 0;
  fired_ = true;
  for (Socket* s : targets_) {
    if (!s || !s->is_open()) continue;
    error_code ec;
    if (close_)
      s->close(ec);
    else
      s->cancel(ec);
  }
}

void DeadlineList::scan(int64_t now_ms) {
  // cancel()/close() only queue completions, so the list cannot change while we walk it
  for (Deadline& d : list_)
    if (d.when_ms_ != 0 && d.when_ms_ <= now_ms) d.fire();
}

}  // namespace portico
