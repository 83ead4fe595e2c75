#include "http/responses.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>

#include "core/access_log.hpp"
#include "plugins/runner.hpp"

namespace portico::http {

// nginx's wording where nginx has one (405 "Not Allowed", 413, 414), the RFC's elsewhere: a
// status a plugin or an edge function may answer with (limit-req's rejected_code, a 421 after
// a certificate change, a 410 for an ended session) gets its name, not "Unknown".
const char* status_reason(int s) {
  switch (s) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 102:
      return "Processing";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 207:
      return "Multi-Status";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Request Entity Too Large";
    case 414:
      return "Request-URI Too Large";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Requested Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 418:
      return "I'm a teapot";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Entity";
    case 423:
      return "Locked";
    case 424:
      return "Failed Dependency";
    case 425:
      return "Too Early";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 451:
      return "Unavailable For Legal Reasons";
    case 499:
      return "Client Closed Request";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 506:
      return "Variant Also Negotiates";
    case 507:
      return "Insufficient Storage";
    case 508:
      return "Loop Detected";
    case 510:
      return "Not Extended";
    case 511:
      return "Network Authentication Required";
    default:
      return "Unknown";
  }
}

void build_error_response(std::string& out, int status, std::string_view message, bool keep_alive,
                          bool head_request) {
  std::string body = "{\"error_msg\":\"";
  append_json_escaped(body, message);
  body += "\"}\n";
  out.clear();
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += status_reason(status);
  out += "\r\nServer: portico\r\nContent-Type: application/json\r\nContent-Length: ";
  out += std::to_string(body.size());
  out += keep_alive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n";
  if (!head_request) out += body;  // else read as the next response on a kept-alive connection
}

namespace {
// The formatted second is cached per worker; only milliseconds change between requests.
std::string_view timestamp(char (&buf)[48]) {
  thread_local time_t cached_sec = 0;
  thread_local char cached[24];
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  time_t sec = static_cast<time_t>(ms / 1000);
  if (sec != cached_sec) {
    std::tm tm{};
    gmtime_r(&sec, &tm);
    std::strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
    cached_sec = sec;
  }
  int n = std::snprintf(buf, sizeof(buf), "%s.%03dZ", cached, static_cast<int>(ms % 1000));
  return {buf, static_cast<size_t>(n)};
}

void append_ms(std::string& out, int64_t us) {
  char buf[32];
  int n = std::snprintf(buf, sizeof(buf), "%.3f", static_cast<double>(us) / 1000.0);
  out.append(buf, static_cast<size_t>(n));
}
}  // namespace

void fill_log_facts(Exchange& x) {
  x.ctx.facts = {now_us() - x.start_us, x.upstream_us,   x.bytes_in, x.bytes_out,
                 x.upstream_addrs,      x.response_head, true};
}

LogPhaseOnThrow::LogPhaseOnThrow(Exchange& x) : x_(x), exceptions_(std::uncaught_exceptions()) {}

LogPhaseOnThrow::~LogPhaseOnThrow() {
  if (std::uncaught_exceptions() <= exceptions_ || !x_.with_plugins || x_.ctx.log_done) return;
  try {
    if (!x_.status) x_.status = 500;
    x_.ctx.status = x_.status;
    x_.ctx.response = nullptr;  // the response head it pointed at may be gone with its frame
    fill_log_facts(x_);
    plugins::run_log(x_.ctx);
  } catch (...) {  // (nothing may leave a destructor during unwinding)
  }
}

void record_exchange(ClientConnection& c, Exchange& x, bool log_phase) {
  int64_t elapsed_us = now_us() - x.start_us;
  if (x.with_plugins) fill_log_facts(x);
  if (x.with_plugins && log_phase) {
    x.ctx.status = x.status;
    // A client that left (499) is not an answer of the upstream's.
    x.ctx.upstream_status = x.upstream_status                   ? x.upstream_status
                            : x.attempts > 0 && x.status != 499 ? x.status
                                                                : 0;
    plugins::run_log(x.ctx);
  }
  c.worker.metrics.record({x.route_id ? std::string_view(*x.route_id) : std::string_view(),
                           x.status, static_cast<double>(elapsed_us) / 1e6,
                           x.upstream_us ? static_cast<double>(x.upstream_us) / 1e6 : -1.0,
                           x.bytes_in, x.bytes_out});
  if (!c.worker.access_log_enabled()) return;
  std::string& out = c.worker.access_log_chunk();
  char ts[48];
  out += "{\"time\":\"";
  out += timestamp(ts);
  out += "\",\"client\":\"";
  out += x.with_plugins ? x.ctx.client_ip : c.remote_ip;  // after real-ip
  out += ':';
  out += std::to_string(c.remote_port);
  out += "\",\"method\":\"";
  append_json_escaped(out, x.method);
  out += "\",\"uri\":\"";
  append_json_escaped(out, x.target);
  out += "\",\"host\":\"";
  append_json_escaped(out, x.host);
  out += "\",\"status\":";
  out += std::to_string(x.status);
  out += ",\"bytes_in\":";
  out += std::to_string(x.bytes_in);
  out += ",\"bytes_out\":";
  out += std::to_string(x.bytes_out);
  out += ",\"route\":";
  if (x.route_id) {
    out += '"';
    append_json_escaped(out, *x.route_id);
    out += '"';
  } else {
    out += "null";
  }
  if (x.with_plugins && !x.ctx.request_id.empty()) {
    out += ",\"request_id\":\"";
    append_json_escaped(out, x.ctx.request_id);
    out += '"';
  }
  out += ",\"upstream\":\"";
  out += x.upstream_addrs;
  out += "\",\"upstream_status\":";
  out += x.upstream_status ? std::to_string(x.upstream_status) : std::string("null");
  out += ",\"attempts\":";
  out += std::to_string(x.attempts);
  out += ",\"latency_ms\":";
  append_ms(out, elapsed_us);
  out += ",\"upstream_latency_ms\":";
  if (x.upstream_us)
    append_ms(out, x.upstream_us);
  else
    out += "null";
  out += "}\n";
  c.worker.flush_access_log_if_full();
}

}  // namespace portico::http
