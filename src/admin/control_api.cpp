#include "admin/control_api.hpp"

#include <chrono>

#include "admin/redaction.hpp"
#include "core/worker.hpp"
#include "metrics/prometheus.hpp"
#include "plugins/tlv_bridge/websocket_session.hpp"
#include "tls/stream.hpp"

namespace portico::admin {

using config::json;
using config::Kind;

namespace {

// tlv-bridge's WebSocket sessions (process-wide counters).
void write_tlv_bridge_metrics(metrics::PrometheusWriter& out) {
  const plugins::TlvBridgeCounters& b = plugins::tlv_bridge_counters();
  auto get = [](const auto& counter) { return counter.load(std::memory_order_relaxed); };
  out.gauge("portico_tlv_bridge_sessions_active", "Open tlv-bridge WebSocket sessions.", {},
            static_cast<double>(get(b.active)));
  out.counter("portico_tlv_bridge_sessions_total", "tlv-bridge WebSocket sessions upgraded.", {},
              get(b.sessions));
  for (auto [direction, count] :
       {std::pair{"to_backend", get(b.frames_up)}, std::pair{"to_client", get(b.frames_down)}})
    out.counter("portico_tlv_bridge_frames_total", "TLV frames carried by tlv-bridge sessions.",
                {{"direction", direction}}, count);
  out.counter("portico_tlv_bridge_refused_messages_total",
              "Client messages answered with an error envelope (bad JSON, fields or data).", {},
              get(b.refused));
  for (auto [reason, count] : {std::pair{"bad_client_frame", get(b.bad_client_frames)},
                               std::pair{"bad_backend_frame", get(b.bad_backend_frames)}})
    out.counter("portico_tlv_bridge_closed_total",
                "tlv-bridge sessions closed for corrupt input, by reason.", {{"reason", reason}},
                count);
  for (auto [reason, count] : {std::pair{"rate_limited", get(b.rate_limited)},
                               std::pair{"command_denied", get(b.command_denied)}})
    out.counter("portico_tlv_bridge_refused_frames_total",
                "Client frames refused by the route's rate_limit or commands, by reason.",
                {{"reason", reason}}, count);
  out.counter("portico_tlv_bridge_rpc_replies_total",
              "HTTP RPCs answered with the backend's reply.", {}, get(b.rpc_replies));
  out.counter("portico_tlv_bridge_rpc_timeouts_total",
              "HTTP RPCs answered 504: no reply within rpc_timeout.", {}, get(b.rpc_timeouts));
  out.counter("portico_tlv_bridge_connect_failures_total",
              "Sessions and RPCs answered 502: no TLV backend accepted a connection.", {},
              get(b.connect_failures));
  out.gauge("portico_tlv_bridge_poll_sessions_active", "Open tlv-bridge long-polling sessions.", {},
            static_cast<double>(get(b.poll_active)));
  out.counter("portico_tlv_bridge_poll_sessions_total", "tlv-bridge long-polling sessions opened.",
              {}, get(b.poll_sessions));
  out.counter("portico_tlv_bridge_poll_handovers_total",
              "Long-polling requests served by the worker holding their session, not the one "
              "they arrived on.",
              {}, get(b.poll_handovers));
  out.counter("portico_tlv_bridge_poll_repeated_sends_total",
              "Long-polling sends repeated with a send number already taken: answered, not sent "
              "to the backend again.",
              {}, get(b.poll_repeated_sends));
  out.counter("portico_tlv_bridge_poll_memory_ends_total",
              "Long-polling sessions ended because their client left a full queue while the "
              "route's sessions held more than max_poll_memory.",
              {}, get(b.poll_memory_ends));
}
// TLS handshakes on ssl listeners, by how they ended.
void write_tls_metrics(metrics::PrometheusWriter& out) {
  using tls::HandshakeResult;
  for (HandshakeResult r :
       {HandshakeResult::Ok, HandshakeResult::NoServerName, HandshakeResult::UnknownServerName,
        HandshakeResult::PlainHttp, HandshakeResult::Timeout, HandshakeResult::Closed,
        HandshakeResult::Failed, HandshakeResult::ClientCertificate})
    out.counter("portico_tls_handshakes_total",
                "TLS handshakes on ssl listeners, by result (no_server_name and "
                "unknown_server_name: no certificate for what the client asked).",
                {{"result", tls::result_name(r)}}, tls::handshake_count(r));
}

// A worker whose 100 ms tick has not run for this long is stuck.
constexpr int64_t kWorkerStuckMs = 2000;

HttpResponse reply(int status, const json& body) { return {status, body.dump() + "\n"}; }

json node_json(const config::UpstreamNode& n) {
  return {{"host", n.host}, {"port", n.port}, {"weight", n.weight}, {"priority", n.priority}};
}

json upstream_json(const config::Upstream& u) {
  json nodes = json::array();
  for (const auto& n : u.nodes) nodes.push_back(node_json(n));
  json out = {{"type", u.type}, {"scheme", u.scheme}, {"nodes", nodes}};
  if (!u.id.empty()) out["id"] = u.id;
  return out;
}
}  // namespace

Task<HttpResponse> ControlApi::handle(HttpRequest& req) {
  if (req.method != "GET" && req.method != "HEAD")
    co_return reply(405, {{"error_msg", "the control API is read-only"}});
  if (req.path == "/v1/health") co_return health();
  if (req.path == "/v1/routes") co_return routes();
  if (req.path == "/v1/upstreams") co_return upstreams();
  if (req.path == "/v1/healthcheck") co_return healthcheck();
  if (req.path == "/v1/config") co_return running_config();
  if (req.path == "/metrics") co_return metrics();
  co_return reply(404, {{"error_msg",
                         "not found; try /v1/health, /v1/routes, /v1/upstreams, "
                         "/v1/config or /metrics"}});
}

int ControlApi::alive_workers() const {
  if (!ctx_.workers) return 0;
  int64_t now = steady_now_ms();
  int alive = 0;
  for (const auto& w : *ctx_.workers)
    if (now - w->heartbeat_ms.load(std::memory_order_relaxed) < kWorkerStuckMs) ++alive;
  return alive;
}

HttpResponse ControlApi::health() const {
  config::ConfigSourceStatus s = ctx_.source_status();
  auto snap = ctx_.snapshot();
  int alive = alive_workers();
  std::string status = !snap                             ? "starting"
                       : alive < ctx_.configured_workers ? "degraded"
                       : !s.reachable                    ? "degraded"
                                                         : "ok";
  json body = {{"status", status},
               {"config",
                {{"provider", ctx_.provider},
                 {"reachable", s.reachable},
                 {"revision", s.revision},
                 {"skipped_values", s.skipped},
                 {"resyncs", s.resyncs},
                 {"last_error", s.last_error}}},
               {"workers", {{"configured", ctx_.configured_workers}, {"alive", alive}}},
               {"version", snap ? snap->version : 0},
               {"routes", snap ? snap->routes.size() : 0}};
  // Serving the last good config while etcd is away is still serving: 200, so a load balancer
  // keeps the node; only a node without any config (or with a stuck worker) answers 503.
  bool serving = snap && alive == ctx_.configured_workers;
  return reply(serving ? 200 : 503, body);
}

HttpResponse ControlApi::routes() const {
  json list = json::array();
  if (auto snap = ctx_.snapshot()) {
    const auto& rules = snap->router.rules();
    for (size_t i = 0; i < rules.size(); ++i) {
      const auto& r = *rules[i];
      json item = {{"id", r.id},
                   {"uris", r.uris},
                   {"hosts", r.hosts},
                   {"methods", r.method_names},
                   {"remote_addrs", r.remote_addr_texts},
                   {"priority", r.priority},
                   {"enabled", r.enabled}};
      const auto& compiled = snap->routes[i];
      if (compiled.upstream) item["upstream"] = upstream_json(compiled.upstream->spec());
      list.push_back(std::move(item));
    }
  }
  return reply(200, {{"routes", list}});
}

HttpResponse ControlApi::upstreams() const {
  json list = json::array();
  for (const auto& [id, obj] : ctx_.store->all(Kind::Upstreams))
    list.push_back(upstream_json(*obj.upstream));
  return reply(200, {{"upstreams", list}});
}

HttpResponse ControlApi::healthcheck() const {
  json list = json::array();
  int64_t now = steady_now_ms();
  auto wall_ms = [now](int64_t steady) {
    auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
    return steady ? wall - (now - steady) : 0;
  };
  for (const auto& t : ctx_.upstream_targets
                           ? ctx_.upstream_targets()
                           : std::vector<std::shared_ptr<const upstream::UpstreamTarget>>{}) {
    json nodes = json::array();
    std::string name;
    for (const auto& n : t->nodes()) {
      json node = {{"address", n.address}, {"priority", n.priority}, {"weight", n.weight}};
      if (n.health) {
        name = n.health->upstream();
        auto st = n.health->status();
        bool usable = n.health->healthy(now);
        node["state"] = st.healthy ? "healthy" : usable ? "half-open" : "unhealthy";
        node["counters"] = {
            {"successes", st.successes},       {"http_failures", st.http_failures},
            {"tcp_failures", st.tcp_failures}, {"timeouts", st.timeouts},
            {"checked", st.total_requests},    {"check_failures", st.total_failures}};
        auto q = n.health->quality();
        node["traffic"] = {
            {"requests", q.requests},
            {"http_failures", q.http_failures},
            {"tcp_failures", q.tcp_failures},
            {"timeouts", q.timeouts},
            {"latency_count", q.latency.count()},
            {"latency_avg_ms", q.latency.count() ? q.latency.sum_seconds() * 1000 /
                                                       static_cast<double>(q.latency.count())
                                                 : 0.0}};
        node["last_change"] = {{"reason", st.reason}, {"at_ms", wall_ms(st.changed_at_ms)}};
        if (st.ejected_until_ms) node["ejected_until_ms"] = wall_ms(st.ejected_until_ms);
        node["ejections"] = st.ejections;
        node["sessions"] = n.health->sessions();
      }
      nodes.push_back(std::move(node));
    }
    list.push_back({{"upstream", name},
                    {"type", t->spec().type},
                    {"active", t->spec().active.has_value()},
                    {"passive", t->spec().passive.has_value()},
                    {"panics", t->panics()},
                    {"retries_over_budget", t->resends_refused()},
                    {"nodes", std::move(nodes)}});
  }
  return reply(200, {{"upstreams", list}});
}

HttpResponse ControlApi::running_config() const {
  json out = json::object();
  for (Kind kind : config::all_kinds()) {
    json list = json::array();
    for (const auto& [id, obj] : ctx_.store->all(kind))
      list.push_back(redact_secrets(kind, obj.value));
    out[std::string(config::kind_name(kind))] = std::move(list);
  }
  config::ConfigSourceStatus s = ctx_.source_status();
  out["revision"] = s.revision;
  return reply(200, out);
}

HttpResponse ControlApi::metrics() const {
  metrics::Totals totals;
  int64_t connections = 0;
  uint64_t untrusted = 0, invalid = 0, truncated = 0, timeout = 0;
  std::map<std::string, metrics::SeriesCounters::Sum> series;
  metrics::StreamCounters::Totals streams;
  if (ctx_.workers)
    for (const auto& w : *ctx_.workers) {
      w->metrics.collect(totals);
      w->series.collect(series);
      w->stream_metrics.collect(streams);
      connections += w->connections.load(std::memory_order_relaxed);
      const metrics::ProxyProtocolRejections& pp = w->proxy_protocol_rejections;
      untrusted += pp.untrusted.load(std::memory_order_relaxed);
      invalid += pp.invalid.load(std::memory_order_relaxed);
      truncated += pp.truncated.load(std::memory_order_relaxed);
      timeout += pp.timeout.load(std::memory_order_relaxed);
    }
  metrics::PrometheusWriter out;
  metrics::write_request_metrics(out, totals);
  metrics::write_series(out, series);
  config::ConfigSourceStatus s = ctx_.source_status();
  out.gauge("portico_connections_active", "Open client connections.", {},
            static_cast<double>(connections));
  for (auto [reason, count] : {std::pair{"untrusted", untrusted}, std::pair{"invalid", invalid},
                               std::pair{"truncated", truncated}, std::pair{"timeout", timeout}})
    out.counter("portico_proxy_protocol_rejected_total",
                "Connections closed on a proxy_protocol listener before any request, by reason.",
                {{"reason", reason}}, count);
  metrics::write_stream_metrics(out, streams);
  write_tlv_bridge_metrics(out);
  write_tls_metrics(out);
  out.gauge("portico_config_snapshots_alive",
            "Compiled configurations in memory: the running one, retired ones not yet freed, and "
            "old ones still held by requests in flight.",
            {}, static_cast<double>(config::Snapshot::alive()));
  out.gauge("portico_config_revision",
            "Revision of the applied configuration (etcd revision, or file version).", {},
            static_cast<double>(s.revision));
  out.gauge("portico_config_source_reachable",
            "1 when the configuration source (etcd or the file) is reachable.",
            {{"provider", ctx_.provider}}, s.reachable ? 1 : 0);
  out.counter("portico_config_apply_errors_total",
              "Configuration values rejected: invalid etcd values skipped, invalid files refused.",
              {}, s.skipped);
  if (ctx_.upstream_targets)
    for (const auto& t : ctx_.upstream_targets()) {
      for (const auto& n : t->nodes()) {
        if (!n.health) continue;
        const std::string& name = n.health->upstream();
        out.gauge("portico_upstream_node_healthy",
                  "1 while an upstream node is healthy (or half-open after an ejection).",
                  {{"upstream", name}, {"node", n.address}},
                  n.health->healthy(steady_now_ms()) ? 1 : 0);
        auto q = n.health->quality();
        out.counter("portico_upstream_node_requests_total", "Attempts sent to an upstream node.",
                    {{"upstream", name}, {"node", n.address}}, q.requests);
        const char* help = "Failed attempts on an upstream node by kind (http: a 5xx answer).";
        out.counter("portico_upstream_node_failures_total", help,
                    {{"upstream", name}, {"node", n.address}, {"kind", "http"}}, q.http_failures);
        out.counter("portico_upstream_node_failures_total", help,
                    {{"upstream", name}, {"node", n.address}, {"kind", "tcp"}}, q.tcp_failures);
        out.counter("portico_upstream_node_failures_total", help,
                    {{"upstream", name}, {"node", n.address}, {"kind", "timeout"}}, q.timeouts);
        out.histogram("portico_upstream_node_latency_seconds",
                      "Time from sending to an upstream node to its response head.",
                      {{"upstream", name}, {"node", n.address}}, q.latency);
      }
      if (!t->nodes().empty() && t->nodes().front().health)
        out.counter("portico_upstream_panics_total",
                    "Requests sent to an unhealthy node because no node was healthy.",
                    {{"upstream", t->nodes().front().health->upstream()}}, t->panics());
    }
  out.gauge("portico_workers_alive", "Worker threads whose event loop is running.", {},
            alive_workers());
  return HttpResponse{200, out.take(), std::string(metrics::kPrometheusContentType)};
}

}  // namespace portico::admin
