// proxy-cache (APISIX priority 1085): answers repeated requests from a cache of upstream
// responses. The key is `cache_key` (variables and text, joined); a fresh entry is the answer
// (Apisix-Cache-Status: HIT) and nothing goes upstream; otherwise the upstream's answer is
// stored when its status, the request's method and `no_cache` allow, for `cache_ttl` seconds
// (or the upstream's max-age with `cache_control`). PURGE on the route drops the entry. Entries
// live in memory, in a zone shared by the workers and the routes naming it
// (cache/response_cache.hpp), whatever `cache_strategy` says: there is no disk cache.
#include <algorithm>
#include <charconv>

#include "core/ascii.hpp"
#include "plugins/cache/response_cache.hpp"
#include "plugins/context.hpp"
#include "plugins/limit/scoped_table.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

constexpr size_t kMaxObject = 1 << 20;  // larger responses stream through, not stored
constexpr int64_t kMaxTtl = 365LL * 86400;

// What the request's note holds: [0] the cache status, [1] the key's length in note_text
// (the stored headers follow it), [2] whether the response is stored, [3] its time to live.
enum Status : int64_t { kNone = 0, kMiss, kExpired, kBypass, kHit };
constexpr const char* kStatusText[] = {"", "MISS", "EXPIRED", "BYPASS", "HIT"};

// Not kept with a response: the connection's (hop-by-hop, and those its Connection names), the
// framing, and what the gateway writes itself.
bool not_stored(std::string_view name, std::string_view connection) {
  if (http::is_hop_by_hop(name, connection)) return true;
  for (std::string_view n : {"content-length", "set-cookie", "apisix-cache-status", "age"})
    if (http::iequals(name, n)) return true;
  return false;
}

// A Cache-Control directive's seconds ("max-age=60"), or -1.
int64_t directive_seconds(std::string_view value, std::string_view name) {
  for (size_t at = 0; (at = value.find(name, at)) != std::string_view::npos; at += name.size()) {
    if (at > 0 && value[at - 1] != ' ' && value[at - 1] != ',') continue;
    std::string_view rest = value.substr(at + name.size());
    if (rest.empty() || rest.front() != '=') continue;
    int64_t n = -1;
    std::from_chars(rest.data() + 1, rest.data() + rest.size(), n);
    return n;
  }
  return -1;
}

// `lower`: the Cache-Control value, folded to lower case once by the caller for all its checks.
bool has_directive(std::string_view lower, std::string_view name) {
  for (size_t at = 0; (at = lower.find(name, at)) != std::string_view::npos; at += name.size()) {
    bool starts = at == 0 || lower[at - 1] == ' ' || lower[at - 1] == ',';
    size_t end = at + name.size();
    bool ends = end == lower.size() || lower[end] == ',' || lower[end] == ' ' || lower[end] == '=';
    if (starts && ends) return true;
  }
  return false;
}

struct KeyPart {
  std::string text;  // a variable's name, or literal text
  bool is_var = false;
};

class ProxyCache final : public Plugin {
 public:
  std::shared_ptr<ResponseCache> zone;
  std::vector<KeyPart> key;
  std::vector<std::string> bypass, no_cache;  // variable names
  std::vector<std::string> methods;
  std::vector<int> statuses;
  bool hide_cache_headers = false;
  bool cache_control = false;
  int64_t ttl = 300;

  Step access(Context& ctx) const override {
    std::string_view method = ctx.req->method;
    if (method == "PURGE") {
      ctx.respond(zone->erase(cache_key(ctx)) ? 200 : 404, "", "");
      return Step::Respond;
    }
    if (std::find(methods.begin(), methods.end(), method) == methods.end()) return Step::Continue;
    std::string k = cache_key(ctx);
    auto& note = ctx.note(this);
    note[1] = static_cast<int64_t>(k.size());
    std::string request_control = cache_control ? ascii_lower(ctx.header("cache-control")) : "";
    if (any_set(ctx, bypass) || has_directive(request_control, "no-cache") ||
        has_directive(request_control, "no-store")) {
      note[0] = kBypass;
      ctx.note_text(this) = std::move(k);
      return Step::Continue;
    }
    auto entry = zone->find(k);
    if (entry && entry->expires_ms > ctx.now_ms) {
      note[0] = kHit;
      answer(ctx, *entry);
      return Step::Respond;
    }
    note[0] = entry ? kExpired : kMiss;
    ctx.note_text(this) = std::move(k);
    return Step::Continue;
  }

  void header_filter(Context& ctx) const override {
    const auto* note = ctx.find_note(this);
    if (!note || (*note)[0] == kNone || (*note)[0] == kHit) return;
    ctx.response_headers.push_back(
        {HeaderEdit::Op::Set, "Apisix-Cache-Status", kStatusText[(*note)[0]]});
    if (hide_cache_headers) hide(ctx);
    // A bypassed request's answer is its own (a client's no-store, or its bypass variable): the
    // shared entry stays as it was.
    if ((*note)[0] == kBypass) return;
    int64_t keep_for = storable(ctx);
    if (keep_for <= 0) return;
    // The upstream's headers now: the head's memory is not the body filter's to read.
    std::string& text = ctx.note_text(this);
    text.resize(static_cast<size_t>((*note)[1]));
    for (const auto& h : ctx.response->headers)
      if (!not_stored(h.name, ctx.response->connection))
        text.append(h.name).append("\n").append(h.value).append("\n");
    auto& n = ctx.note(this);
    n[2] = 1;
    n[3] = keep_for;
  }

  size_t response_body_limit(const Context& ctx) const override {
    const auto* note = ctx.find_note(this);
    if (!note || !(*note)[2]) return 0;
    // Another plugin that rewrites this body (response-rewrite's filters) would be skipped by a
    // hit, which replays the stored body: such answers are not stored. (An encoder, gzip, runs
    // after every other and is applied to hits again: fine.)
    for (const Plugin* p : ctx.active)
      if (p != this && !p->encodes_body() && p->response_body_limit(ctx) > 0) return 0;
    return kMaxObject;
  }

  void body_filter(Context& ctx, std::string& body) const override {
    const auto& note = ctx.note(this);
    const std::string& text = ctx.note_text(this);
    auto entry = std::make_shared<CachedResponse>();
    entry->status = ctx.response ? ctx.response->status : ctx.status;
    std::string_view lines = std::string_view(text).substr(static_cast<size_t>(note[1]));
    while (!lines.empty()) {
      size_t a = lines.find('\n');
      size_t b = lines.find('\n', a + 1);
      if (a == std::string_view::npos || b == std::string_view::npos) break;
      entry->headers.emplace_back(lines.substr(0, a), lines.substr(a + 1, b - a - 1));
      lines.remove_prefix(b + 1);
    }
    entry->body = body;
    entry->stored_ms = ctx.now_ms;
    entry->expires_ms = ctx.now_ms + note[3] * 1000;
    zone->store(text.substr(0, static_cast<size_t>(note[1])), std::move(entry));
  }

 private:
  // The parts with a separator no value holds ("/ab=1" and "/a" + "b=1" are two keys), and a
  // POST's method: its answer is not a GET's.
  std::string cache_key(const Context& ctx) const {
    std::string out;
    for (const KeyPart& p : key) {
      out += p.is_var ? ctx.var(p.text) : std::string_view(p.text);
      out += '\0';
    }
    if (ctx.req->method == "POST") out += "POST";
    return out;
  }

  // nginx's proxy_cache_bypass / proxy_no_cache: any value that is not empty and not "0".
  static bool any_set(const Context& ctx, const std::vector<std::string>& vars) {
    for (const auto& v : vars) {
      std::string_view value = ctx.var(v);
      if (!value.empty() && value != "0") return true;
    }
    return false;
  }

  static void hide(Context& ctx) {
    for (const char* name : {"Cache-Control", "Expires"})
      ctx.response_headers.push_back({HeaderEdit::Op::Remove, name, ""});
  }

  // Seconds to keep the upstream's answer for, or 0: not stored.
  int64_t storable(const Context& ctx) const {
    const http::ResponseHead* r = ctx.response;
    std::string_view method = ctx.req->method;
    if (!r || (method != "GET" && method != "POST")) return 0;
    if (std::find(statuses.begin(), statuses.end(), r->status) == statuses.end()) return 0;
    if (any_set(ctx, no_cache)) return 0;
    std::string control;  // every Cache-Control line, joined
    for (const auto& h : r->headers) {
      // One client's session, an answer that differs by request headers the key ignores, or a
      // body only clients that accept its encoding can read.
      if (http::iequals(h.name, "set-cookie") || http::iequals(h.name, "vary")) return 0;
      if (http::iequals(h.name, "content-encoding") && !http::iequals(h.value, "identity"))
        return 0;
      if (http::iequals(h.name, "cache-control")) (control += h.value) += ',';
    }
    control = ascii_lower(control);
    // Whatever cache_control says (as APISIX and nginx): what the upstream keeps private stays so.
    if (has_directive(control, "private") || has_directive(control, "no-store") ||
        has_directive(control, "no-cache"))
      return 0;
    // RFC 9111 3.5: an answer to a request with credentials is shared only when it says so.
    if (!ctx.header("authorization").empty() && !has_directive(control, "public") &&
        directive_seconds(control, "s-maxage") < 0)
      return 0;
    if (!cache_control) return ttl;
    int64_t s = directive_seconds(control, "s-maxage");
    if (s < 0) s = directive_seconds(control, "max-age");
    return s < 0 ? ttl : std::min<int64_t>(s, kMaxTtl);
  }

  void answer(Context& ctx, const CachedResponse& entry) const {
    std::string type;
    for (const auto& [name, value] : entry.headers) {
      if (http::iequals(name, "content-type")) {
        type = value;
        continue;
      }
      if (hide_cache_headers &&
          (http::iequals(name, "cache-control") || http::iequals(name, "expires")))
        continue;
      ctx.response_headers.push_back({HeaderEdit::Op::Add, name, value});
    }
    ctx.response_headers.push_back({HeaderEdit::Op::Set, "Apisix-Cache-Status", "HIT"});
    // RFC 9111 4: how long it has been stored, so a cache further down does not keep it longer.
    ctx.response_headers.push_back(
        {HeaderEdit::Op::Set, "Age",
         std::to_string(std::max<int64_t>(0, ctx.now_ms - entry.stored_ms) / 1000)});
    ctx.respond(entry.status, entry.body, std::move(type));
  }
};

std::vector<std::string> var_names(config::ObjectReader& r, std::string_view field) {
  std::vector<std::string> out;
  for (auto& v : r.string_list(field)) {
    if (v.size() < 2 || v.front() != '$') {
      r.error(field, "must be a list of variables (\"$arg_nocache\")");
      return {};
    }
    out.push_back(v.substr(1));
  }
  return out;
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<ProxyCache>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  std::string strategy = r.string_or("cache_strategy", "disk");
  if (strategy != "disk" && strategy != "memory")
    r.error("cache_strategy", "must be disk or memory");
  std::string zone =
      r.string_or("cache_zone", strategy == "memory" ? "memory_cache" : "disk_cache_one");
  if (zone.empty() || zone.size() > 100) r.error("cache_zone", "must be 1 to 100 characters");
  std::vector<std::string> key = r.has("cache_key")
                                     ? r.string_list("cache_key")
                                     : std::vector<std::string>{"$host", "$request_uri"};
  if (key.empty()) r.error("cache_key", "must name at least one variable or text");
  for (const auto& k : key) {
    bool is_var = k.size() > 1 && k.front() == '$';
    p->key.push_back({is_var ? k.substr(1) : k, is_var});
  }
  p->bypass = var_names(r, "cache_bypass");
  p->no_cache = var_names(r, "no_cache");
  p->methods = r.has("cache_method") ? r.string_list("cache_method")
                                     : std::vector<std::string>{"GET", "HEAD"};
  if (p->methods.empty()) r.error("cache_method", "must list at least one method");
  for (const auto& m : p->methods)
    if (m != "GET" && m != "HEAD" && m != "POST") {
      r.error("cache_method", "must list GET, HEAD or POST");
      break;
    }
  if (const json* s = r.raw("cache_http_status")) {
    bool ok = s->is_array() && !s->empty();
    for (const auto& v : ok ? *s : json::array())
      if (!v.is_number_integer() || v.get<int>() < 200 || v.get<int>() > 599)
        ok = false;
      else
        p->statuses.push_back(v.get<int>());
    if (!ok) r.error("cache_http_status", "must be a list of statuses from 200 to 599");
  } else {
    p->statuses = {200, 301, 404};
  }
  p->hide_cache_headers = r.boolean_or("hide_cache_headers", false);
  p->cache_control = r.boolean_or("cache_control", false);
  p->ttl = r.integer_or("cache_ttl", 300, 1, kMaxTtl);
  r.finish();
  if (errors.size() != before) return nullptr;
  p->zone = scoped_table<ResponseCache>("proxy-cache zone " + zone);
  return p;
}

}  // namespace

const PluginType& proxy_cache_plugin() {
  static const PluginType type{"proxy-cache", 1085, &create};
  return type;
}

}  // namespace portico::plugins
