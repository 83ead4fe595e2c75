// What plugins may read of the matched route beyond its id (tracing spans, $route_name): kept
// with the compiled route, and copied for sessions that outlive their config.
#pragma once

#include <string>
#include <vector>

namespace portico::plugins {

struct RouteInfo {
  std::string name;               // the route's name ($route_name)
  std::vector<std::string> uris;  // its uri patterns ("/api/*"): tracing names the matched one
  std::string service_name;       // its service's name ($service_name), when it has one
};

}  // namespace portico::plugins
