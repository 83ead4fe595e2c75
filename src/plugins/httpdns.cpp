// httpdns (Portico's own): an HTTP endpoint mobile clients ask which access nodes to connect to,
// instead of DNS (which carriers hijack and cache past any TTL). The answer is the nodes of the
// route's upstream nearest the client (GeoIP on the client address, after real-ip), healthy ones
// only while any is healthy, so a client never gets a node the health checks have taken out:
//
//   GET /d?host=im.example.com  ->  {"host":"im.example.com","ips":["203.0.113.10"],
//                                    "nodes":["203.0.113.10:9200"],"ttl":60,...}
#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/deadline.hpp"
#include "metrics/series_counters.hpp"
#include "plugins/context.hpp"
#include "plugins/geo/geoip_db.hpp"
#include "plugins/geo/nearest_nodes.hpp"
#include "plugins/plugin.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::plugins {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// A DNS name as clients ask for it: letters, digits, '-', '_' and dots, at most 253 bytes.
// Anything else (spaces, quotes, bytes that are not UTF-8) cannot be a name we answer for, and
// would otherwise travel into the JSON answer.
bool plausible_host(std::string_view host) {
  return host.size() <= 253 && std::all_of(host.begin(), host.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
         });
}

class Httpdns final : public Plugin {
 public:
  std::shared_ptr<GeoIpFile> geoip;  // null: clients are not placed, answers spread
  std::vector<std::string> hosts;    // names answered (empty: any)
  int64_t ttl = 60;                  // seconds clients may keep an answer
  int64_t answers = 2;               // nodes per answer
  std::unordered_map<std::string, Coordinates> locations;  // node "ip:port", "ip" or host

  Step access(Context& ctx) const override {
    if (ctx.req->method != "GET" && ctx.req->method != "HEAD") {
      ctx.respond_error(405, "httpdns: ask with GET /path?host=<name>");
      return Step::Respond;
    }
    std::string_view host = ctx.var("arg_host");
    if (host.empty()) {
      ctx.respond_error(400, "httpdns: the host argument is required (?host=<name>)");
      return Step::Respond;
    }
    if (!plausible_host(host)) {
      ctx.respond_error(400, "httpdns: the host argument is not a DNS name");
      return Step::Respond;
    }
    if (!hosts.empty() && std::none_of(hosts.begin(), hosts.end(),
                                       [&](const std::string& h) { return iequals(h, host); })) {
      ctx.respond_error(404, "httpdns: no answer for this host");
      return Step::Respond;
    }
    ctx.takeover = this;
    return Step::Continue;
  }

  Task<bool> take_over(Context& ctx, Takeover& io) const override {
    const upstream::UpstreamTarget& target = io.upstream;
    const int64_t now = steady_now_ms();
    std::vector<NodePlace> places(target.nodes().size());
    for (size_t i = 0; i < places.size(); ++i) {
      const upstream::NodeTarget& node = target.nodes()[i];
      places[i].healthy = target.healthy(i, now);
      places[i].usable = node.weight > 0;
      places[i].weight = node.weight;
      places[i].at = location_of(node);
    }
    GeoLocation client;
    if (geoip) client = geoip->lookup(ctx.client_ip);
    NearestChoice choice = nearest_nodes(places, client.at, static_cast<size_t>(answers),
                                         upstream::UpstreamTarget::hash(ctx.client_ip));
    nlohmann::json ips = nlohmann::json::array(), nodes = nlohmann::json::array();
    for (size_t i : choice.nodes) {
      const upstream::NodeTarget& node = target.nodes()[i];
      std::string ip = node.endpoint.address().to_string();
      if (std::find(ips.begin(), ips.end(), ip) == ips.end()) ips.push_back(ip);
      nodes.push_back(node.address);
    }
    nlohmann::json answer = {{"host", std::string(ctx.var("arg_host"))},
                             {"client_ip", ctx.client_ip},
                             {"ips", std::move(ips)},
                             {"nodes", std::move(nodes)},
                             {"ttl", ttl}};
    if (!client.country.empty()) answer["country"] = client.country;
    if (choice.degraded) answer["degraded"] = true;
    const char* result = choice.nodes.empty() ? "no_node"
                         : choice.degraded    ? "degraded"
                         : client.at          ? "nearest"
                                              : "unplaced";
    if (auto* series = metrics::SeriesCounters::current())
      series->add(
          "portico_httpdns_answers_total",
          "httpdns answers by route and result (nearest: placed by GeoIP; unplaced: "
          "the client's place is unknown; degraded: no node was healthy; no_node: 503).",
          {{"route", ctx.route_id ? std::string_view(*ctx.route_id) : ""}, {"result", result}});
    if (choice.nodes.empty()) {
      // Nothing to keep: a client asks again at once, not after the ttl.
      ctx.response_headers.push_back({HeaderEdit::Op::Set, "Cache-Control", "no-store"});
      ctx.respond_error(503, "httpdns: the upstream has no node to give");
      co_return true;
    }
    // The answer depends on the client: shared caches must not keep it.
    ctx.response_headers.push_back(
        {HeaderEdit::Op::Set, "Cache-Control", "private, max-age=" + std::to_string(ttl)});
    ctx.respond(200, answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    co_return true;
  }

 private:
  std::optional<Coordinates> location_of(const upstream::NodeTarget& node) const {
    if (locations.empty()) return std::nullopt;
    for (const std::string& key :
         {node.address, node.endpoint.address().to_string(), node.host_header}) {
      auto it = locations.find(key);
      if (it != locations.end()) return it->second;
    }
    return std::nullopt;
  }
};

std::optional<Coordinates> read_coordinates(const config::json& v, const std::string& path,
                                            Errors& errors) {
  config::ObjectReader r(v, path, errors);
  auto number = [&](const char* key, double limit) -> std::optional<double> {
    const config::json* x = r.raw(key);
    if (!x) {
      if (r.valid()) r.error(key, "is required");
      return std::nullopt;
    }
    if (!x->is_number() || x->get<double>() < -limit || x->get<double>() > limit) {
      r.error(key, "must be a number of degrees in [-" + std::to_string(int(limit)) + ", " +
                       std::to_string(int(limit)) + "]");
      return std::nullopt;
    }
    return x->get<double>();
  };
  auto lat = number("lat", 90);
  auto lon = number("lon", 180);
  r.finish();
  if (!lat || !lon) return std::nullopt;
  return Coordinates{*lat, *lon};
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  size_t before = errors.size();
  auto p = std::make_shared<Httpdns>();
  config::ObjectReader r(conf, path, errors);
  const double recheck = r.duration_or("geoip_recheck", 60, 1, 86400);
  if (auto file = r.string("geoip_db")) {
    std::string error;
    p->geoip = GeoIpFile::open(*file, static_cast<int64_t>(recheck * 1000), error);
    if (!p->geoip) r.error("geoip_db", error);
  }
  p->hosts = r.string_list("hosts");
  p->ttl = r.integer_or("ttl", p->ttl, 1, 86400);
  p->answers = r.integer_or("answers", p->answers, 1, 64);
  if (const config::json* locations = r.raw("locations")) {
    if (!locations->is_object()) {
      r.error("locations", "must be an object of node -> {lat, lon}");
    } else {
      for (const auto& [node, where] : locations->items())
        if (auto at = read_coordinates(where, r.child_path("locations") + "." + node, errors))
          p->locations.emplace(node, *at);
    }
  }
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& httpdns_plugin() {
  static const PluginType type{"httpdns", 505, &create};
  return type;
}

}  // namespace portico::plugins
