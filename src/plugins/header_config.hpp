// The `headers` field of proxy-rewrite and response-rewrite (APISIX 3.x): either
// {add: {name: value} or ["Name: value"], remove: [names], set: {name: value}}, applied in that
// order, or the older flat map {name: value} where a value sets the header and "" removes it.
#pragma once

#include <string>
#include <vector>

#include "config/field_reader.hpp"
#include "plugins/context.hpp"
#include "plugins/var_template.hpp"

namespace portico::plugins {

std::vector<HeaderEdit> read_header_edits(const config::json& value, const std::string& path,
                                          config::Errors& errors);

// A plugin's `{name: value}` response or request headers whose values may hold variables
// (fault-injection's abort.headers, forward-auth's extra_headers, mocking's response_headers).
// A number is taken as its text; a value must be one line. Errors under `<path>.<name>`.
using HeaderTemplates = std::vector<std::pair<std::string, VarTemplate>>;
HeaderTemplates read_header_templates(const config::json& value, const std::string& path,
                                      config::Errors& errors);

// Header names and values must be safe to write into a head (no CR/LF, token names).
bool valid_header_name(std::string_view name);
bool valid_header_value(std::string_view value);

}  // namespace portico::plugins
