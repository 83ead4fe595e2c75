// The event loop of the worker thread the caller runs on, for work that a synchronous step
// starts and leaves running (a logger's log phase hands a full batch to a send on its own
// worker). Null on other threads (the control thread, unit tests).
#pragma once

#include "core/asio.hpp"

namespace portico {

const Executor* current_worker_executor();
// Called by a worker thread before it runs its loop.
void set_current_worker_executor(const Executor& executor);

}  // namespace portico
