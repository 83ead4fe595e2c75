#include "plugins/request_json.hpp"

#include "core/ascii.hpp"
#include "http/request_vars.hpp"

namespace portico::plugins {

using config::json;

void add_listed(json& map, std::string key, json value) {
  auto it = map.find(key);
  if (it == map.end()) {
    map[std::move(key)] = std::move(value);
  } else {
    if (!it->is_array()) *it = json::array({std::move(*it)});
    it->push_back(std::move(value));
  }
}

json args_json(std::string_view args) {
  json out = json::object();
  while (!args.empty()) {
    size_t amp = args.find('&');
    std::string_view item = args.substr(0, amp);
    args = amp == std::string_view::npos ? std::string_view() : args.substr(amp + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    std::string name = http::percent_decode(item.substr(0, eq), true);
    if (eq == std::string_view::npos)
      add_listed(out, std::move(name), true);
    else
      add_listed(out, std::move(name), http::percent_decode(item.substr(eq + 1), true));
  }
  return out;
}

json headers_json(const http::RequestHead& req) {
  json out = json::object();
  for (const auto& h : req.headers) add_listed(out, ascii_lower(h.name), std::string(h.value));
  return out;
}

}  // namespace portico::plugins
