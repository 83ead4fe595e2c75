// Turns JSON (from routes.yaml now, from etcd and the Admin API later) into validated config
// objects. Every problem is recorded with its field path; nothing is half-accepted.
#pragma once

#include "config/field_reader.hpp"
#include "config/objects.hpp"

namespace portico::config {

std::shared_ptr<const Upstream> parse_upstream(const json& value, const std::string& path,
                                               Errors& errors);
Route parse_route(const json& value, const std::string& path, Errors& errors);
Service parse_service(const json& value, const std::string& path, Errors& errors);

// The whole routes file: top-level lists `routes`, `services`, `upstreams`. Also checks
// references between them (upstream_id, service_id) and duplicate ids.
ConfigSet parse_config_set(const json& doc, Errors& errors);

}  // namespace portico::config
