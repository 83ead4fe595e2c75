// The API edge functions get: an `ngx` subset so that common APISIX snippets run unchanged,
// `print`, and `require` of a preloaded "apisix.core" subset, "cjson" and "cjson.safe".
// The full list is in docs/edge-functions.md.
#pragma once

#include "plugins/edge/lua_sandbox.hpp"
#include "plugins/edge/phase_call.hpp"

namespace portico::plugins::edge {

// Adds the API to every environment `sandbox` makes from now on.
void install_ngx_api(LuaSandbox& sandbox);

// What a function's answer becomes: `status` with the body at `body_index` (a string, or a
// table sent as JSON; none: the status alone). Used by core.response.exit and for a function
// that returns (status, body) as APISIX plugins do. Throws std::exception when the body
// cannot be encoded.
void set_answer(lua_State* L, PhaseCall& call, int status, int body_index);

// The answer ngx.exit(status) gives when nothing was printed: a small HTML page, as nginx's.
std::string default_page(int status);

}  // namespace portico::plugins::edge
