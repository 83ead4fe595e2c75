// What a plugin is: an immutable instance compiled once from its config, with the phases of a
// request it takes part in. Plugins see a Context, never the server's internals, and answer
// "continue" or a response (Context::reply).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bridge/proto_set.hpp"
#include "config/field_reader.hpp"
#include "core/asio.hpp"

namespace portico {
class ByteStream;
class IoBuffer;
class Worker;
}  // namespace portico

namespace portico::upstream {
class UpstreamTarget;
}

namespace portico::config {
struct Upstream;
}

namespace portico::plugins {

using config::Errors;
using config::json;

class Context;
struct Credential;
struct MetadataSettings;

// What a phase decided: go on with the next plugin, or answer now with Context::reply. (Wait is
// the runner's own: a plugin must be awaited, see runner.hpp.)
enum class Step { Continue, Respond, Wait };

// Where a plugin's config was declared ("routes", "r1"). Stateful plugins (rate limits) key
// their long-lived state by it, so state survives config changes and is shared by every route of
// a service that declares the plugin.
struct Scope {
  std::string kind;
  std::string id;
  std::string key() const { return kind + "/" + id; }
};

// What the server hands a plugin that serves a request itself instead of the upstream proxy
// (tlv-bridge; see Context::takeover), once the access and body phases have let it through.
struct Takeover {
  Worker& worker;
  ByteStream& client;  // the socket, or TLS over it
  IoBuffer& in;        // bytes the client sent after this request (the request itself is consumed)
  std::string_view body;  // the whole request body; valid until the plugin reads into `in`
  const upstream::UpstreamTarget& upstream;  // the route's
  const bridge::ProtoTable& protos;  // of the request's snapshot; gone once answered() is called
  double send_timeout;
  // For a plugin that answers itself (a WebSocket upgrade): call once the response head is
  // sent, for the access log.
  std::function<void(int status)> answered;
  // `upstream` again, shared: for what outlives the request (a long-polling session).
  std::shared_ptr<const upstream::UpstreamTarget> upstream_shared;
};

// What plugins check against the whole config being compiled (Plugin::check_references).
struct CompileChecks {
  const bridge::ProtoTable& protos;
  // Shared limit-count groups: group -> (the settings every member must have, where first seen).
  std::unordered_map<std::string, std::pair<std::string, std::string>> count_groups;
};

// An upstream a plugin may send requests to instead of the route's (traffic-split): an
// upstreams object by id, or one written inline. Compiled with each route whose chain holds the
// plugin (health checks, balancer state); the plugin names its pick by position in its list
// (Context::upstream_choice).
struct UpstreamChoice {
  std::string upstream_id;                       // empty: `spec` is inline
  std::shared_ptr<const config::Upstream> spec;  // inline
  std::string field;  // where it is written, under the plugin ("rules[0].weighted_upstreams[1]")
};

// The phases, in the order a request meets them (Pingora/APISIX names). Every method has a
// default that does nothing, so a plugin implements only what it needs.
class Plugin {
 public:
  virtual ~Plugin() = default;

  // Before authentication: rewrite the request, set the client address (real-ip).
  virtual Step rewrite(Context&) const { return Step::Continue; }
  // A plugin whose rewrite phase must wait (fault-injection's delay) says so here; the runner
  // then awaits rewrite_async instead of calling rewrite.
  virtual bool waits_in_rewrite() const { return false; }
  virtual Task<Step> rewrite_async(Context& ctx) const { co_return rewrite(ctx); }
  // Allow or refuse: auth, rate limits, WAF on the request head.
  virtual Step access(Context&) const { return Step::Continue; }
  // A plugin whose access phase must wait (a delay timer, a Redis round trip) says so here;
  // the runner then awaits access_async instead of calling access.
  virtual bool waits_in_access() const { return false; }
  virtual Task<Step> access_async(Context& ctx) const { co_return access(ctx); }
  // The request body, when body_limit() > 0: the first body_limit() bytes (or the whole body
  // when shorter), once, before the request goes upstream.
  virtual size_t body_limit() const { return 0; }
  // Whether a body sent without a length (chunked) gets a 411: chunk framing would let what the
  // plugin looks for hide across chunks. One that only watches (the WAF in log mode) lets such a
  // body through unseen instead.
  virtual bool needs_body_length() const { return body_limit() > 0; }
  virtual Step body(Context&, std::string_view) const { return Step::Continue; }
  // Once, after access and the body phase, right before the upstream is picked: the last point
  // to change or answer the request (APISIX's before_proxy, which also runs again on retries).
  virtual Step before_proxy(Context&) const { return Step::Continue; }
  // The response head (upstream's or a local reply's) before it is sent: edit headers.
  virtual void header_filter(Context&) const {}
  // body_filter: a plugin that rewrites upstream response bodies says, after header_filter, up
  // to how many bytes it wants the whole body (0: not this response). The body is then read
  // whole and handed to body_filter once; a longer body streams through unchanged.
  // body_filter may add response headers (Set or Add of a header the response does not have,
  // e.g. Content-Encoding): they are sent, since the head goes out after the filtered body.
  virtual size_t response_body_limit(const Context&) const { return 0; }
  virtual void body_filter(Context&, std::string& /*body*/) const {}
  // A body_filter that encodes the body (gzip) runs after every other one, whatever its
  // priority: the others must see the text.
  virtual bool encodes_body() const { return false; }
  // After the response is sent (counters, releasing a concurrency slot).
  virtual void log(Context&) const {}

  // A plugin that set Context::takeover serves the request from here on. Returns true when
  // Context::reply holds its HTTP answer (the server sends it, the connection may carry more
  // requests); false when the plugin used the connection up itself (it is closed afterwards).
  virtual Task<bool> take_over(Context&, Takeover&) const { co_return false; }
  // For plugins whose type sets checks_references: what this instance must agree on with the
  // rest of the config being compiled (tlv-bridge's proto and message types, limit-count's
  // group settings); errors under `path`.
  virtual void check_references(CompileChecks&, const std::string& /*path*/, Errors&) const {}
  // The upstreams this plugin may pick instead of the route's (see UpstreamChoice).
  virtual const std::vector<UpstreamChoice>* upstream_choices() const { return nullptr; }
};

// The registry's entry for one plugin name.
struct PluginType {
  std::string_view name;
  int priority;  // APISIX's: higher runs first within a phase
  // Validates `conf` (errors under `path`) and returns the instance, or nullptr on errors.
  std::shared_ptr<const Plugin> (*create)(const json& conf, const Scope& scope,
                                          const std::string& path, Errors& errors);
  // The consumer-side config of an authentication plugin (key-auth's {key}); nullptr when the
  // plugin has none. Returns the credential the consumer is looked up by (null on errors).
  std::shared_ptr<const Credential> (*consumer_credential)(const json& conf,
                                                           const std::string& path,
                                                           Errors& errors) = nullptr;
  bool checks_references = false;  // see Plugin::check_references
  bool takes_metadata = false;     // a plugin_metadata object may name it (plugin_metadata.hpp)
  // The plugin's own plugin_metadata fields (opentelemetry's collector), read from the
  // object's reader (errors under its path); null: only the loggers' log_format, when
  // takes_metadata.
  std::shared_ptr<const MetadataSettings> (*read_metadata)(config::ObjectReader& r) = nullptr;
};

}  // namespace portico::plugins
