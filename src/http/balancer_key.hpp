// What a chash upstream hashes for a request (APISIX's hash_on and key): a request variable, a
// header or a cookie. A missing value falls back to the client address, as in APISIX, so such
// requests still spread by client instead of all landing on one node.
#pragma once

#include <string>
#include <string_view>

#include "config/objects.hpp"
#include "http/http_parser.hpp"

namespace portico::http {

std::string balancer_key(const config::Upstream& spec, const RequestHead& req,
                         std::string_view remote_ip, uint16_t local_port);

// The value of `name` in a "a=1; b=2" Cookie header or an "a=1&b=2" query string (raw, not
// percent-decoded); empty when absent.
std::string_view cookie_value(std::string_view cookies, std::string_view name);
std::string_view query_arg(std::string_view query, std::string_view name);

}  // namespace portico::http
