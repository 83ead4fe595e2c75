#include "http/balancer_key.hpp"

namespace portico::http {
namespace {

std::string_view header_value(const RequestHead& req, std::string_view name) {
  for (const auto& h : req.headers)
    if (iequals(h.name, name)) return h.value;
  return {};
}

// "http_x_user_id" names the header "x-user-id".
std::string header_name_of_var(std::string_view var) {
  std::string name(var);
  for (auto& c : name)
    if (c == '_') c = '-';
  return name;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits `list` at `sep` and returns the value of the first "name=value" item named `name`.
std::string_view find_pair(std::string_view list, char sep, std::string_view name) {
  while (!list.empty()) {
    size_t end = list.find(sep);
    std::string_view item = trim(list.substr(0, end));
    size_t eq = item.find('=');
    if (eq != std::string_view::npos && trim(item.substr(0, eq)) == name)
      return trim(item.substr(eq + 1));
    if (end == std::string_view::npos) break;
    list.remove_prefix(end + 1);
  }
  return {};
}

std::string variable(std::string_view var, const RequestHead& req, std::string_view remote_ip,
                     uint16_t local_port) {
  if (var == "remote_addr") return std::string(remote_ip);
  if (var == "uri") return std::string(req.path);
  if (var == "request_uri") return std::string(req.target);
  if (var == "host") return std::string(req.host);
  if (var == "query_string") return std::string(req.query);
  if (var == "server_port") return std::to_string(local_port);
  if (var.starts_with("arg_")) return std::string(query_arg(req.query, var.substr(4)));
  if (var.starts_with("http_"))
    return std::string(header_value(req, header_name_of_var(var.substr(5))));
  if (var.starts_with("cookie_"))
    return std::string(cookie_value(header_value(req, "cookie"), var.substr(7)));
  return {};
}

}  // namespace

std::string_view cookie_value(std::string_view cookies, std::string_view name) {
  return find_pair(cookies, ';', name);
}

std::string_view query_arg(std::string_view query, std::string_view name) {
  return find_pair(query, '&', name);
}

std::string balancer_key(const config::Upstream& spec, const RequestHead& req,
                         std::string_view remote_ip, uint16_t local_port) {
  std::string key;
  if (spec.hash_on == "vars")
    key = variable(spec.key, req, remote_ip, local_port);
  else if (spec.hash_on == "header")
    key = std::string(header_value(req, spec.key));
  else if (spec.hash_on == "cookie")
    key = std::string(cookie_value(header_value(req, "cookie"), spec.key));
  // hash_on consumer: no consumers yet (authentication plugins), so the client address.
  if (key.empty()) key = std::string(remote_ip);
  return key;
}

}  // namespace portico::http
