#include "plugins/context.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>

#include "config/field_reader.hpp"
#include "core/hex.hpp"
#include "core/thread_rng.hpp"
#include "http/balancer_key.hpp"
#include "plugins/consumers.hpp"
#include "router/route_rule.hpp"
#include "tls/stream.hpp"

namespace portico::plugins {
using config::json;
namespace {

// "x_user_id" (from http_x_user_id) names the header "x-user-id".
bool header_name_matches(std::string_view header, std::string_view var_suffix) {
  if (header.size() != var_suffix.size()) return false;
  for (size_t i = 0; i < header.size(); ++i) {
    char a = header[i], b = var_suffix[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
    if (b == '_') b = '-';
    if (a != b) return false;
  }
  return true;
}

}  // namespace

// A version 4 UUID from a per-thread generator (no lock, no system call per request).
std::string make_request_id() {
  std::mt19937_64& rng = thread_rng();
  uint64_t hi = rng(), lo = rng();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  std::string s(36, '-');
  int pos = 0;
  for (int i = 0; i < 32; ++i) {
    if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;
    uint64_t word = i < 16 ? hi : lo;
    int shift = (15 - (i % 16)) * 4;
    s[static_cast<size_t>(pos++)] = hex::kDigits[(word >> shift) & 0xf];
  }
  return s;
}

std::string_view Context::ensure_request_id() {
  if (request_id.empty()) request_id = make_request_id();
  return request_id;
}

void RequestEdits::clear() {
  method.reset();
  target.reset();
  host.reset();
  headers.clear();
}

Context::Note& Context::find_or_add_note(const Plugin* owner) {
  for (auto& n : notes_)
    if (n.owner == owner) return n;
  notes_.push_back({owner, {}, {}});
  return notes_.back();
}

const Context::Note* Context::find_note_of(const Plugin* owner) const {
  for (const auto& n : notes_)
    if (n.owner == owner) return &n;
  return nullptr;
}

std::array<int64_t, 4>& Context::note(const Plugin* owner) {
  return find_or_add_note(owner).values;
}

const std::array<int64_t, 4>* Context::find_note(const Plugin* owner) const {
  const Note* n = find_note_of(owner);
  return n ? &n->values : nullptr;
}

std::string& Context::note_text(const Plugin* owner) { return find_or_add_note(owner).text; }

const std::string* Context::find_note_text(const Plugin* owner) const {
  const Note* n = find_note_of(owner);
  return n ? &n->text : nullptr;
}

void Context::respond(int s, std::string body, std::string content_type) {
  reply.status = s;
  reply.body = std::move(body);
  reply.content_type = std::move(content_type);
}

namespace {
// Messages may hold bytes from the request or the config that are not UTF-8 (a rejected_msg
// from YAML escapes): replaced, where a plain dump() would throw on the request path.
std::string json_line(const char* field, std::string_view message) {
  return json{{field, message}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}
}  // namespace

void Context::respond_message(int s, std::string_view message) {
  respond(s, json_line("message", message));
}

void Context::respond_error(int s, std::string_view message) {
  respond(s, json_line("error_msg", message));
}

std::string_view Context::header(std::string_view name) const {
  for (const auto& h : req->headers)
    if (http::iequals(h.name, name)) return h.value;
  return {};
}

std::string_view Context::var(std::string_view name) const {
  const http::RequestHead& r = *req;
  if (name.starts_with("http_")) {
    std::string_view suffix = name.substr(5);
    for (const auto& h : r.headers)
      if (header_name_matches(h.name, suffix)) return h.value;
    return {};
  }
  if (name.starts_with("arg_")) return http::query_arg(r.query, name.substr(4));
  if (name.starts_with("cookie_")) return http::cookie_value(header("cookie"), name.substr(7));
  if (name == "remote_addr") return client_ip;
  if (name == "uri") return path;
  if (name == "request_uri") return r.target;
  if (name == "host") {  // nginx's $host: lower-case, without the port
    char buf[256];
    scratch_.assign(router::normalize_host(r.host, buf, sizeof(buf)));
    return scratch_;
  }
  if (name == "request_method") return r.method;
  if (name == "query_string" || name == "args") return r.query;
  if (name == "scheme") return https ? "https" : "http";
  if (name == "ssl_server_name") return server_name;
  if (name.starts_with("ssl_client_")) return client_certificate_var(name.substr(11));
  if (name == "route_id") return route_id ? std::string_view(*route_id) : std::string_view();
  if (name == "service_id") return service_id ? std::string_view(*service_id) : std::string_view();
  if (name == "route_name") return route_info ? std::string_view(route_info->name) : "";
  if (name == "service_name") return route_info ? std::string_view(route_info->service_name) : "";
  if (name.starts_with("opentelemetry_") && trace_parent.size() == 55) {
    // (trace_parent is "00-<32 hex trace id>-<16 hex span id>-<flags>")
    if (name == "opentelemetry_context_traceparent") return trace_parent;
    if (name == "opentelemetry_trace_id") return std::string_view(trace_parent).substr(3, 32);
    if (name == "opentelemetry_span_id") return std::string_view(trace_parent).substr(36, 16);
  }
  if (name == "consumer_name")
    return consumer ? std::string_view(consumer->username) : std::string_view();
  if (name == "request_id") return request_id;
  if (name == "remote_port" || name == "server_port") {
    scratch_ = std::to_string(name == "remote_port" ? client_port : server_port);
    return scratch_;
  }
  return log_var(name);
}

namespace {

// Microseconds as nginx writes times in variables: seconds with three decimals.
std::string seconds_text(int64_t us) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(us / 1000000),
                        static_cast<long long>(us / 1000 % 1000));
  return {buf, static_cast<size_t>(n)};
}

}  // namespace

// The variables that describe the finished exchange (ExchangeFacts) or the time of logging.
std::string_view Context::log_var(std::string_view name) const {
  auto number = [&](uint64_t n) -> std::string_view {
    scratch_ = std::to_string(n);
    return scratch_;
  };
  if (name == "status") return status > 0 ? number(static_cast<uint64_t>(status)) : "";
  if (name == "upstream_status")
    return upstream_status > 0 ? number(static_cast<uint64_t>(upstream_status)) : "";
  if (name == "msec" || name == "time_iso8601") {
    auto now = std::chrono::system_clock::now().time_since_epoch();
    int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
    if (name == "msec") return scratch_ = seconds_text(us);
    time_t sec = static_cast<time_t>(us / 1000000);
    struct tm utc;
    gmtime_r(&sec, &utc);
    char buf[40];
    size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", &utc);
    return scratch_.assign(buf, n);
  }
  // The rest describe the finished exchange: empty before (a rate-limit key made of them must
  // not put every client in one bucket).
  if (!facts.known) return {};
  if (name == "upstream_addr") return facts.upstream_addr;
  if (name == "request_time") return scratch_ = seconds_text(facts.latency_us);
  if (name == "upstream_response_time")
    return facts.upstream_latency_us > 0 ? (scratch_ = seconds_text(facts.upstream_latency_us))
                                         : "";
  if (name == "bytes_sent") return number(facts.bytes_out);
  if (name == "request_length") return number(facts.bytes_in);
  return {};
}

std::string_view Context::var_list(std::string_view name, std::string& joined) const {
  if (!name.starts_with("http_")) return var(name);
  std::string_view suffix = name.substr(5);
  std::string_view first;
  int lines = 0;
  for (const auto& h : req->headers) {
    if (!header_name_matches(h.name, suffix)) continue;
    if (++lines == 1) {
      first = h.value;
      continue;
    }
    if (lines == 2) joined.assign(first);
    joined.append(", ").append(h.value);
  }
  return lines > 1 ? std::string_view(joined) : first;
}

// ssl_client_<suffix>; without mTLS on the connection, ssl_client_verify is NONE as in nginx.
std::string_view Context::client_certificate_var(std::string_view suffix) const {
  if (!client_cert) return suffix == "verify" && https ? "NONE" : std::string_view();
  if (suffix == "verify") return client_cert->verify;
  if (suffix == "s_dn") return client_cert->subject;
  if (suffix == "i_dn") return client_cert->issuer;
  if (suffix == "serial") return client_cert->serial;
  if (suffix == "fingerprint") return client_cert->fingerprint;
  return {};
}

namespace {

// `list` without the items named `name` ("a=1&b=2" split at '&', or cookies at ';').
std::string without_item(std::string_view list, char sep, std::string_view name) {
  std::string kept;
  while (!list.empty()) {
    size_t end = list.find(sep);
    std::string_view item = list.substr(0, end);
    std::string_view key = item.substr(0, item.find('='));
    while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
    while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
    if (key != name) {
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      if (!kept.empty()) kept += sep == ';' ? "; " : "&";
      kept += item;
    }
    if (end == std::string_view::npos) break;
    list.remove_prefix(end + 1);
  }
  return kept;
}

}  // namespace

void Context::drop_upstream_arg(std::string_view name) {
  std::string target(upstream.target ? *upstream.target : std::string(req->target));
  size_t q = target.find('?');
  if (q == std::string::npos) return;
  std::string kept = without_item(std::string_view(target).substr(q + 1), '&', name);
  target.resize(q);
  if (!kept.empty()) target += "?" + kept;
  upstream.target = std::move(target);
}

void Context::drop_upstream_cookie(std::string_view name) {
  std::string_view cookies = header("cookie");
  if (cookies.empty()) return;
  std::string kept = without_item(cookies, ';', name);
  if (kept.empty())
    upstream.headers.push_back({HeaderEdit::Op::Remove, "Cookie", ""});
  else
    upstream.headers.push_back({HeaderEdit::Op::Set, "Cookie", std::move(kept)});
}

void Context::set_client(std::string_view ip) {
  client_ip.assign(ip);
  client_bytes = router::address_bytes(ip);
}

void Context::reset() {
  req = nullptr;
  path = {};
  client_ip.clear();
  client_port = 0;
  server_port = 0;
  https = false;
  server_name = {};
  route_id = nullptr;
  service_id = nullptr;
  route_info = nullptr;
  consumers = nullptr;
  metadata = nullptr;
  consumer = nullptr;
  upstream.clear();
  response_headers.clear();
  response_status.reset();
  response_body.reset();
  reply.status = 0;
  reply.body.clear();
  reply.content_type.clear();
  request_id.clear();
  trace_parent.clear();
  upstream_choice = -1;
  takeover = nullptr;
  request_local.reset();
  status = 0;
  response = nullptr;
  upstream_status = 0;
  log_done = false;
  facts = {};
  max_body_size = 0;
  notes_.clear();
  active.clear();
  global_count = 0;
}

}  // namespace portico::plugins
