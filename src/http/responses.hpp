// Answers the gateway writes itself (errors, 100 Continue) and the access log line.
#pragma once

#include <string>
#include <string_view>

#include "http/exchange.hpp"

namespace portico::http {

const char* status_reason(int status);

// A complete response with a JSON body {"error_msg": "..."} (the APISIX shape).
void build_error_response(std::string& out, int status, std::string_view message, bool keep_alive);

// Counts the finished exchange in the worker's metrics and appends one JSON line describing it
// to the worker's access log buffer.
void record_exchange(ClientConnection& c, Exchange& x);

}  // namespace portico::http
