// fault-injection (APISIX priority 11000, rewrite): delays requests or answers them with a set
// status, for a share of requests or those matching `vars`, to rehearse how clients and
// callers behave when an upstream is slow or failing. The delay is a timer: the worker keeps
// serving other requests meanwhile.
#include <random>

#include "core/thread_rng.hpp"

#include "plugins/context.hpp"
#include "plugins/context_vars.hpp"
#include "plugins/header_config.hpp"
#include "plugins/plugin.hpp"
#include "plugins/var_template.hpp"

namespace portico::plugins {
namespace {

// When a fault applies: `percentage` of requests (sampled per request) that match any of the
// `vars` expressions (each an APISIX `vars` list; none given: every request).
struct Trigger {
  int percentage = 100;
  bool has_vars = false;
  std::vector<router::VarsExpr> any_of;

  bool applies(const Context& ctx) const {
    if (percentage < 100 && !sampled(percentage)) return false;
    if (!has_vars) return true;
    ContextVars vars(ctx);
    for (const auto& e : any_of)
      if (e.eval(vars)) return true;
    return false;  // APISIX: an empty `vars` list never matches
  }

  static bool sampled(int percentage) {
    return static_cast<int>(thread_rng()() % 100) < percentage;
  }
};

struct Abort {
  Trigger when;
  int status = 0;
  std::optional<VarTemplate> body;
  HeaderTemplates headers;
};

struct Delay {
  Trigger when;
  double seconds = 0;
};

class FaultInjection final : public Plugin {
 public:
  std::optional<Abort> abort;
  std::optional<Delay> delay;

  bool waits_in_rewrite() const override { return delay.has_value(); }

  Step rewrite(Context& ctx) const override {
    return abort && abort->when.applies(ctx) ? answer(ctx) : Step::Continue;
  }

  // APISIX decides both faults before the delay, then aborts after it.
  Task<Step> rewrite_async(Context& ctx) const override {
    bool aborts = abort && abort->when.applies(ctx);
    if (delay->when.applies(ctx) && delay->seconds > 0) {
      Timer timer(co_await asio::this_coro::executor);
      timer.expires_after(std::chrono::microseconds(static_cast<int64_t>(delay->seconds * 1e6)));
      co_await timer.async_wait(await_ec);
    }
    co_return aborts ? answer(ctx) : Step::Continue;
  }

 private:
  Step answer(Context& ctx) const {
    for (const auto& [name, value] : abort->headers)
      ctx.response_headers.push_back({HeaderEdit::Op::Set, name, value.render(ctx)});
    ctx.respond(abort->status, abort->body ? abort->body->render(ctx) : std::string(),
                abort->body ? "text/plain" : "");
    return Step::Respond;
  }
};

Trigger read_trigger(config::ObjectReader& r) {
  Trigger t;
  t.percentage = static_cast<int>(r.integer_or("percentage", 100, 0, 100));
  const json* vars = r.raw("vars");
  if (!vars) return t;
  t.has_vars = true;
  if (!vars->is_array() || vars->size() > 20) {
    r.error("vars",
            "must be a list of up to 20 `vars` expressions, e.g. [[[\"arg_name\", \"==\", "
            "\"jack\"]]]");
    return t;
  }
  for (size_t i = 0; i < vars->size(); ++i) {
    std::string path = r.child_path("vars") + "[" + std::to_string(i) + "]";
    if (!(*vars)[i].is_array()) {
      r.errors().add(path, "must be a list of [variable, operator, value] conditions");
      continue;
    }
    if (auto e = router::VarsExpr::compile((*vars)[i], path, r.errors()))
      t.any_of.push_back(std::move(*e));
  }
  return t;
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<FaultInjection>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  if (const json* a = r.raw("abort")) {
    config::ObjectReader ar(*a, r.child_path("abort"), errors);
    Abort abort;
    auto status = ar.integer("http_status", 200, 599);
    if (!ar.has("http_status")) ar.error("http_status", "is required");
    abort.status = static_cast<int>(status.value_or(0));
    if (auto body = ar.string("body")) abort.body.emplace(*body);
    if (const json* h = ar.raw("headers"))
      abort.headers = read_header_templates(*h, ar.child_path("headers"), errors);
    abort.when = read_trigger(ar);
    ar.finish();
    p->abort = std::move(abort);
  }
  if (const json* d = r.raw("delay")) {
    config::ObjectReader dr(*d, r.child_path("delay"), errors);
    Delay delay;
    const json* seconds = dr.raw("duration");
    if (!seconds || !seconds->is_number() || seconds->get<double>() < 0 ||
        seconds->get<double>() > 3600)
      dr.error("duration", "is required and must be a number of seconds from 0 to 3600");
    else
      delay.seconds = seconds->get<double>();
    delay.when = read_trigger(dr);
    dr.finish();
    p->delay = std::move(delay);
  }
  if (!p->abort && !p->delay) errors.add(path, "needs abort or delay");
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& fault_injection_plugin() {
  static const PluginType type{"fault-injection", 11000, &create};
  return type;
}

}  // namespace portico::plugins
