#include "plugins/edge/lua_patterns.hpp"

#include <gtest/gtest.h>
#include <lua.hpp>

#include <string>

namespace portico::plugins::edge {
namespace {

int steps = 0;
void count(lua_State*) { ++steps; }

// A plain LuaJIT state with LuaJIT's own string functions as `string`, and ours as `ours`:
// every case runs through both and must give the same results, or both raise an error.
class LuaPatterns : public ::testing::Test {
 protected:
  LuaPatterns() : L(luaL_newstate()) {
    luaL_openlibs(L);
    lua_newtable(L);
    install_pattern_functions(L, count);
    lua_setglobal(L, "ours");
    const char* compare = R"(
      local function pack(ok, ...) return {ok = ok, n = select('#', ...), ...} end
      local function same(a, b)
        if a.ok ~= b.ok then return false end
        if not a.ok then return true end  -- both raised
        if a.n ~= b.n then return false end
        for i = 1, a.n do
          if a[i] ~= b[i] or type(a[i]) ~= type(b[i]) then return false end
        end
        return true
      end
      local function show(r)
        local out = {tostring(r.ok)}
        for i = 1, r.n do out[#out + 1] = type(r[i]) .. ":" .. tostring(r[i]) end
        return table.concat(out, " ")
      end
      -- `name` is find, match or gsub; the arguments after the subject and the pattern vary
      function differ(name, ...)
        local theirs = pack(pcall(string[name], ...))
        local mine = pack(pcall(ours[name], ...))
        if same(theirs, mine) then return nil end
        return show(theirs) .. "  vs ours  " .. show(mine)
      end
      function gmatch_all(lib, s, p)
        local out = {}
        local ok, err = pcall(function()
          for a, b in lib.gmatch(s, p) do out[#out + 1] = tostring(a) .. "|" .. tostring(b) end
        end)
        return ok and table.concat(out, ",") or "error"
      end
    )";
    EXPECT_EQ(luaL_dostring(L, compare), 0) << lua_tostring(L, -1);
  }
  ~LuaPatterns() override { lua_close(L); }

  // "" when LuaJIT's and ours agree on string[name](args...); else both results.
  std::string differ(const char* name, const std::string& args) {
    std::string code = std::string("return differ('") + name + "', " + args + ")";
    if (luaL_dostring(L, code.c_str()) != 0) return std::string("lua: ") + lua_tostring(L, -1);
    std::string out = lua_isnil(L, -1) ? "" : lua_tostring(L, -1);
    lua_settop(L, 0);
    return out;
  }

  std::string gmatch(const char* lib, const std::string& args) {
    std::string code = std::string("return gmatch_all(") + lib + ", " + args + ")";
    if (luaL_dostring(L, code.c_str()) != 0) return std::string("lua: ") + lua_tostring(L, -1);
    std::string out = lua_tostring(L, -1);
    lua_settop(L, 0);
    return out;
  }

  lua_State* L;
};

const char* kSubjects[] = {
    R"~("")~",
    R"~("hello world from Lua")~",
    R"~("  key = value ; other=2  ")~",
    R"~("THE (quick) [brown] {fox} 123 jumps 4.5e6")~",
    R"~("a,b,,c,")~",
    R"~("aaaaaaaab")~",
    R"~("f(a(b)c)d ((x)) )(")~",
    R"~("tab\there\nnew line\0zero")~",
    R"~("/api/v1/users/42?x=1&y=%20z")~",
    R"~("\200\255 bytes \127")~",
};

const char* kPatterns[] = {
    R"~("")~",
    R"~("o")~",
    R"~("l+")~",
    R"~("l*")~",
    R"~("l-o")~",
    R"~("x?y?z?")~",
    R"~("%a+")~",
    R"~("%A+")~",
    R"~("%d+")~",
    R"~("%s*=%s*")~",
    R"~("%w+%s*=%s*%w+")~",
    R"~("^%s*(.-)%s*$")~",
    R"~("(%w+)=(%w+)")~",
    R"~("()ll()")~",
    R"~("%b()")~",
    R"~("%b{}")~",
    R"~("%f[%a]%a+")~",
    R"~("%f[%A]")~",
    R"~("[%a_][%w_]*")~",
    R"~("[^,]*")~",
    R"~("[a-f%d]+")~",
    R"~("[]]")~",
    R"~("[^]]+")~",
    R"~("[%]%[]")~",
    R"~("^a")~",
    R"~("b$")~",
    R"~("$")~",
    R"~("^$")~",
    R"~("a$b")~",
    R"~("(a*(.)%w(%s*))")~",
    R"~("(a)(b)?%1")~",
    R"~("(.)%1")~",
    R"~("%.")~",
    R"~("%%")~",
    R"~("[%.%d]+")~",
    R"~("/(%w+)/v(%d)")~",
    R"~("[\128-\255]+")~",
    R"~("%c")~",
    R"~("%p+")~",
    R"~("%u%l*")~",
    R"~("%x+")~",
    R"~("%z")~",
    R"~("(")~",
    R"~("%")~",
    R"~("[a")~",
    R"~("%b")~",
    R"~("(()")~",
    R"~("a)")~",
    R"~("%f")~",
    R"~("%1")~",
    R"~("(.)%2")~",
    R"~(".-$")~",
    R"~("[a-]")~",
    R"~("[-a]")~",
    R"~("[^%s]+")~",
    R"~(".")~",
    R"~("a\0")~",  // a pattern ends at its first zero byte, as in Lua 5.1
    R"~("a\0b$")~",
    R"~(".%\0")~",
    R"~(".[a\0]")~",
};

TEST_F(LuaPatterns, FindAndMatchAgreeWithLuaJitOnEveryCase) {
  for (const char* s : kSubjects)
    for (const char* p : kPatterns) {
      std::string args = std::string(s) + ", " + p;
      EXPECT_EQ(differ("find", args), "") << "find(" << args << ")";
      EXPECT_EQ(differ("match", args), "") << "match(" << args << ")";
      for (const char* init : {"1", "3", "-4", "0", "100", "-100", "2^32 + 2", "-2^40"}) {
        EXPECT_EQ(differ("find", args + ", " + init), "") << "find(" << args << ", " << init << ")";
        EXPECT_EQ(differ("match", args + ", " + init), "") << "match(" << args << ", " << init;
      }
      EXPECT_EQ(differ("find", args + ", 1, true"), "") << "plain find(" << args << ")";
    }
}

TEST_F(LuaPatterns, GsubAgreesWithLuaJitForStringTableAndFunctionReplacements) {
  const char* replacements[] = {R"~("<%0>")~",
                                R"~("%2-%1")~",
                                R"~("%%")~",
                                R"~("x%")~",
                                R"~("%9")~",
                                "7",
                                R"~({hello = "HI", a = false, l = 1})~",
                                R"~(function(a, b) return b and (b .. a) or nil end)~",
                                R"~(function() return {} end)~",
                                R"~(true)~"};
  for (const char* s : kSubjects)
    for (const char* p : kPatterns)
      for (const char* r : replacements) {
        std::string args = std::string(s) + ", " + p + ", " + r;
        EXPECT_EQ(differ("gsub", args), "") << "gsub(" << args << ")";
        EXPECT_EQ(differ("gsub", args + ", 2"), "") << "gsub(" << args << ", 2)";
        EXPECT_EQ(differ("gsub", args + ", 2^32"), "") << "gsub(" << args << ", 2^32)";
      }
}

TEST_F(LuaPatterns, GmatchAgreesWithLuaJit) {
  for (const char* s : kSubjects)
    for (const char* p : kPatterns) {
      std::string args = std::string(s) + ", " + p;
      EXPECT_EQ(gmatch("ours", args), gmatch("string", args)) << "gmatch(" << args << ")";
    }
}

TEST_F(LuaPatterns, EveryMatchCountsItsSteps) {
  // The step is where the time limit looks at the clock: backtracking must go through it.
  steps = 0;
  ASSERT_EQ(luaL_dostring(L, "return ours.find(string.rep('a', 200), '.-.-x')"), 0);
  EXPECT_GT(steps, 200 * 200 / 2);
  steps = 0;
  ASSERT_EQ(luaL_dostring(L, "return ours.gsub(string.rep('ab', 100), '%w', '%0%0')"), 0);
  EXPECT_GE(steps, 200);
  // A step is bounded work: a long set costs a step per character looked at.
  steps = 0;
  ASSERT_EQ(luaL_dostring(L, "return ours.find(('a'):rep(100), '[' .. ('b'):rep(10000) .. 'c]')"),
            0);
  EXPECT_GE(steps, 100 * 10000);
}

TEST_F(LuaPatterns, APlainFindOfALongNeedleIsLinear) {
  // memmem: a megabyte needle that almost matches everywhere does not cost megabytes squared.
  ASSERT_EQ(luaL_dostring(L, R"(
    local hay = string.rep('a', 2 * 1024 * 1024)
    local needle = string.rep('a', 1024 * 1024) .. 'b'
    return ours.find(hay, needle, 1, true), ours.find(hay .. 'b', needle, 1, true))"),
            0);
  EXPECT_TRUE(lua_isnil(L, -3));  // the first find, cut to one value
  EXPECT_EQ(lua_tointeger(L, -2), 1024 * 1024 + 1);
  EXPECT_EQ(lua_tointeger(L, -1), 2 * 1024 * 1024 + 1);
}

}  // namespace
}  // namespace portico::plugins::edge
