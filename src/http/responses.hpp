// Answers the gateway writes itself (errors, 100 Continue) and the access log line.
#pragma once

#include <string>
#include <string_view>

#include "http/exchange.hpp"

namespace portico::http {

const char* status_reason(int status);

// A complete response with a JSON body {"error_msg": "..."} (the APISIX shape); the answer to
// HEAD (`head_request`) has the Content-Length of that body and no body.
void build_error_response(std::string& out, int status, std::string_view message, bool keep_alive,
                          bool head_request);

// Counts the finished exchange in the worker's metrics and appends one JSON line describing it
// to the worker's access log buffer.
// `log_phase` false: the plugins' log phase runs later (a session logged at upgrade time runs it
// when it ends).
void record_exchange(ClientConnection& c, Exchange& x, bool log_phase = true);
// The exchange as the log phase sees it now (Context::facts): for a log phase that runs later
// than record_exchange (a session's end) or without it (a client gone mid-request).
void fill_log_facts(Exchange& x);

// Runs the log phase when an exception unwinds through its scope before that phase ran: limit-conn
// would otherwise keep its slot (renewed for as long as the node runs), a logger would miss the
// entry. Nothing on a normal return, nor when a frame is destroyed with its io_context. Declare it
// after what the Context may point into (a session's SessionPins), so it runs before they go.
class LogPhaseOnThrow {
 public:
  explicit LogPhaseOnThrow(Exchange& x);
  ~LogPhaseOnThrow();
  LogPhaseOnThrow(const LogPhaseOnThrow&) = delete;
  LogPhaseOnThrow& operator=(const LogPhaseOnThrow&) = delete;

 private:
  Exchange& x_;
  int exceptions_;
};

}  // namespace portico::http
