#include "http/request_vars.hpp"

#include <array>

#include "http/balancer_key.hpp"
#include "router/route_rule.hpp"

namespace portico::http {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += plus_is_space && s[i] == '+' ? ' ' : s[i];
  }
  return out;
}

namespace {

// Calls fn(value) for each query argument named `name` until fn returns true.
template <class Fn>
bool each_arg(std::string_view query, std::string_view name, Fn fn) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    size_t eq = item.find('=');
    if (item.substr(0, eq) == name &&
        fn(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1)))
      return true;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

// Decoded arguments and formatted numbers, kept for the evaluation of one expression (which
// never suspends). Per thread rather than per RequestVars: the object lives in the request's
// coroutine frame, which should stay small.
thread_local std::array<std::string, 8> t_scratch;
thread_local size_t t_next = 0;

}  // namespace

std::string_view RequestVars::keep(std::string value) const {
  std::string& slot = t_scratch[t_next++ % t_scratch.size()];
  slot = std::move(value);
  return slot;
}

std::optional<std::string_view> RequestVars::get(const router::VarRef& var) const {
  using K = router::VarKind;
  switch (var.kind) {
    case K::Arg: {
      std::optional<std::string_view> found;
      each_arg(req_.query, var.name, [&](std::string_view v) {
        found = v.find_first_of("%+") == std::string_view::npos ? v : keep(percent_decode(v, true));
        return true;
      });
      return found;
    }
    case K::Http:
      for (const auto& h : req_.headers)
        if (iequals(h.name, var.name)) return h.value;
      return std::nullopt;
    case K::Cookie: {
      for (const auto& h : req_.headers)
        if (iequals(h.name, "cookie")) {
          std::string_view v = cookie_value(h.value, var.name);
          if (!v.empty()) return v;
        }
      return std::nullopt;
    }
    case K::Uri:
      return path_;
    case K::RequestUri:
      return req_.target;
    case K::Args:
      return req_.query;
    case K::Host: {
      char buf[256];
      return keep(std::string(router::normalize_host(req_.host, buf, sizeof(buf))));
    }
    case K::RemoteAddr:
      return client_ip_;
    case K::RemotePort:
      return keep(std::to_string(client_port_));
    case K::ServerPort:
      return keep(std::to_string(server_port_));
    case K::RequestMethod:
      return req_.method;
    case K::Scheme:
      return std::string_view(https_ ? "https" : "http");
    case K::ServerProtocol:
      return std::string_view(req_.minor_version == 0 ? "HTTP/1.0" : "HTTP/1.1");
    default:  // server_addr, route_id, service_id, consumer_name, status: not known while matching
      return std::nullopt;
  }
}

bool RequestVars::has_value(const router::VarRef& var, std::string_view value) const {
  if (var.kind == router::VarKind::Arg)
    return each_arg(req_.query, var.name, [&](std::string_view v) {
      return (v.find_first_of("%+") == std::string_view::npos ? std::string(v)
                                                              : percent_decode(v, true)) == value;
    });
  if (var.kind == router::VarKind::Http) {
    for (const auto& h : req_.headers)
      if (iequals(h.name, var.name) && h.value == value) return true;
    return false;
  }
  return VarSource::has_value(var, value);
}

}  // namespace portico::http
