// `vars` conditions evaluated inside plugins (response-rewrite's): the request's variables as
// when routes are matched, plus what is known by the time the plugin runs: the route, service
// and consumer, and the response status.
#pragma once

#include <charconv>

#include "http/request_vars.hpp"
#include "plugins/consumers.hpp"
#include "plugins/context.hpp"

namespace portico::plugins {

class ContextVars final : public router::VarSource {
 public:
  explicit ContextVars(const Context& ctx)
      : ctx_(ctx),
        request_(*ctx.req, ctx.path, ctx.client_ip, ctx.client_port, ctx.server_port, ctx.https) {}

  std::optional<std::string_view> get(const router::VarRef& var) const override {
    using K = router::VarKind;
    switch (var.kind) {
      case K::RouteId:
        return present(ctx_.route_id);
      case K::ServiceId:
        return present(ctx_.service_id);
      case K::ConsumerName:
        return ctx_.consumer ? present(&ctx_.consumer->username) : std::nullopt;
      case K::Status:
        return number(ctx_.status);
      case K::UpstreamStatus:
        return ctx_.response ? number(ctx_.response->status) : std::nullopt;
      default:
        return request_.get(var);
    }
  }
  bool has_value(const router::VarRef& var, std::string_view value) const override {
    return after_routing(var.kind) ? VarSource::has_value(var, value)
                                   : request_.has_value(var, value);
  }

 private:
  static bool after_routing(router::VarKind k) {
    using K = router::VarKind;
    return k == K::RouteId || k == K::ServiceId || k == K::ConsumerName || k == K::Status ||
           k == K::UpstreamStatus;
  }
  static std::optional<std::string_view> present(const std::string* s) {
    if (!s || s->empty()) return std::nullopt;
    return std::string_view(*s);
  }
  std::optional<std::string_view> number(int n) const {
    if (n <= 0) return std::nullopt;
    auto [end, ec] = std::to_chars(digits_, digits_ + sizeof digits_, n);
    return std::string_view(digits_, static_cast<size_t>(end - digits_));
  }

  const Context& ctx_;
  http::RequestVars request_;
  mutable char digits_[12];
};

}  // namespace portico::plugins
