// JSON for edge functions (core.json, cjson, a table returned as a response body): Lua values to
// nlohmann::json and back, with cjson's conventions (ngx.null / cjson.null is JSON null; a
// table with keys 1..n is an array, an empty table an object).
#pragma once

#include <string>

#include "config/field_reader.hpp"

struct lua_State;

namespace portico::plugins::edge {

// Converts the value at `index`. Throws std::runtime_error on what JSON cannot hold (functions,
// mixed or sparse tables, cycles, nesting deeper than 64, NaN), and when the text would take
// more than about `max_bytes`: a table may hold one subtable many times, each encoded in full.
config::json to_json(lua_State* L, int index, size_t max_bytes);
// Pushes `value` as Lua: objects and arrays become tables, null becomes ngx.null. `step`, if
// given, is called per value (a time limit's check: 2 MiB of JSON is ~100 ms of table building).
void push_json(lua_State* L, const config::json& value, void (*step)(lua_State*) = nullptr);

}  // namespace portico::plugins::edge
