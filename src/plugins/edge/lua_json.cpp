#include "plugins/edge/lua_json.hpp"

#include <lua.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace portico::plugins::edge {
namespace {

constexpr size_t kMaxDepth = 64;

// The length of the array part when the table is a proper array (keys exactly 1..n), else -1.
int64_t array_length(lua_State* L, int index) {
  int64_t count = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, index) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 1);
      return -1;
    }
    double k = lua_tonumber(L, -1);
    if (k < 1 || std::floor(k) != k) {
      lua_pop(L, 1);
      return -1;
    }
    ++count;
    max = std::max(max, static_cast<int64_t>(k));
  }
  return count > 0 && count == max ? max : -1;
}

// What one conversion has left: bytes of (roughly) the encoded text, and the tables it is in.
struct Walk {
  size_t bytes_left;
  size_t max_bytes;
  std::vector<const void*> open_tables;  // outermost first: a table met again is a cycle
};

void charge(Walk& walk, size_t bytes) {
  if (bytes > walk.bytes_left)
    throw std::runtime_error("cannot encode: too large (more than " +
                             std::to_string(walk.max_bytes) + " bytes)");
  walk.bytes_left -= bytes;
}

config::json convert(lua_State* L, int index, Walk& walk) {
  if (index < 0) index = lua_gettop(L) + index + 1;
  charge(walk, lua_type(L, index) == LUA_TSTRING ? lua_objlen(L, index) + 3 : 8);
  switch (lua_type(L, index)) {
    case LUA_TNIL:
      return nullptr;
    case LUA_TBOOLEAN:
      return lua_toboolean(L, index) != 0;
    case LUA_TNUMBER: {
      double d = lua_tonumber(L, index);
      if (!std::isfinite(d)) throw std::runtime_error("cannot encode NaN or infinity");
      if (std::floor(d) == d && std::fabs(d) < 9007199254740992.0) return static_cast<int64_t>(d);
      return d;
    }
    case LUA_TSTRING: {
      size_t n = 0;
      const char* s = lua_tolstring(L, index, &n);
      return std::string(s, n);
    }
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, index) == nullptr) return nullptr;  // ngx.null
      break;
    case LUA_TTABLE: {
      const void* table = lua_topointer(L, index);
      auto& open = walk.open_tables;
      if (std::find(open.begin(), open.end(), table) != open.end())
        throw std::runtime_error("cannot encode: the table contains itself");
      if (open.size() >= kMaxDepth) throw std::runtime_error("cannot encode: nesting too deep");
      open.push_back(table);
      luaL_checkstack(L, 4, "json");
      int64_t n = array_length(L, index);
      if (n > 0) {
        config::json out = config::json::array();
        for (int64_t i = 1; i <= n; ++i) {
          lua_rawgeti(L, index, static_cast<int>(i));
          out.push_back(convert(L, -1, walk));
          lua_pop(L, 1);
        }
        open.pop_back();
        return out;
      }
      config::json out = config::json::object();
      lua_pushnil(L);
      while (lua_next(L, index) != 0) {
        int kt = lua_type(L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
          throw std::runtime_error("cannot encode a table key of type " +
                                   std::string(lua_typename(L, kt)));
        lua_pushvalue(L, -2);  // tostring on a copy: converting the key itself breaks lua_next
        size_t len = 0;
        const char* key = lua_tolstring(L, -1, &len);
        std::string name(key, len);
        lua_pop(L, 1);
        charge(walk, len + 3);
        out[name] = convert(L, -1, walk);
        lua_pop(L, 1);
      }
      open.pop_back();
      return out;
    }
    default:
      break;
  }
  throw std::runtime_error(std::string("cannot encode a value of type ") +
                           lua_typename(L, lua_type(L, index)));
}

}  // namespace

config::json to_json(lua_State* L, int index, size_t max_bytes) {
  Walk walk{max_bytes, max_bytes, {}};
  return convert(L, index, walk);
}

void push_json(lua_State* L, const config::json& value, void (*step)(lua_State*)) {
  if (step) step(L);
  luaL_checkstack(L, 3, "json");
  switch (value.type()) {
    case config::json::value_t::null:
    case config::json::value_t::discarded:
      lua_pushlightuserdata(L, nullptr);
      return;
    case config::json::value_t::boolean:
      lua_pushboolean(L, value.get<bool>());
      return;
    case config::json::value_t::number_integer:
    case config::json::value_t::number_unsigned:
    case config::json::value_t::number_float:
      lua_pushnumber(L, value.get<double>());
      return;
    case config::json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      lua_pushlstring(L, s.data(), s.size());
      return;
    }
    case config::json::value_t::array: {
      lua_createtable(L, static_cast<int>(value.size()), 0);
      int i = 0;
      for (const auto& item : value) {
        push_json(L, item, step);
        lua_rawseti(L, -2, ++i);
      }
      return;
    }
    case config::json::value_t::object: {
      lua_createtable(L, 0, static_cast<int>(value.size()));
      for (auto it = value.begin(); it != value.end(); ++it) {
        lua_pushlstring(L, it.key().data(), it.key().size());
        push_json(L, it.value(), step);
        lua_rawset(L, -3);
      }
      return;
    }
    case config::json::value_t::binary:
      lua_pushnil(L);
      return;
  }
}

}  // namespace portico::plugins::edge
