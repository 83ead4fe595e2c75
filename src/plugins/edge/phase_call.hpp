// What the ngx.* and core.* functions act on while one plugin instance runs its edge functions
// for one phase of one request: the request's Context, the phase, and what the functions asked
// for (printed output, an exit status).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "plugins/context.hpp"

namespace portico::plugins::edge {

// APISIX's serverless phases, in the order a request meets them.
enum class Phase : uint8_t { Rewrite, Access, BeforeProxy, HeaderFilter, BodyFilter, Log };
const char* phase_name(Phase p);
std::optional<Phase> parse_phase(std::string_view name);

// One request's edge-function state that lasts across phases (in Context::request_local).
struct RequestFacts {
  int table_ref = -2;              // Lua registry: {ngx.ctx table, the `ctx` argument}
  std::optional<int> status;       // ngx.status set before the response exists
  std::optional<std::string> uri;  // ngx.req.set_uri: what ngx.var.uri says from then on
};

struct PhaseCall {
  PhaseCall(Context& c, Phase p, RequestFacts& r, std::string* b)
      : ctx(c), phase(p), request(r), body(b) {}

  Context& ctx;
  Phase phase;
  RequestFacts& request;
  std::string* body;      // body_filter: the whole response body (ngx.arg[1])
  std::string output;     // ngx.say / ngx.print
  int output_status = 0;  // the status when output began (ngx.status, or 200)
  bool exited = false;    // ngx.exit / ngx.redirect / core.response.exit was called
  int exit_status = 0;
  std::string exit_content_type;  // core.response.exit with a table: application/json

  // rewrite, access and before_proxy may still answer the request themselves.
  bool may_answer() const { return phase <= Phase::BeforeProxy; }
};

// The call the API acts on, on this thread (null outside a phase run: validation, tests).
PhaseCall* current_call();

class CallScope {
 public:
  explicit CallScope(PhaseCall& call);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

 private:
  PhaseCall* previous_;
};

}  // namespace portico::plugins::edge
