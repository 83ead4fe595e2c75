// Field rules every APISIX kind shares: bookkeeping metadata, the `plugins` map, host names and
// addresses. Used by object_parser (routes, services, upstreams) and other_objects (the rest).
#pragma once

#include <string>
#include <string_view>

#include "config/field_reader.hpp"
#include "config/objects.hpp"

namespace portico::config {

// desc, labels, create_time, update_time: APISIX bookkeeping that changes no behaviour.
void ignore_metadata(ObjectReader& r);
// `plugins` must be an object; every name in it is an error (kinds without plugins yet).
void reject_plugins(ObjectReader& r);
// Compiles `plugins` into instances (null when absent or invalid). `kind`/`id` name the scope
// that stateful plugins key their state by; consumers compile authentication credentials.
PluginSetPtr read_plugins(ObjectReader& r, std::string_view kind, const std::string& id,
                          bool for_consumer = false);

// 1..253 letters, digits, '.', '-' or '_'.
bool valid_host_chars(std::string_view host);
// A host name or a wildcard like "*.example.com".
bool valid_host_pattern(std::string_view host);
// An IP address, or an address with a prefix length ("10.0.0.0/8", "fe80::/64").
bool valid_cidr(const std::string& s);

}  // namespace portico::config
