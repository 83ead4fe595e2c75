// Runs the plugin phases of one request: global rules first, then the route's plugins, with
// the consumer's plugins merged in once an authentication plugin has named the consumer.
#pragma once

#include <string_view>

#include "plugins/context.hpp"
#include "plugins/plugin_set.hpp"

namespace portico::plugins {

// rewrite and access of every plugin, in order, without suspending: Continue, Respond as soon
// as one answers, or Wait when a plugin's access phase must be awaited (a delay, a Redis round
// trip): then `co_await finish_request_phases(ctx)` runs it and the rest. Most requests never
// wait, and so never pay for a coroutine frame here. Fills ctx.active for the later phases.
Step start_request_phases(Context& ctx, const Chain* global, const Chain* route);
Task<Step> finish_request_phases(Context& ctx);
// The most body bytes any active plugin wants to see (0: the body is not inspected).
size_t body_limit(const Context& ctx);
// Whether a request body needs a Content-Length on this request (a plugin reads it).
bool body_length_required(const Context& ctx);
// The body phase, for plugins that asked to see the body.
Step run_body_phase(Context& ctx, std::string_view body);
// Right before the upstream request (Plugin::before_proxy).
Step run_before_proxy(Context& ctx);
void run_header_filter(Context& ctx);
// The most response body bytes any active plugin wants whole (0: stream it untouched).
size_t response_body_limit(const Context& ctx);
void run_body_filter(Context& ctx, std::string& body);
// Once per request: a second call does nothing. Releases ctx.request_local afterwards.
void run_log(Context& ctx);

}  // namespace portico::plugins
