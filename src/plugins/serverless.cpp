// serverless-pre-function (APISIX priority 10000) and serverless-post-function (-2000): edge
// functions in Lua from the config, run in one phase of the request as f(conf, ctx), in a
// sandbox with a time and a memory limit (plugins/edge/, docs/edge-functions.md).
#include <cstdio>

#include "config/node_config.hpp"
#include "core/log.hpp"
#include "metrics/series_counters.hpp"
#include "plugins/context.hpp"
#include "plugins/edge/edge_runtime.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

using edge::Phase;

// body_filter functions get bodies up to this size whole; longer ones pass unchanged.
constexpr size_t kMaxFilteredBody = 1 << 20;

class Serverless final : public Plugin {
 public:
  Serverless(std::string_view name, Phase phase, std::shared_ptr<const edge::FunctionSet> set,
             std::optional<double> time_limit)
      : name_(name), phase_(phase), set_(std::move(set)), time_limit_(time_limit) {}

  Step rewrite(Context& ctx) const override { return in_request(ctx, Phase::Rewrite); }
  Step access(Context& ctx) const override { return in_request(ctx, Phase::Access); }
  Step before_proxy(Context& ctx) const override { return in_request(ctx, Phase::BeforeProxy); }

  void header_filter(Context& ctx) const override {
    if (phase_ != Phase::HeaderFilter || run(ctx, nullptr).failure == edge::Failure::None) return;
    // The head is not sent yet: the client gets a 500 instead of a half-edited answer.
    ctx.response_status = 500;
    ctx.response_body = failure_body();
    ctx.response_headers.push_back({HeaderEdit::Op::Set, "Content-Type", "application/json"});
  }

  size_t response_body_limit(const Context&) const override {
    return phase_ == Phase::BodyFilter ? kMaxFilteredBody : 0;
  }

  void body_filter(Context& ctx, std::string& body) const override {
    if (phase_ != Phase::BodyFilter) return;
    // The status has been decided by now: a failing function leaves the body as it came.
    std::string original = body;
    if (run(ctx, &body).failure != edge::Failure::None) body = std::move(original);
  }

  void log(Context& ctx) const override {
    if (phase_ == Phase::Log) run(ctx, nullptr);
  }

 private:
  static std::string failure_body() { return "{\"error_msg\":\"edge function failed\"}\n"; }

  Step in_request(Context& ctx, Phase phase) const {
    if (phase_ != phase) return Step::Continue;
    edge::Outcome out = run(ctx, nullptr);
    if (out.failure != edge::Failure::None) {
      ctx.respond(500, failure_body());
      return Step::Respond;
    }
    return out.answered ? Step::Respond : Step::Continue;
  }

  edge::Outcome run(Context& ctx, std::string* body) const {
    double seconds = time_limit_ ? *time_limit_ : config::edge_function_limits().time_limit;
    edge::Outcome out = edge::Runtime::current().run(*set_, phase_, ctx, body, seconds);
    if (out.failure != edge::Failure::None) report(ctx, out);
    return out;
  }

  // One line per failure, naming the route and the Lua error (never request data).
  void report(const Context& ctx, const edge::Outcome& out) const {
    std::string_view route = ctx.route_id ? std::string_view(*ctx.route_id) : "-";
    const char* reason = edge::failure_name(out.failure);
    // The Lua error is the function's text: one line of it, so that it cannot forge others.
    const std::string message = log::one_line(out.message, 512);
    log::error("edge function failed: route " + std::string(route) + ", " + name_ + " (" +
               edge::phase_name(phase_) + ") functions[" + std::to_string(out.function) +
               "]: " + reason + ": " + message);
    if (auto* series = metrics::SeriesCounters::current())
      series->add("portico_edge_function_errors_total",
                  "Edge functions (serverless plugins) that failed, by reason.",
                  {{"route", route}, {"plugin", name_}, {"reason", reason}});
  }

  std::string name_;
  Phase phase_;
  std::shared_ptr<const edge::FunctionSet> set_;
  std::optional<double> time_limit_;  // Portico's `time_limit`; else the node's
};

std::shared_ptr<const Plugin> create(std::string_view name, const json& conf,
                                     const std::string& path, Errors& errors) {
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  std::string phase_name = r.string_or("phase", "access");
  std::optional<Phase> phase = edge::parse_phase(phase_name);
  if (!phase)
    r.error("phase",
            "must be one of rewrite, access, before_proxy, header_filter, body_filter, log");
  std::optional<double> time_limit;
  if (r.has("time_limit")) {
    time_limit = r.duration_or("time_limit", 0.01, 0.001, 60);
    const double most = config::edge_function_limits().max_time_limit;
    if (*time_limit > most + 1e-9) {
      char text[96];
      std::snprintf(text, sizeof(text),
                    "is at most %gs here (the node's edge_functions.max_time_limit)", most);
      r.error("time_limit", text);
    }
  }
  std::vector<std::string> sources;
  const json* list = r.raw("functions");
  if (!list || !list->is_array() || list->empty()) {
    r.error("functions", "is required: a non-empty list of Lua code strings");
  } else {
    for (size_t i = 0; i < list->size(); ++i) {
      if ((*list)[i].is_string())
        sources.push_back((*list)[i].get<std::string>());
      else
        errors.add(r.child_path("functions") + "[" + std::to_string(i) + "]",
                   "must be a string of Lua code");
    }
  }
  r.finish();
  if (errors.size() != before) return nullptr;
  // Every chunk is compiled and run once now (as APISIX's check_schema does), so that a
  // syntax error or a chunk that returns no function is a config error, not a 500 later.
  double seconds = time_limit.value_or(config::edge_function_limits().time_limit);
  for (size_t i = 0; i < sources.size(); ++i) {
    std::string why = edge::Runtime::current().check(sources[i], seconds);
    if (!why.empty()) errors.add(r.child_path("functions") + "[" + std::to_string(i) + "]", why);
  }
  if (errors.size() != before) return nullptr;
  json args = conf;  // the functions' `conf` argument, with the default filled in as APISIX does
  args["phase"] = phase_name;
  auto set = std::make_shared<const edge::FunctionSet>(std::move(sources), std::move(args), path);
  return std::make_shared<Serverless>(name, *phase, std::move(set), time_limit);
}

std::shared_ptr<const Plugin> create_pre(const json& conf, const Scope&, const std::string& path,
                                         Errors& errors) {
  return create("serverless-pre-function", conf, path, errors);
}

std::shared_ptr<const Plugin> create_post(const json& conf, const Scope&, const std::string& path,
                                          Errors& errors) {
  return create("serverless-post-function", conf, path, errors);
}

}  // namespace

const PluginType& serverless_pre_function_plugin() {
  static const PluginType type{"serverless-pre-function", 10000, &create_pre};
  return type;
}

const PluginType& serverless_post_function_plugin() {
  static const PluginType type{"serverless-post-function", -2000, &create_post};
  return type;
}

}  // namespace portico::plugins
