// proxy-mirror (APISIX priority 1010): a copy of each request (or of a sample) goes to another
// host, for shadow traffic: a new backend version sees production requests while the client
// only ever gets the real upstream's answer. The copy is sent on the worker's loop once the
// request is ready to go upstream, and its answer is read and thrown away; it never delays the
// client. Bodies are copied up to 1 MiB; a longer or chunked one is not mirrored (counted).
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <random>

#include "core/current_worker.hpp"
#include "core/thread_rng.hpp"
#include "http/message_heads.hpp"
#include "http/service_call.hpp"
#include "metrics/series_counters.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

constexpr size_t kMaxBody = 1 << 20;
// Copies in flight in the whole process: past this a mirror that is slow or gone costs no more
// memory and sockets, its copies are dropped (counted).
constexpr int kMaxInFlight = 1000;
constexpr int64_t kMaxBytesInFlight = 64 << 20;  // bodies held by copies in flight
std::atomic<int> g_in_flight{0};
std::atomic<int64_t> g_bytes_in_flight{0};

// A copy's share of the limits, taken before it starts and given back however it ends.
struct InFlight {
  int64_t bytes;
  ~InFlight() {
    g_in_flight.fetch_sub(1, std::memory_order_relaxed);
    g_bytes_in_flight.fetch_sub(bytes, std::memory_order_relaxed);
  }
};
bool take_slot(int64_t bytes) {
  if (g_in_flight.fetch_add(1, std::memory_order_relaxed) >= kMaxInFlight ||
      g_bytes_in_flight.fetch_add(bytes, std::memory_order_relaxed) + bytes > kMaxBytesInFlight) {
    InFlight give_back{bytes};  // (both were added; the guard takes both back)
    return false;
  }
  return true;
}

void count(std::string_view outcome) {
  if (auto* series = metrics::SeriesCounters::current())
    series->add("portico_mirror_requests_total",
                "proxy-mirror copies: sent (an answer came), failed (none came), dropped (too "
                "many in flight), skipped (a body over 1 MiB or chunked)",
                {{"outcome", outcome}});
}

class ProxyMirror final : public Plugin {
 public:
  http::ServiceUrl host;
  std::string path;  // empty: the request's own
  bool prefix = false;
  double sample_ratio = 1;
  double timeout = 60;

  size_t body_limit() const override { return kMaxBody + 1; }
  bool needs_body_length() const override { return false; }
  Step body(Context& ctx, std::string_view body) const override {
    ctx.note_text(this).assign(body);
    ctx.note(this)[0] = 1;
    return Step::Continue;
  }

  Step before_proxy(Context& ctx) const override {
    if (sample_ratio < 1 && !sampled()) return Step::Continue;
    const http::RequestHead& req = *ctx.req;
    bool has_body = req.chunked || req.content_length > 0;
    const auto* kept = ctx.find_note(this);
    if (has_body && (!kept || ctx.find_note_text(this)->size() > kMaxBody)) {
      count("skipped");
      return Step::Continue;
    }
    const Executor* executor = current_worker_executor();
    int64_t bytes = kept ? static_cast<int64_t>(ctx.find_note_text(this)->size()) : 0;
    if (!executor || !take_slot(bytes)) {
      count("dropped");
      return Step::Continue;
    }
    // The head the upstream gets, sent to the mirror: the plugins' edits (proxy-rewrite,
    // hide_credentials' removals, request-id), forwarding headers, hop-by-hop ones dropped.
    plugins::RequestEdits edits = ctx.upstream;
    edits.target = target(ctx);
    if (!edits.host) edits.host = std::string(req.host.empty() ? host.host_header : req.host);
    http::ServiceRequest copy;
    copy.method = edits.method ? *edits.method : std::string(req.method);
    upstream::NodeTarget node;
    node.host_header = host.host_header;
    http::build_upstream_head(copy.raw_head, req, {ctx.client_ip, ctx.server_port, {}, ctx.https},
                              node, kPassHost, false, &edits);
    copy.timeout = timeout;
    copy.verify_tls = false;  // as nginx's mirror: proxy_ssl_verify is off
    copy.keep_body = false;   // the answer is read to its end and dropped
    if (kept) copy.body = std::move(ctx.note_text(this));
    asio::co_spawn(*executor, send(host, std::move(copy), bytes), asio::detached);
    return Step::Continue;
  }

 private:
  static inline const config::Upstream kPassHost{};  // pass_host: pass (Host set in the edits)

  static Task<> send(http::ServiceUrl url, http::ServiceRequest copy, int64_t bytes) {
    InFlight slot{bytes};
    http::ServiceAnswer answer = co_await http::call_service(url, copy);
    count(answer.status ? "sent" : "failed");
  }

  // APISIX's: the URI as it goes upstream; `path` replaces its path (the query kept), or with
  // path_concat_mode prefix goes before it.
  std::string target(const Context& ctx) const {
    std::string uri = ctx.upstream.target ? *ctx.upstream.target : std::string(ctx.req->target);
    if (path.empty()) return uri;
    if (prefix) return path + uri;
    size_t q = uri.find('?');
    return q == std::string::npos ? path : path + uri.substr(q);
  }

  bool sampled() const {
    return std::uniform_real_distribution<double>(0, 1)(thread_rng()) < sample_ratio;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<ProxyMirror>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  std::string why;
  std::string host = r.string_or("host", "");
  size_t authority = host.find("://");
  if (host.empty())
    r.error("host", "is required");
  else if (authority != std::string::npos &&
           host.find_first_of("/?#", authority + 3) != std::string::npos)
    r.error("host", "must be scheme://host[:port], without a path (see path)");
  else if (auto url = http::parse_service_url(host, why))
    p->host = std::move(*url);
  else
    r.error("host", why);
  p->path = r.string_or("path", "");
  if (!p->path.empty() &&
      (p->path.front() != '/' || p->path.find_first_of("?& \t\r\n") != std::string::npos))
    r.error("path", "must start with / and hold no query, spaces or line breaks");
  std::string mode = r.string_or("path_concat_mode", "replace");
  if (mode != "replace" && mode != "prefix")
    r.error("path_concat_mode", "must be replace or prefix");
  p->prefix = mode == "prefix";
  if (const json* ratio = r.raw("sample_ratio")) {
    if (!ratio->is_number() || ratio->get<double>() < 0.00001 || ratio->get<double>() > 1)
      r.error("sample_ratio", "must be a number from 0.00001 to 1");
    else
      p->sample_ratio = ratio->get<double>();
  }
  p->timeout = static_cast<double>(r.integer_or("timeout", 60, 1, 3600));
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& proxy_mirror_plugin() {
  static const PluginType type{"proxy-mirror", 1010, &create};
  return type;
}

}  // namespace portico::plugins
