// What APISIX's loggers (http-logger, file-logger, ...) write per request, read the same way by
// each: APISIX's full entry (request, response, server, upstream, latencies) or the user's
// `log_format`, with the request and response bodies when asked for. LoggerPlugin does the
// phases; a logger only says where an entry goes.
#pragma once

#include <optional>
#include <string>

#include "plugins/plugin.hpp"
#include "router/vars_expr.hpp"

namespace portico::plugins {

struct LogEntryConfig {
  // Keys to values: "$var" is the variable (left out when empty), any other value is itself,
  // objects nest. Null: APISIX's full entry.
  std::optional<json> format;
  bool include_req_body = false;
  std::optional<router::VarsExpr> req_body_expr;  // only requests it matches
  size_t max_req_body = 512 * 1024;
  bool include_resp_body = false;
  std::optional<router::VarsExpr> resp_body_expr;
  size_t max_resp_body = 512 * 1024;
};

// A log_format: names to "$variable", text or objects, up to five levels.
bool valid_log_format(const json& format);

// Reads log_format, include_req_body(_expr), include_resp_body(_expr), max_req_body_bytes and
// max_resp_body_bytes.
void read_log_entry_config(config::ObjectReader& r, LogEntryConfig& out);

// A plugin that writes one entry per request in the log phase. The bodies it was asked for are
// kept (the request body from the body phase, the response body from body_filter, each up to
// its limit; a longer response streams through and is logged without its body).
class LoggerPlugin : public Plugin {
 public:
  LogEntryConfig entry;
  std::string_view plugin_name;  // whose plugin_metadata log_format applies

  size_t body_limit() const override { return entry.include_req_body ? entry.max_req_body : 0; }
  // A logger only watches: a chunked body passes, logged without the body.
  bool needs_body_length() const override { return false; }
  Step body(Context& ctx, std::string_view body) const override;
  size_t response_body_limit(const Context& ctx) const override;
  void body_filter(Context& ctx, std::string& body) const override;
  void log(Context& ctx) const override;

  // The entry as one JSON object (no newline).
  std::string build_entry(const Context& ctx) const;

 protected:
  // Where the entry goes.
  virtual void write(Context& ctx, std::string entry) const = 0;
};

}  // namespace portico::plugins
