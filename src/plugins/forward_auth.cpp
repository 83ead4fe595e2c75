// forward-auth (APISIX priority 2002, rewrite): asks an authorization service whether the
// request may pass, as nginx's auth_request and Traefik's ForwardAuth do. The service sees the
// request's method, host, URI, scheme and client (X-Forwarded-*) and chosen headers; a 2xx lets
// the request go on, with headers of the answer added for the upstream; anything else is the
// client's answer. The call waits on a timer-bounded connection: the worker serves others.
#include "core/log.hpp"
#include "http/service_call.hpp"
#include "plugins/context.hpp"
#include "plugins/header_config.hpp"
#include "plugins/plugin.hpp"
#include "plugins/var_template.hpp"

namespace portico::plugins {
namespace {

std::string_view answer_header(const http::ServiceAnswer& a, std::string_view name) {
  for (const auto& [n, v] : a.headers)
    if (http::iequals(n, name)) return v;
  return {};
}

// Headers that frame or route a message: the gateway writes them itself, on both calls.
bool gateway_owned(std::string_view name) {
  for (std::string_view n : {"host", "content-length", "transfer-encoding", "connection", "expect",
                             "upgrade", "te", "keep-alive", "trailer", "proxy-connection"})
    if (http::iequals(name, n)) return true;
  return false;
}

class ForwardAuth final : public Plugin {
 public:
  http::ServiceUrl url;
  std::string uri_text;  // for the log
  bool verify_tls = true;
  std::vector<std::string> request_headers;
  HeaderTemplates extra_headers;
  std::vector<std::string> upstream_headers;
  std::vector<std::string> client_headers;
  double timeout = 3;
  bool allow_degradation = false;
  int status_on_error = 403;

  bool waits_in_rewrite() const override { return true; }

  Task<Step> rewrite_async(Context& ctx) const override {
    http::ServiceRequest call;
    call.timeout = timeout;
    call.verify_tls = verify_tls;
    call.headers = {{"X-Forwarded-Proto", ctx.https ? "https" : "http"},
                    {"X-Forwarded-Method", std::string(ctx.req->method)},
                    {"X-Forwarded-Host", std::string(ctx.var("host"))},
                    {"X-Forwarded-Uri", std::string(ctx.req->target)},
                    {"X-Forwarded-For", ctx.client_ip}};
    auto set = [&](std::string_view name, std::string value) {
      for (auto& [n, v] : call.headers)
        if (http::iequals(n, name)) {
          v = std::move(value);
          return;
        }
      call.headers.emplace_back(std::string(name), std::move(value));
    };
    for (const auto& [name, value] : extra_headers) set(name, value.render(ctx));
    // The client's own headers, when asked for, but never in place of the gateway's
    // X-Forwarded-* (a client must not pick the URI it is judged on).
    for (const std::string& name : request_headers) {
      std::string_view value = ctx.header(name);
      bool taken = false;
      for (const auto& [n, v] : call.headers) taken = taken || http::iequals(n, name);
      if (!value.empty() && !taken) call.headers.emplace_back(name, std::string(value));
    }
    http::ServiceAnswer answer = co_await http::call_service(url, call);
    if (answer.status == 0) {
      log::warn("forward-auth: " + uri_text + ": " + answer.error +
                (allow_degradation ? " (allow_degradation: the request goes on)" : ""));
      if (allow_degradation) {
        remove_upstream_headers(ctx);  // unchecked, the client's own claims do not pass either
        co_return Step::Continue;
      }
      ctx.respond(status_on_error, "", "");
      co_return Step::Respond;
    }
    if (answer.status >= 300) {  // the service's answer is the client's
      for (const std::string& name : client_headers)
        for (const auto& [n, v] : answer.headers)  // every line (Set-Cookie)
          if (http::iequals(n, name))
            ctx.response_headers.push_back({HeaderEdit::Op::Add, name, v});
      ctx.respond(answer.status, std::move(answer.body), "");
      co_return Step::Respond;
    }
    // A header the service did not send is removed: a client cannot send its own in its place.
    for (const std::string& name : upstream_headers) {
      std::string_view value = answer_header(answer, name);
      if (value.empty())
        ctx.upstream.headers.push_back({HeaderEdit::Op::Remove, name, ""});
      else
        ctx.upstream.headers.push_back({HeaderEdit::Op::Set, name, std::string(value)});
    }
    co_return Step::Continue;
  }

 private:
  void remove_upstream_headers(Context& ctx) const {
    for (const std::string& name : upstream_headers)
      ctx.upstream.headers.push_back({HeaderEdit::Op::Remove, name, ""});
  }
};

std::vector<std::string> header_names(config::ObjectReader& r, const char* field) {
  std::vector<std::string> names = r.string_list(field);
  for (const std::string& n : names)
    if (!valid_header_name(n))
      r.error(field, "\"" + n + "\" is not a header name");
    else if (gateway_owned(n))
      r.error(field, "\"" + n + "\" is written by the gateway itself");
  return names;
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<ForwardAuth>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  p->uri_text = r.string_or("uri", "");
  std::string why;
  if (p->uri_text.empty())
    r.error("uri", "is required");
  else if (auto url = http::parse_service_url(p->uri_text, why))
    p->url = std::move(*url);
  else
    r.error("uri", why);
  p->verify_tls = r.boolean_or("ssl_verify", true);
  std::string method = r.string_or("request_method", "GET");
  if (method == "POST")
    r.error("request_method",
            "POST (the request body sent to the service) is not supported: "
            "use GET, which sends the request's method, URI and headers");
  else if (method != "GET")
    r.error("request_method", "must be GET");
  p->request_headers = header_names(r, "request_headers");
  p->upstream_headers = header_names(r, "upstream_headers");
  p->client_headers = header_names(r, "client_headers");
  if (const json* extra = r.raw("extra_headers")) {
    p->extra_headers = read_header_templates(*extra, r.child_path("extra_headers"), errors);
    for (const auto& [name, value] : p->extra_headers)
      if (gateway_owned(name))
        errors.add(r.child_path("extra_headers") + "." + name, "is written by the gateway itself");
  }
  p->timeout = static_cast<double>(r.integer_or("timeout", 3000, 1, 60000)) / 1000;
  // Connections to the service are not kept (each call is a new one): accepted for configs
  // written for APISIX.
  r.boolean_or("keepalive", true);
  r.integer_or("keepalive_timeout", 60000, 1000, 86400000);
  r.integer_or("keepalive_pool", 5, 1, 100000);
  p->allow_degradation = r.boolean_or("allow_degradation", false);
  p->status_on_error = static_cast<int>(r.integer_or("status_on_error", 403, 200, 599));
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& forward_auth_plugin() {
  static const PluginType type{"forward-auth", 2002, &create};
  return type;
}

}  // namespace portico::plugins
