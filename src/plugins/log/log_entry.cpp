#include "plugins/log/log_entry.hpp"

#include <unistd.h>

#include "core/ascii.hpp"
#include "plugins/consumers.hpp"
#include "plugins/context.hpp"
#include "plugins/context_vars.hpp"
#include "plugins/plugin_metadata.hpp"
#include "plugins/request_json.hpp"

namespace portico::plugins {
namespace {

// The body notes: note_text holds the request body's kept bytes, then the response body's;
// note[0] is where the response body starts, note[1] and note[2] say which are there.
constexpr size_t kResponseStart = 0, kHasRequest = 1, kHasResponse = 2;

std::optional<router::VarsExpr> read_expr(config::ObjectReader& r, std::string_view key) {
  const json* v = r.raw(key);
  if (!v) return std::nullopt;
  if (!v->is_array()) {
    r.error(key, "must be a list of [variable, operator, value] conditions");
    return std::nullopt;
  }
  return router::VarsExpr::compile(*v, r.child_path(key), r.errors());
}

// APISIX allows five levels of nesting in log_format; values are strings (a "$var" or text),
// other scalars, or objects.
bool valid_format(const json& v, int depth) {
  if (!v.is_object() || depth > 5) return false;
  for (const auto& [k, item] : v.items())
    if (item.is_array() || (item.is_object() && !valid_format(item, depth + 1))) return false;
  return true;
}

json render_format(const json& format, const Context& ctx) {
  json out = json::object();
  for (const auto& [key, value] : format.items()) {
    if (value.is_object()) {
      out[key] = render_format(value, ctx);
    } else if (value.is_string() && value.get_ref<const std::string&>().starts_with('$')) {
      std::string_view v = ctx.var(std::string_view(value.get_ref<const std::string&>()).substr(1));
      if (!v.empty()) out[key] = std::string(v);  // as APISIX: a variable without value is left out
    } else {
      out[key] = value;
    }
  }
  return out;
}

// The head as sent: its header lines, up to the empty line (a local answer's body follows).
json response_headers(std::string_view head) {
  json out = json::object();
  size_t at = head.find("\r\n");
  while (at != std::string_view::npos) {
    at += 2;
    size_t end = head.find("\r\n", at);
    if (end == std::string_view::npos || end == at) break;
    std::string_view line = head.substr(at, end - at);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      add_listed(out, ascii_lower(line.substr(0, colon)), std::string(value));
    }
    at = end;
  }
  return out;
}

const std::string& hostname() {
  static const std::string name = [] {
    char buf[256] = {};
    return gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string();
  }();
  return name;
}

double ms(int64_t us) { return static_cast<double>(us) / 1000.0; }

json full_entry(const Context& ctx) {
  const http::RequestHead& req = *ctx.req;
  std::string url = ctx.https ? "https://" : "http://";
  url.append(ctx.var("host")).append(":").append(std::to_string(ctx.server_port));
  url.append(req.target);
  json entry = {
      {"request",
       {{"url", url},
        {"uri", std::string(req.target)},
        {"method", std::string(req.method)},
        {"headers", headers_json(req)},
        {"querystring", args_json(req.query)},
        {"size", ctx.facts.bytes_in}}},
      {"response",
       {{"status", ctx.status},
        {"headers", response_headers(ctx.facts.response_head)},
        {"size", ctx.facts.bytes_out}}},
      {"server", {{"hostname", hostname()}, {"version", PORTICO_VERSION}}},
      {"client_ip", ctx.client_ip},
      {"start_time", ctx.now_ms},
      {"latency", ms(ctx.facts.latency_us)},
  };
  if (!ctx.facts.upstream_addr.empty()) entry["upstream"] = std::string(ctx.facts.upstream_addr);
  if (ctx.route_id) entry["route_id"] = *ctx.route_id;
  entry["service_id"] = ctx.service_id ? *ctx.service_id : std::string();
  if (ctx.consumer) entry["consumer"] = {{"username", ctx.consumer->username}};
  int64_t gateway_us = ctx.facts.latency_us;
  if (ctx.facts.upstream_latency_us > 0) {
    entry["upstream_latency"] = ms(ctx.facts.upstream_latency_us);
    gateway_us = std::max<int64_t>(0, gateway_us - ctx.facts.upstream_latency_us);
  }
  entry["apisix_latency"] = ms(gateway_us);
  return entry;
}

}  // namespace

bool valid_log_format(const json& format) { return valid_format(format, 1); }

void read_log_entry_config(config::ObjectReader& r, LogEntryConfig& out) {
  if (const json* f = r.raw("log_format")) {
    if (!valid_log_format(*f))
      r.error("log_format",
              "must be an object of names to \"$variable\", text or objects (up to 5 levels)");
    else if (!f->empty())
      out.format = *f;
  }
  out.include_req_body = r.boolean_or("include_req_body", false);
  out.req_body_expr = read_expr(r, "include_req_body_expr");
  out.include_resp_body = r.boolean_or("include_resp_body", false);
  out.resp_body_expr = read_expr(r, "include_resp_body_expr");
  out.max_req_body =
      static_cast<size_t>(r.integer_or("max_req_body_bytes", 512 * 1024, 1, 64 << 20));
  out.max_resp_body =
      static_cast<size_t>(r.integer_or("max_resp_body_bytes", 512 * 1024, 1, 64 << 20));
}

Step LoggerPlugin::body(Context& ctx, std::string_view body) const {
  if (entry.req_body_expr && !entry.req_body_expr->eval(ContextVars(ctx))) return Step::Continue;
  body = body.substr(0, entry.max_req_body);
  ctx.note_text(this).assign(body);
  auto& note = ctx.note(this);
  note[kResponseStart] = static_cast<int64_t>(body.size());
  note[kHasRequest] = 1;
  return Step::Continue;
}

size_t LoggerPlugin::response_body_limit(const Context& ctx) const {
  if (!entry.include_resp_body) return 0;
  if (entry.resp_body_expr && !entry.resp_body_expr->eval(ContextVars(ctx))) return 0;
  return entry.max_resp_body;
}

void LoggerPlugin::body_filter(Context& ctx, std::string& body) const {
  auto& note = ctx.note(this);
  std::string& text = ctx.note_text(this);
  text.resize(static_cast<size_t>(note[kResponseStart]));
  text.append(body, 0, entry.max_resp_body);
  note[kHasResponse] = 1;
}

std::string LoggerPlugin::build_entry(const Context& ctx) const {
  json out;
  // Its own log_format, else the plugin's metadata's (APISIX's precedence).
  const json* format = entry.format ? &*entry.format : nullptr;
  if (!format)
    if (const PluginMetadata* m = find_metadata(ctx.metadata, plugin_name); m && m->log_format)
      format = &*m->log_format;
  if (format) {
    out = render_format(*format, ctx);
    // As APISIX: a custom entry still says which route and service it is about.
    if (ctx.route_id) out["route_id"] = *ctx.route_id;
    if (ctx.service_id && !ctx.service_id->empty()) out["service_id"] = *ctx.service_id;
  } else {
    out = full_entry(ctx);
  }
  if (const auto* note = ctx.find_note(this)) {
    const std::string& text = *ctx.find_note_text(this);
    size_t split = static_cast<size_t>((*note)[kResponseStart]);
    if ((*note)[kHasRequest] && !format) out["request"]["body"] = text.substr(0, split);
    if ((*note)[kHasResponse] && !format) out["response"]["body"] = text.substr(split);
  }
  // Bytes that are not UTF-8 (a binary body, a header) are replaced, never a failed entry.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

void LoggerPlugin::log(Context& ctx) const { write(ctx, build_entry(ctx)); }

}  // namespace portico::plugins
