// opentelemetry (APISIX priority 12009, rewrite and log): one SERVER span per request, exported
// in batches to an OTLP/HTTP collector (protobuf, POST <address>/v1/traces), with the W3C
// `traceparent` taken from the client and passed on to the upstream, so a trace crosses the
// gateway whoever started it. Where spans go, the resource and the batching come from the
// plugin's metadata (APISIX 3.12's place for them); without metadata its defaults apply.
//
// The span is written as protobuf bytes when it starts (ids, name, start, request attributes)
// and finished in the log phase (end, status code, error status): nothing per request but one
// string, and nothing at all for a request the sampler leaves out, which still carries a
// traceparent (flags 00) upstream.
#include <unistd.h>

#include "core/ascii.hpp"
#include "http/service_call.hpp"
#include "plugins/context.hpp"
#include "plugins/header_config.hpp"
#include "plugins/log/batch_processor.hpp"
#include "plugins/plugin.hpp"
#include "plugins/plugin_metadata.hpp"
#include "plugins/trace/otlp.hpp"
#include "plugins/trace/trace_context.hpp"
#include "router/route_index.hpp"

namespace portico::plugins {
namespace {

using trace::ProtobufWriter;
namespace otlp = trace::otlp;

constexpr std::string_view kPluginName = "opentelemetry";

int64_t wall_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// POSTs a batch of spans to the collector; only 200 is success (as APISIX's exporter).
class CollectorSink final : public BatchSink {
 public:
  http::ServiceUrl url;
  double timeout = 3;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string resource;  // an encoded Resource

  Task<std::string> send(const std::vector<std::string>& spans) const override {
    http::ServiceRequest call;
    call.method = "POST";
    call.timeout = timeout;
    call.keep_body = false;
    call.headers = headers;
    if (!has_content_type) call.headers.emplace_back("Content-Type", "application/x-protobuf");
    call.body = otlp::export_request(resource, "portico", spans);
    http::ServiceAnswer answer = co_await http::call_service(url, call);
    if (answer.status == 0) co_return answer.error.empty() ? "no answer" : answer.error;
    if (answer.status != 200) co_return std::string(kAnswered) + std::to_string(answer.status);
    co_return std::string();
  }

  // OTLP/HTTP: a 4xx other than 429 will not change when sent again.
  bool worth_retrying(const std::string& error) const override {
    return !error.starts_with(kAnswered) || error == std::string(kAnswered) + "429" ||
           error[kAnswered.size()] != '4';
  }

  bool has_content_type = false;  // request_headers sets its own

 private:
  static constexpr std::string_view kAnswered = "the collector answered ";
};

// The plugin's metadata: where spans go and what the ids come from.
struct TracingSettings final : MetadataSettings {
  bool trace_id_from_request_id = false;  // trace_id_source: x-request-id
  bool set_vars = false;                  // set_ngx_var
  std::shared_ptr<BatchProcessor> spans;
};

const json& object_or_empty(const json& value) {
  static const json empty = json::object();
  return value.is_object() ? value : empty;
}

std::string host_name() {
  char buf[256] = {};
  return gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string();
}

// Reads the metadata's fields from `r` (the defaults when it has none of them).
std::shared_ptr<const MetadataSettings> read_settings(config::ObjectReader& r) {
  auto out = std::make_shared<TracingSettings>();
  auto sink = std::make_shared<CollectorSink>();
  std::string source = r.string_or("trace_id_source", "random");
  if (source != "random" && source != "x-request-id")
    r.error("trace_id_source", "must be random or x-request-id");
  out->trace_id_from_request_id = source == "x-request-id";
  out->set_vars = r.boolean_or("set_ngx_var", false);

  std::vector<std::pair<std::string, std::variant<std::string, double, bool>>> resource;
  resource.emplace_back("hostname", host_name());
  resource.emplace_back("service.name", std::string("APISIX"));
  if (const json* res = r.raw("resource")) {
    if (!res->is_object()) r.error("resource", "must be an object");
    for (const auto& [key, value] : object_or_empty(*res).items()) {
      std::variant<std::string, double, bool> v;
      if (value.is_string())
        v = value.get<std::string>();
      else if (value.is_boolean())
        v = value.get<bool>();
      else if (value.is_number())
        v = value.get<double>();
      else
        r.error("resource", "\"" + key + "\" must be a string, number or boolean");
      if (key == "service.name")
        resource[1].second = std::move(v);
      else
        resource.emplace_back(key, std::move(v));
    }
  }
  sink->resource = otlp::encode_resource(resource);

  BatchSettings batch;
  batch.name = "opentelemetry";
  batch.max_size = 256;  // APISIX's library's defaults
  batch.buffer_duration = 5;
  batch.inactive_timeout = 2;
  batch.max_pending = 2048;
  batch.max_retry_count = 2;  // three attempts, as the library makes
  batch.retry_delay = 1;
  if (const json* c = r.raw("collector")) {
    config::ObjectReader cr(*c, r.child_path("collector"), r.errors());
    std::string address = cr.string_or("address", "127.0.0.1:4318");
    std::string why;
    std::string url = (address.starts_with("http://") || address.starts_with("https://"))
                          ? address
                          : "http://" + address;
    while (url.ends_with('/')) url.pop_back();
    if (auto parsed = http::parse_service_url(url + "/v1/traces", why))
      sink->url = std::move(*parsed);
    else
      cr.error("address", why);
    sink->timeout = static_cast<double>(cr.integer_or("request_timeout", 3, 1, 3600));
    if (const json* h = cr.raw("request_headers")) {
      if (!h->is_object()) cr.error("request_headers", "must be an object");
      for (const auto& [name, value] : object_or_empty(*h).items()) {
        std::string text = value.is_string() ? value.get<std::string>() : value.dump();
        std::string lower = ascii_lower(name);
        if (!valid_header_name(name) || !valid_header_value(text) || value.is_object() ||
            value.is_array() || value.is_null())
          cr.error("request_headers", "\"" + name + "\" is not a valid header");
        else if (lower == "host" || lower == "content-length" || lower == "transfer-encoding" ||
                 lower == "connection")
          cr.error("request_headers", "\"" + name + "\" is set by the gateway itself");
        else
          sink->headers.emplace_back(name, std::move(text));
        sink->has_content_type = sink->has_content_type || lower == "content-type";
      }
    }
    cr.finish();
  } else {
    std::string why;
    sink->url = *http::parse_service_url("http://127.0.0.1:4318/v1/traces", why);
  }
  if (const json* b = r.raw("batch_span_processor")) {
    config::ObjectReader br(*b, r.child_path("batch_span_processor"), r.errors());
    br.boolean_or("drop_on_queue_full", true);  // a full queue always drops here (bounded)
    batch.max_pending = static_cast<size_t>(br.integer_or("max_queue_size", 2048, 2, 1000000));
    batch.buffer_duration = br.duration_or("batch_timeout", 5, 0.001, 86400);
    batch.inactive_timeout = br.duration_or("inactive_timeout", 2, 0.001, 86400);
    batch.max_size = static_cast<size_t>(br.integer_or("max_export_batch_size", 256, 1, 100000));
    // (APISIX takes a batch larger than the queue; it can never fill past the queue.)
    batch.max_size = std::min(batch.max_size, batch.max_pending);
    br.finish();
  }
  out->spans =
      std::make_shared<BatchProcessor>(std::move(batch), std::move(sink), std::string(kPluginName));
  return out;
}

// The metadata's settings, or the defaults when there is no metadata (made once).
const TracingSettings& settings_of(const Context& ctx) {
  if (const PluginMetadata* m = find_metadata(ctx.metadata, kPluginName))
    if (m->settings) return static_cast<const TracingSettings&>(*m->settings);
  static const std::shared_ptr<const MetadataSettings> defaults = [] {
    config::Errors errors;
    json empty = json::object();
    config::ObjectReader r(empty, "", errors);
    return read_settings(r);
  }();
  return static_cast<const TracingSettings&>(*defaults);
}

class OpenTelemetry final : public Plugin {
 public:
  trace::Sampler sampler;
  std::vector<std::string> attribute_vars;  // additional_attributes
  // additional_header_prefix_attributes, lower-case: an exact name, or a prefix (a trailing '*'
  // dropped) when `prefix`.
  struct HeaderPattern {
    std::string name;
    bool prefix = false;
  };
  std::vector<HeaderPattern> header_patterns;

  Step rewrite(Context& ctx) const override {
    const TracingSettings& settings = settings_of(ctx);
    std::optional<trace::TraceParent> parent = caller(ctx);
    trace::TraceId trace_id;
    if (parent) {
      trace_id = parent->trace_id;
    } else {
      std::optional<trace::TraceId> from_request;
      if (settings.trace_id_from_request_id)
        from_request = trace::trace_id_from_request_id(
            ctx.request_id.empty() ? ctx.header("x-request-id") : ctx.request_id);
      trace_id = from_request ? *from_request : trace::random_trace_id();
    }
    trace::SpanId span_id = trace::random_span_id();
    bool sampled = sampler.sample(trace_id, parent);
    // Flags this gateway does not know are not passed on (W3C: "set those to zero"); the
    // random-trace-id flag describes the trace, so it stays.
    uint8_t flags = static_cast<uint8_t>((parent ? parent->flags & 0x02 : 0) | (sampled ? 1 : 0));
    std::string traceparent = trace::format_traceparent(trace_id, span_id, flags);
    std::string joined;
    std::string_view state = parent ? ctx.var_list("http_tracestate", joined) : std::string_view();
    if (!trace::valid_tracestate(state)) state = {};
    ctx.upstream.headers.push_back({HeaderEdit::Op::Set, "traceparent", traceparent});
    if (!state.empty())
      ctx.upstream.headers.push_back({HeaderEdit::Op::Set, "tracestate", std::string(state)});
    else
      ctx.upstream.headers.push_back({HeaderEdit::Op::Remove, "tracestate", ""});
    if (settings.set_vars) ctx.trace_parent = traceparent;
    if (!sampled) return Step::Continue;
    ctx.note(this)[0] = 1;
    ctx.note_text(this) = start_span(ctx, trace_id, span_id, state, parent);
    return Step::Continue;
  }

  void log(Context& ctx) const override {
    const auto* started = ctx.find_note(this);
    if (!started || (*started)[0] != 1) return;
    ProtobufWriter end;
    end.fixed64_field(otlp::kEndTime, static_cast<uint64_t>(wall_now_ns()));
    // APISIX reports the upstream's status; a request answered here has only its own.
    int status = ctx.upstream_status ? ctx.upstream_status : ctx.status;
    if (status > 0) {
      otlp::add_attribute(end, otlp::kAttributes, "http.status_code", int64_t{status});
      otlp::add_attribute(end, otlp::kAttributes, "http.response.status_code", int64_t{status});
    }
    if (ctx.upstream_status >= 500)  // (the gateway's own answers are not the upstream's)
      otlp::add_status(end, otlp::kStatusError,
                       "upstream response status: " + std::to_string(status));
    // A message's fields may come in any order and repeated fields add up: the end goes after
    // what the start wrote.
    std::string span = std::move(ctx.note_text(this));
    span += end.bytes();
    settings_of(ctx).spans->push(std::move(span));
  }

 private:
  // The caller's trace: one valid traceparent (two are no trace: W3C says restart it).
  static std::optional<trace::TraceParent> caller(const Context& ctx) {
    std::string_view value;
    for (const http::Header& h : ctx.req->headers) {
      if (!http::iequals(h.name, "traceparent")) continue;
      if (!value.empty()) return {};
      value = h.value;
      if (value.empty()) return {};
    }
    return trace::parse_traceparent(value);
  }

  std::string start_span(const Context& ctx, const trace::TraceId& trace_id,
                         const trace::SpanId& span_id, std::string_view state,
                         const std::optional<trace::TraceParent>& parent) const {
    using std::string_view;
    ProtobufWriter span;
    span.bytes_field(otlp::kTraceId,
                     string_view(reinterpret_cast<const char*>(trace_id.data()), trace_id.size()));
    span.bytes_field(otlp::kSpanId,
                     string_view(reinterpret_cast<const char*>(span_id.data()), span_id.size()));
    if (!state.empty()) span.bytes_field(otlp::kTraceState, state);  // (ASCII: checked)
    if (parent)
      span.bytes_field(otlp::kParentSpanId,
                       string_view(reinterpret_cast<const char*>(parent->span_id.data()),
                                   parent->span_id.size()));
    const http::RequestHead& req = *ctx.req;
    std::string_view route_uri;
    if (ctx.route_info) {
      int i = router::RouteIndex::matching_uri(ctx.route_info->uris, ctx.path);
      if (i >= 0) route_uri = ctx.route_info->uris[static_cast<size_t>(i)];
    }
    std::string name(req.method);
    if (!route_uri.empty()) (name += ' ') += route_uri;
    span.bytes_field(otlp::kName, otlp::clean_text(name));
    span.varint_field(otlp::kKind, otlp::kServer);
    span.fixed64_field(otlp::kStartTime, static_cast<uint64_t>(wall_now_ns()));
    auto attribute = [&](string_view key, string_view value) {
      otlp::add_attribute(span, otlp::kAttributes, key, value);
    };
    attribute("net.host.name", ctx.var("host"));
    attribute("http.method", req.method);
    attribute("http.scheme", ctx.https ? "https" : "http");
    attribute("http.target", req.target);
    attribute("http.user_agent", ctx.header("user-agent"));
    if (ctx.route_id) {
      attribute("apisix.route_id", *ctx.route_id);
      attribute("apisix.route_name", ctx.route_info ? ctx.route_info->name : "");
      attribute("http.route", route_uri);
    }
    if (ctx.service_id && !ctx.service_id->empty()) {
      attribute("apisix.service_id", *ctx.service_id);
      attribute("apisix.service_name", ctx.route_info ? ctx.route_info->service_name : "");
    }
    for (const auto& var : attribute_vars)
      if (string_view value = ctx.var(var); !value.empty()) attribute(var, value);
    if (!header_patterns.empty()) add_header_attributes(ctx, span);
    return span.take();
  }

  // Request headers named by additional_header_prefix_attributes, keyed by their lower-case
  // names; a header sent on several lines is one attribute, its values joined by ", ".
  void add_header_attributes(const Context& ctx, ProtobufWriter& span) const {
    std::vector<std::pair<std::string, std::string>> found;
    for (const http::Header& h : ctx.req->headers) {
      bool wanted = false;
      for (const auto& p : header_patterns)
        wanted = wanted || (p.prefix ? h.name.size() >= p.name.size() &&
                                           http::iequals(h.name.substr(0, p.name.size()), p.name)
                                     : http::iequals(h.name, p.name));
      if (!wanted) continue;
      std::string name = ascii_lower(h.name);
      auto it = std::find_if(found.begin(), found.end(),
                             [&](const auto& kv) { return kv.first == name; });
      if (it == found.end())
        found.emplace_back(std::move(name), std::string(h.value));
      else
        (it->second += ", ") += h.value;
    }
    for (const auto& [name, value] : found)
      otlp::add_attribute(span, otlp::kAttributes, name, std::string_view(value));
  }
};

// A sampler object: {name, options: {fraction, root: {name, options: {fraction}}}}.
void read_sampler(const json& conf, const std::string& path, Errors& errors, trace::Sampler& out,
                  bool root) {
  config::ObjectReader r(conf, path, errors);
  if (!r.valid()) return;
  std::string name = r.string_or("name", "always_off");
  auto kind = trace::sampler_kind(name, !root);
  if (!kind)
    r.error("name", root ? "must be always_on, always_off or trace_id_ratio"
                         : "must be always_on, always_off, trace_id_ratio or parent_base");
  (root ? out.root : out.kind) = kind.value_or(trace::Sampler::Kind::AlwaysOff);
  if (const json* options = r.raw("options")) {
    config::ObjectReader o(*options, r.child_path("options"), errors);
    if (const json* f = o.raw("fraction")) {
      if (!f->is_number() || f->get<double>() < 0 || f->get<double>() > 1)
        o.error("fraction", "must be a number from 0 to 1");
      else
        (root ? out.root_fraction : out.fraction) = f->get<double>();
    }
    if (const json* rs = o.raw("root")) {
      if (root || out.kind != trace::Sampler::Kind::ParentBased)
        o.error("root", "is only for the parent_base sampler");
      else
        read_sampler(*rs, o.child_path("root"), errors, out, true);
    }
    o.finish();
  }
  r.finish();
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<OpenTelemetry>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  if (const json* s = r.raw("sampler"))
    read_sampler(*s, r.child_path("sampler"), errors, p->sampler, false);
  for (auto& var : r.string_list("additional_attributes")) {
    if (var.empty()) r.error("additional_attributes", "must not hold an empty name");
    p->attribute_vars.push_back(std::move(var));
  }
  for (auto& item : r.string_list("additional_header_prefix_attributes")) {
    OpenTelemetry::HeaderPattern pattern{ascii_lower(item), false};
    if (pattern.name.ends_with('*')) {
      pattern.name.pop_back();
      pattern.prefix = true;
    }
    if (pattern.name.empty() || !valid_header_name(pattern.name))
      r.error("additional_header_prefix_attributes",
              "\"" + item + "\" must be a header name, or a prefix of one ending in '*'");
    p->header_patterns.push_back(std::move(pattern));
  }
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& opentelemetry_plugin() {
  static const PluginType type{"opentelemetry", 12009, &create,       nullptr,
                               false,           false, &read_settings};
  return type;
}

}  // namespace portico::plugins
