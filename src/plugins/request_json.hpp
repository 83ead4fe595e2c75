// The request's arguments and headers as JSON objects, the way OpenResty hands them to Lua
// (ngx.req.get_uri_args / ngx.decode_args, ngx.req.get_headers): what loggers write and what
// request-validation checks.
#pragma once

#include <string>
#include <string_view>

#include "config/field_reader.hpp"
#include "http/http_parser.hpp"

namespace portico::plugins {

// map[key] = value, or a list of the values once the key comes again.
void add_listed(config::json& map, std::string key, config::json value);
// "a=1&b&a=2" -> {"a": ["1", "2"], "b": true}, names and values percent-decoded ('+' a space).
config::json args_json(std::string_view args);
// Header names in lower case to their values (a list for a header sent several times).
config::json headers_json(const http::RequestHead& req);

}  // namespace portico::plugins
