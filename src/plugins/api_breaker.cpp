// api-breaker (APISIX priority 1005, access + log): stops sending requests to an upstream that
// keeps failing. Every `unhealthy.failures` unhealthy answers (by status, 5xx) trip the breaker
// for the request's host and path; while it is open the gateway answers `break_response_code`
// itself, for 2, 4, 8... seconds up to `max_breaker_sec`. `healthy.successes` healthy answers
// in a row forget the failures. State is shared by every worker and survives config changes.
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

#include "core/deadline.hpp"

#include "plugins/context.hpp"
#include "plugins/header_config.hpp"
#include "plugins/limit/breaker_table.hpp"
#include "plugins/plugin.hpp"
#include "plugins/var_template.hpp"

namespace portico::plugins {
namespace {

class ApiBreaker final : public Plugin {
 public:
  int code = 0;
  std::string body;
  std::vector<std::pair<std::string, VarTemplate>> headers;
  BreakerRule rule;
  std::vector<int> unhealthy_statuses{500};
  std::vector<int> healthy_statuses{200};
  std::shared_ptr<BreakerTable> table;

  Step access(Context& ctx) const override {
    if (table->size() == 0) return Step::Continue;
    thread_local std::string key;
    key_of(ctx, key);
    // The time now, not the request's start: a delay before this phase (fault-injection) counts.
    if (!table->open(key, rule, wall_now_ms())) return Step::Continue;
    for (const auto& [name, value] : headers)
      ctx.response_headers.push_back({HeaderEdit::Op::Add, name, value.render(ctx)});
    ctx.respond(code, body, body.empty() ? "" : "text/plain");
    return Step::Respond;
  }

  void log(Context& ctx) const override {
    int status = ctx.upstream_status;
    if (status == 0) return;  // answered without the upstream (this breaker, another plugin)
    bool bad = std::find(unhealthy_statuses.begin(), unhealthy_statuses.end(), status) !=
               unhealthy_statuses.end();
    if (!bad && (table->size() == 0 || std::find(healthy_statuses.begin(), healthy_statuses.end(),
                                                 status) == healthy_statuses.end()))
      return;
    thread_local std::string key;
    key_of(ctx, key);
    // When the answer came: a failure that took longer than the break must still open it.
    if (bad)
      table->unhealthy(key, rule, wall_now_ms());
    else
      table->healthy(key, rule, wall_now_ms());
  }

 private:
  // APISIX: per host and path, so one failing path of a wildcard route does not stop the rest.
  // Long ones are kept as a digest: clients choose paths, and the table holds 10,000 keys.
  static void key_of(const Context& ctx, std::string& key) {
    key.assign(ctx.var("host"));
    key += ctx.path;
    if (key.size() <= 128) return;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
    key.resize(1 + sizeof digest);  // '#' and the digest
    key[0] = '#';
    std::memcpy(key.data() + 1, digest, sizeof digest);
  }
};

std::vector<int> read_statuses(config::ObjectReader& r, std::vector<int> fallback, int min,
                               int max) {
  const json* list = r.raw("http_statuses");
  if (!list) return fallback;
  std::vector<int> out;
  if (!list->is_array() || list->empty()) {
    r.error("http_statuses", "must be a non-empty list of statuses");
    return out;
  }
  for (const json& v : *list) {
    if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > max) {
      r.error("http_statuses",
              "must hold statuses from " + std::to_string(min) + " to " + std::to_string(max));
      return {};
    }
    int s = v.get<int>();
    if (std::find(out.begin(), out.end(), s) != out.end()) {
      r.error("http_statuses", "lists " + std::to_string(s) + " twice");
      return {};
    }
    out.push_back(s);
  }
  return out;
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope& scope, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<ApiBreaker>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  if (!r.has("break_response_code")) r.error("break_response_code", "is required");
  p->code = static_cast<int>(r.integer_or("break_response_code", 502, 200, 599));
  p->body = r.string_or("break_response_body", "");
  if (const json* h = r.raw("break_response_headers")) {
    if (!h->is_array()) r.error("break_response_headers", "must be a list of {key, value}");
    for (size_t i = 0; h->is_array() && i < h->size(); ++i) {
      config::ObjectReader hr(
          (*h)[i], r.child_path("break_response_headers") + "[" + std::to_string(i) + "]", errors);
      std::string name = hr.string_or("key", "");
      std::string value = hr.string_or("value", "");
      if (!valid_header_name(name)) hr.error("key", "must be a header name");
      if (value.empty()) hr.error("value", "is required");
      hr.finish();
      p->headers.emplace_back(name, VarTemplate(value));
    }
  }
  p->rule.max_breaker_s = r.integer_or("max_breaker_sec", 300, 3, 86400);
  if (const json* u = r.raw("unhealthy")) {
    config::ObjectReader ur(*u, r.child_path("unhealthy"), errors);
    p->unhealthy_statuses = read_statuses(ur, {500}, 500, 599);
    p->rule.failures = ur.integer_or("failures", 3, 1, 1000000);
    ur.finish();
  }
  if (const json* h = r.raw("healthy")) {
    config::ObjectReader hr(*h, r.child_path("healthy"), errors);
    p->healthy_statuses = read_statuses(hr, {200}, 200, 499);
    p->rule.successes = hr.integer_or("successes", 3, 1, 1000000);
    hr.finish();
  }
  r.finish();
  if (errors.size() != before) return nullptr;
  p->table = breaker_table(scope.key() + "#api-breaker");
  return p;
}

}  // namespace

const PluginType& api_breaker_plugin() {
  static const PluginType type{"api-breaker", 1005, &create};
  return type;
}

}  // namespace portico::plugins
