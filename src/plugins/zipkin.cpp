// zipkin (APISIX priority 12011, rewrite, access, header_filter and log): Zipkin traces with B3
// propagation. A sampled request is reported as APISIX reports it, in Zipkin's JSON v2 format
// POSTed in batches to `endpoint`: a SERVER span "apisix.request" for the whole request, and
// as children (span_version 2) "apisix.proxy" up to the response head and
// "apisix.response_span" from there to the end, or (span_version 1) "apisix.rewrite",
// "apisix.access", "apisix.proxy" and its child "apisix.body_filter". The upstream gets the
// X-B3-* headers either way, so a trace goes on past the gateway.
#include <boost/asio/ip/address_v4.hpp>
#include <random>

#include "core/deadline.hpp"
#include "core/hex.hpp"
#include "core/thread_rng.hpp"
#include "http/service_call.hpp"
#include "plugins/context.hpp"
#include "plugins/log/batch_processor.hpp"
#include "plugins/plugin.hpp"
#include "plugins/trace/b3.hpp"
#include "plugins/trace/otlp.hpp"
#include "plugins/trace/trace_context.hpp"

namespace portico::plugins {
namespace {

int64_t wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// New ids, as hex: a 128-bit trace id, 64-bit span ids (trace_context's generator).
std::string new_trace_id() {
  trace::TraceId id = trace::random_trace_id();
  return hex::encode(id.data(), id.size());
}
std::string new_span_id() {
  trace::SpanId id = trace::random_span_id();
  return hex::encode(id.data(), id.size());
}

// POSTs a JSON array of spans; Zipkin answers 202, any 2xx is success.
class ZipkinSink final : public BatchSink {
 public:
  http::ServiceUrl url;

  Task<std::string> send(const std::vector<std::string>& spans) const override {
    http::ServiceRequest call;
    call.method = "POST";
    call.timeout = 3;
    call.keep_body = false;
    call.headers.emplace_back("Content-Type", "application/json");
    call.body = join_entries(spans, false, false);
    http::ServiceAnswer answer = co_await http::call_service(url, call);
    if (answer.status == 0) co_return answer.error.empty() ? "no answer" : answer.error;
    if (answer.status < 200 || answer.status > 299)
      co_return "the zipkin collector answered " + std::to_string(answer.status);
    co_return std::string();
  }
};

// What the phases keep of a request, in its note: wall-clock microseconds at the end of this
// plugin's rewrite, at its access and at the response head (0: not reached). Its note text holds
// the decision and the ids (Ids).
enum NoteSlot { kRewriteEndUs, kAccessUs, kHeadUs };

// "<sampled 0|1><debug 0|1>,<trace>,<request span>,<proxy span>,<caller's span>".
struct Ids {
  bool sampled = false, debug = false;
  std::string_view trace, request_span, proxy_span, caller_span;

  static Ids read(std::string_view text) {
    Ids out;
    out.sampled = text.size() > 1 && text[0] == '1';
    out.debug = text.size() > 1 && text[1] == '1';
    std::string_view parts[5];
    for (auto& part : parts) {
      size_t comma = text.find(',');
      part = text.substr(0, comma);
      text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    }
    out.trace = parts[1];
    out.request_span = parts[2];
    out.proxy_span = parts[3];
    out.caller_span = parts[4];
    return out;
  }
};

class Zipkin final : public Plugin {
 public:
  double sample_ratio = 1;
  std::string service_name = "APISIX";
  std::string server_addr;  // localEndpoint.ipv4; empty: left out
  int span_version = 2;
  std::shared_ptr<BatchProcessor> spans;

  Step rewrite(Context& ctx) const override {
    trace::B3Context caller;
    double ratio = sample_ratio;
    if (ctx.header("x-b3-flags") == "1") ratio = 1;
    bool debug = false;
    if (std::string_view single = ctx.header("b3"); !single.empty()) {
      auto parsed = trace::parse_b3_single(single);
      if (!parsed) {
        ctx.respond_error(400, "invalid b3 header");
        return Step::Respond;
      }
      caller = std::move(*parsed);
      debug = caller.debug;
    } else {
      caller = trace::parse_b3_multi(ctx.header("x-b3-traceid"), ctx.header("x-b3-spanid"),
                                     ctx.header("x-b3-parentspanid"), ctx.header("x-b3-sampled"));
    }
    if (caller.sampled) ratio = *caller.sampled ? 1 : 0;
    bool sampled = std::uniform_real_distribution<double>(0, 1)(thread_rng()) < ratio;

    std::string trace_id = caller.trace_id.empty() ? new_trace_id() : caller.trace_id;
    std::string request_span = new_span_id();
    std::string proxy_span = sampled ? new_span_id() : std::string();
    debug = debug || (sampled && ctx.header("x-b3-flags") == "1");
    ctx.note_text(this) = std::string(sampled ? "1" : "0") + (debug ? "1" : "0") + ',' + trace_id +
                          ',' + request_span + ',' + proxy_span + ',' + caller.span_id;
    ctx.note(this)[kRewriteEndUs] = wall_now_us();
    return Step::Continue;
  }

  // The upstream's headers are set here, as APISIX sets them, after every rewrite: the trace's
  // wins over a proxy-rewrite of the same headers.
  Step access(Context& ctx) const override {
    const std::string* text = ctx.find_note_text(this);
    if (!text || text->empty()) return Step::Continue;
    ctx.note(this)[kAccessUs] = wall_now_us();
    Ids ids = Ids::read(*text);
    auto set = [&](const char* name, std::string_view value) {
      ctx.upstream.headers.push_back({HeaderEdit::Op::Set, name, std::string(value)});
    };
    auto remove = [&](const char* name) {
      ctx.upstream.headers.push_back({HeaderEdit::Op::Remove, name, ""});
    };
    remove("b3");
    set("X-B3-TraceId", ids.trace);
    // Debug implies sampled: B3 says not to send both.
    if (ids.debug) {
      set("X-B3-Flags", "1");
      remove("X-B3-Sampled");
    } else {
      set("X-B3-Sampled", ids.sampled ? "1" : "0");
      if (!ids.sampled) remove("X-B3-Flags");
    }
    if (ids.sampled) {
      set("X-B3-SpanId", ids.proxy_span);
      set("X-B3-ParentSpanId", ids.request_span);
    } else {
      set("X-B3-SpanId", ids.request_span);
      if (ids.caller_span.empty())
        remove("X-B3-ParentSpanId");
      else
        set("X-B3-ParentSpanId", ids.caller_span);
    }
    return Step::Continue;
  }

  void header_filter(Context& ctx) const override {
    if (auto* note = sampled_note(ctx)) (*note)[kHeadUs] = wall_now_us();
  }

  void log(Context& ctx) const override {
    auto* note = sampled_note(ctx);
    if (!note) return;
    const int64_t end = wall_now_us();
    const int64_t rewritten = (*note)[kRewriteEndUs];
    // From the request's arrival, as APISIX's ngx.req.start_time(): routing and the global
    // rules' plugins count.
    const int64_t start =
        ctx.facts.known ? std::min(rewritten, end - ctx.facts.latency_us) : ctx.now_ms * 1000;
    const bool head_sent = (*note)[kHeadUs] != 0;
    const int64_t head = head_sent ? (*note)[kHeadUs] : end;
    const int64_t access = (*note)[kAccessUs] ? (*note)[kAccessUs] : rewritten;
    const Ids ids = Ids::read(*ctx.find_note_text(this));
    const std::string_view trace_id = ids.trace, request_span = ids.request_span,
                           proxy_span = ids.proxy_span, caller_span = ids.caller_span;
    json local = {{"serviceName", service_name}, {"port", ctx.server_port}};
    if (!server_addr.empty()) local["ipv4"] = server_addr;
    auto span = [&](std::string_view id, std::string_view parent, const char* name, int64_t from,
                    int64_t to) {
      json s = {{"traceId", trace_id},
                {"id", id},
                {"name", name},
                {"timestamp", from},
                {"duration", std::max<int64_t>(0, to - from)},
                {"localEndpoint", local},
                {"tags", json::object()}};
      if (!parent.empty()) s["parentId"] = parent;
      return s;
    };
    json request = span(request_span, caller_span, "apisix.request", start, end);
    request["kind"] = "SERVER";
    json tags = {{"component", "apisix"},
                 {"http.method", trace::otlp::clean_text(ctx.req->method)},
                 {"http.url", trace::otlp::clean_text(ctx.req->target)}};
    int status = ctx.upstream_status;
    if (status > 0) tags["http.status_code"] = std::to_string(status);
    request["tags"] = std::move(tags);
    json remote = {{"port", ctx.client_port}};
    if (ctx.client_ip.find(':') == std::string::npos)
      remote["ipv4"] = ctx.client_ip;
    else
      remote["ipv6"] = ctx.client_ip;
    request["remoteEndpoint"] = std::move(remote);
    std::vector<json> out;
    if (span_version == 2) {
      out.push_back(span(proxy_span, request_span, "apisix.proxy", start, head));
      out.push_back(span(new_span_id(), request_span, "apisix.response_span", head, end));
    } else {
      out.push_back(span(new_span_id(), request_span, "apisix.rewrite", start, rewritten));
      out.push_back(span(new_span_id(), request_span, "apisix.access", rewritten, access));
      out.push_back(span(proxy_span, request_span, "apisix.proxy", access, end));
      if (head_sent)
        out.push_back(span(new_span_id(), proxy_span, "apisix.body_filter", head, end));
    }
    out.push_back(std::move(request));
    for (const json& s : out) spans->push(s.dump(-1, ' ', false, json::error_handler_t::replace));
  }

 private:
  std::array<int64_t, 4>* sampled_note(Context& ctx) const {
    const std::string* text = ctx.find_note_text(this);
    return text && !text->empty() && (*text)[0] == '1' ? &ctx.note(this) : nullptr;
  }
};

bool ipv4_address(const std::string& s) {
  boost::system::error_code ec;
  boost::asio::ip::make_address_v4(s, ec);
  return !ec;
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<Zipkin>();
  auto sink = std::make_shared<ZipkinSink>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  std::string why;
  std::string endpoint = r.string_or("endpoint", "");
  if (endpoint.empty())
    r.error("endpoint", "is required");
  else if (auto url = http::parse_service_url(endpoint, why))
    sink->url = std::move(*url);
  else
    r.error("endpoint", why);
  if (const json* ratio = r.raw("sample_ratio")) {
    if (!ratio->is_number() || ratio->get<double>() < 0.00001 || ratio->get<double>() > 1)
      r.error("sample_ratio", "must be a number from 0.00001 to 1");
    else
      p->sample_ratio = ratio->get<double>();
  } else {
    r.error("sample_ratio", "is required");
  }
  p->service_name = r.string_or("service_name", "APISIX");
  p->server_addr = r.string_or("server_addr", "");
  if (r.has("server_addr") && !ipv4_address(p->server_addr))
    r.error("server_addr", "must be an IPv4 address");
  p->span_version = static_cast<int>(r.integer_or("span_version", 2, 1, 2));
  r.finish();
  if (errors.size() != before) return nullptr;
  BatchSettings batch;  // APISIX's reporter's
  batch.name = "zipkin_report";
  batch.max_size = 1000;
  batch.inactive_timeout = 5;
  batch.buffer_duration = 60;
  p->spans = std::make_shared<BatchProcessor>(std::move(batch), std::move(sink), "zipkin");
  return p;
}

}  // namespace

const PluginType& zipkin_plugin() {
  static const PluginType type{"zipkin", 12011, &create};
  return type;
}

}  // namespace portico::plugins
