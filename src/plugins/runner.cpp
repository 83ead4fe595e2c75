#include "plugins/runner.hpp"

#include <algorithm>

#include "plugins/consumers.hpp"

namespace portico::plugins {
namespace {

// The route's plugins with the consumer's merged in: a consumer's plugin replaces the route's
// of the same name (APISIX: Consumer > Route), then all by priority.
void merge_consumer(Context& ctx, const Chain* route, const PluginSet& consumer) {
  size_t first = ctx.global_count;
  ctx.active.resize(first);
  struct Item {
    int priority;
    const Plugin* plugin;
  };
  Item items[64];
  size_t n = 0;
  for (const PluginEntry& e : consumer.entries)
    if (e.plugin && !e.disabled && n < 64) items[n++] = {e.type->priority, e.plugin.get()};
  if (route) {
    for (const PluginEntry* e : route->entries) {
      if (n >= 64) break;
      const PluginEntry* own = consumer.find(e->type->name);
      if (own && own->plugin) continue;  // replaced (or disabled) by the consumer's
      items[n++] = {e->type->priority, e->plugin.get()};
    }
  }
  std::stable_sort(items, items + n,
                   [](const Item& a, const Item& b) { return a.priority > b.priority; });
  for (size_t i = 0; i < n; ++i) ctx.active.push_back(items[i].plugin);
}

bool has_own_plugins(const PluginSet* set) {
  if (!set) return false;
  return std::any_of(set->entries.begin(), set->entries.end(),
                     [](const PluginEntry& e) { return e.plugin && !e.disabled; });
}

}  // namespace

namespace {

enum Stage : uint8_t {
  GlobalRewrite,
  GlobalAccess,
  RouteRewrite,
  ConsumerJoins,
  ConsumerRewrite,
  RouteAccess
};

// The consumer's own plugins, whose rewrite phase runs once they join (ConsumerRewrite).
const PluginSet& consumer_plugins(const Context& ctx) { return *ctx.consumer->plugins; }

// Runs from the saved position to an answer, the end, or a plugin that must be awaited
// (ctx.phase_next is then that plugin, in the list the stage walks).
Step advance(Context& ctx) {
  size_t& i = ctx.phase_next;
  while (true) {
    switch (ctx.phase_stage) {
      case GlobalRewrite:
        for (; i < ctx.global_count; ++i) {
          if (ctx.active[i]->waits_in_rewrite()) return Step::Wait;
          if (ctx.active[i]->rewrite(ctx) == Step::Respond) return Step::Respond;
        }
        ctx.phase_stage = GlobalAccess;
        i = 0;
        break;
      case GlobalAccess:
        for (; i < ctx.global_count; ++i) {
          if (ctx.active[i]->waits_in_access()) return Step::Wait;
          if (ctx.active[i]->access(ctx) == Step::Respond) return Step::Respond;
        }
        ctx.phase_stage = RouteRewrite;
        break;
      case RouteRewrite:
        for (; i < ctx.active.size(); ++i) {
          if (ctx.active[i]->waits_in_rewrite()) return Step::Wait;
          if (ctx.active[i]->rewrite(ctx) == Step::Respond) return Step::Respond;
        }
        ctx.phase_stage = ConsumerJoins;
        break;
      case ConsumerJoins:
        ctx.phase_stage = RouteAccess;
        i = ctx.global_count;
        if (ctx.consumer && has_own_plugins(ctx.consumer->plugins.get())) {
          merge_consumer(ctx, ctx.route_chain, consumer_plugins(ctx));
          // The consumer's plugins join after the route's rewrite phase ran: theirs runs now.
          ctx.phase_stage = ConsumerRewrite;
          i = 0;
        }
        break;
      case ConsumerRewrite: {
        const auto& own = consumer_plugins(ctx).entries;
        for (; i < own.size(); ++i) {
          const Plugin* p = own[i].disabled ? nullptr : own[i].plugin.get();
          if (!p) continue;
          if (p->waits_in_rewrite()) return Step::Wait;
          if (p->rewrite(ctx) == Step::Respond) return Step::Respond;
        }
        ctx.phase_stage = RouteAccess;
        i = ctx.global_count;
        break;
      }
      default:
        for (; i < ctx.active.size(); ++i) {
          if (ctx.active[i]->waits_in_access()) return Step::Wait;
          if (ctx.active[i]->access(ctx) == Step::Respond) return Step::Respond;
        }
        return Step::Continue;
    }
  }
}

// The plugin advance() stopped at, and its phase's awaitable.
Task<Step> run_waiting(Context& ctx) {
  switch (ctx.phase_stage) {
    case GlobalRewrite:
    case RouteRewrite:
      return ctx.active[ctx.phase_next]->rewrite_async(ctx);
    case ConsumerRewrite:
      return consumer_plugins(ctx).entries[ctx.phase_next].plugin->rewrite_async(ctx);
    default:
      return ctx.active[ctx.phase_next]->access_async(ctx);
  }
}

}  // namespace

Step start_request_phases(Context& ctx, const Chain* global, const Chain* route) {
  ctx.active.clear();
  if (global)
    for (const PluginEntry* e : global->entries) ctx.active.push_back(e->plugin.get());
  ctx.global_count = ctx.active.size();
  if (route)
    for (const PluginEntry* e : route->entries) ctx.active.push_back(e->plugin.get());
  ctx.route_chain = route;
  ctx.phase_stage = GlobalRewrite;
  ctx.phase_next = 0;
  return advance(ctx);
}

Task<Step> finish_request_phases(Context& ctx) {
  while (true) {
    if (co_await run_waiting(ctx) == Step::Respond) co_return Step::Respond;
    ++ctx.phase_next;
    Step s = advance(ctx);
    if (s != Step::Wait) co_return s;
  }
}

size_t body_limit(const Context& ctx) {
  size_t limit = 0;
  for (const Plugin* p : ctx.active) limit = std::max(limit, p->body_limit());
  return limit;
}

bool body_length_required(const Context& ctx) {
  for (const Plugin* p : ctx.active)
    if (p->needs_body_length()) return true;
  return false;
}

Step run_body_phase(Context& ctx, std::string_view body) {
  for (const Plugin* p : ctx.active)
    if (p->body_limit() > 0 &&
        p->body(ctx, body.substr(0, std::min(body.size(), p->body_limit()))) == Step::Respond)
      return Step::Respond;
  return Step::Continue;
}

Step run_before_proxy(Context& ctx) {
  for (const Plugin* p : ctx.active)
    if (p->before_proxy(ctx) == Step::Respond) return Step::Respond;
  return Step::Continue;
}

void run_header_filter(Context& ctx) {
  for (const Plugin* p : ctx.active) p->header_filter(ctx);
}

size_t response_body_limit(const Context& ctx) {
  size_t limit = 0;
  for (const Plugin* p : ctx.active) limit = std::max(limit, p->response_body_limit(ctx));
  return limit;
}

void run_body_filter(Context& ctx, std::string& body) {
  for (bool encoders : {false, true})
    for (const Plugin* p : ctx.active)
      // (Each within its own limit: another plugin may have had the body read further.)
      if (p->encodes_body() == encoders && p->response_body_limit(ctx) >= body.size() &&
          p->response_body_limit(ctx) > 0)
        p->body_filter(ctx, body);
}

void run_log(Context& ctx) {
  if (ctx.log_done) return;
  ctx.log_done = true;
  for (const Plugin* p : ctx.active) p->log(ctx);
  ctx.request_local.reset();
}

}  // namespace portico::plugins
