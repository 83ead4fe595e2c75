#include "plugins/edge/lua_sandbox.hpp"

#include <gtest/gtest.h>
#include <lua.hpp>

#include <chrono>

#include "plugins/edge/ngx_api.hpp"

namespace portico::plugins::edge {
namespace {

constexpr size_t kLimit = 8 << 20;

class SandboxTest : public ::testing::Test {
 protected:
  SandboxTest() : box(kLimit) { install_ngx_api(box); }

  // Loads `source` (a chunk that returns a function), then calls that function with a budget
  // of `seconds`; on success its one result is left in `result` (as a string).
  CallResult run(const std::string& source, double seconds = 0.05) {
    lua_State* L = box.state();
    int top = lua_gettop(L);
    box.start_clock(seconds);
    CallResult r = box.load(source, source);
    if (r.ok()) r = box.call(0, 1);
    if (r.ok()) r = box.call(0, 1);
    if (r.ok()) {
      const char* s = lua_tostring(L, -1);
      result = s ? s : "(nil)";
    }
    lua_settop(L, top);
    return r;
  }

  LuaSandbox box;
  std::string result;
};

TEST_F(SandboxTest, ForbiddenGlobalsAndLibrariesAreNil) {
  const char* names[] = {"load",      "loadstring", "dofile",         "loadfile",    "getfenv",
                         "setfenv",   "rawset",     "collectgarbage", "gcinfo",      "newproxy",
                         "module",    "io",         "debug",          "ffi",         "jit",
                         "package",   "coroutine",  "os.execute",     "os.exit",     "os.getenv",
                         "os.remove", "os.rename",  "os.tmpname",     "string.dump", "('').dump"};
  for (const char* name : names) {
    std::string code = "return function() return type(" + std::string(name) + ") end";
    ASSERT_TRUE(run(code).ok()) << name;
    EXPECT_EQ(result, "nil") << name;
  }
}

TEST_F(SandboxTest, SafeLibrariesAreThere) {
  ASSERT_TRUE(run("return function() return string.upper('a') .. table.concat({1, 2}) .. "
                  "math.floor(2.5) .. type(os.time()) .. bit.bor(1, 2) .. type(pcall) end")
                  .ok());
  EXPECT_EQ(result, "A122number3function");
}

TEST_F(SandboxTest, StringMetatableIsHidden) {
  ASSERT_TRUE(run("return function() return tostring(getmetatable('')) end").ok());
  EXPECT_EQ(result, "false");
  EXPECT_FALSE(run("return function() setmetatable('', {}) end").ok());
}

TEST_F(SandboxTest, PrecompiledBytecodeIsRefused) {
  CallResult r = box.load("\x1bLJ\x02garbage", "bytecode");
  EXPECT_EQ(r.failure, Failure::Error);
  EXPECT_NE(r.message.find("wrong mode"), std::string::npos) << r.message;
}

TEST_F(SandboxTest, SyntaxErrorsNameTheLine) {
  CallResult r = box.load("return function()\n  local a = 1\n  x y\nend", "return function()...");
  EXPECT_EQ(r.failure, Failure::Error);
  EXPECT_NE(r.message.find(":3:"), std::string::npos) << r.message;
}

TEST_F(SandboxTest, RuntimeErrorsAreReported) {
  CallResult r = run("return function() error('boom') end");
  EXPECT_EQ(r.failure, Failure::Error);
  EXPECT_NE(r.message.find("boom"), std::string::npos) << r.message;
  r = run("return function() error({}) end");
  EXPECT_EQ(r.failure, Failure::Error);
  EXPECT_EQ(r.message, "(error object is a table value)");
}

TEST_F(SandboxTest, InfiniteLoopIsStoppedByTheTimeLimit) {
  auto started = std::chrono::steady_clock::now();
  CallResult r = run("return function() while true do end end", 0.02);
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.failure, Failure::Timeout);
  EXPECT_LT(took, std::chrono::milliseconds(500));
  EXPECT_NE(r.message.find("20 ms"), std::string::npos) << r.message;
}

TEST_F(SandboxTest, LoopThatCatchesTheTimeoutIsStoppedAnyway) {
  EXPECT_EQ(run("return function() while true do pcall(function() while true do end end) end "
                "end")
                .failure,
            Failure::Timeout);
  // A handler that loops: LuaJIT would run it with the hook disabled; ours runs it after.
  EXPECT_EQ(run("return function() while true do xpcall(function() while true do end end, "
                "function() while true do end end) end end")
                .failure,
            Failure::Timeout);
  EXPECT_EQ(run("local function f() return pcall(f) end return function() while true do f() "
                "end end")
                .failure,
            Failure::Timeout);
  // Caught and then returned normally: the time was used up all the same.
  EXPECT_EQ(
      run("return function() pcall(function() while true do end end) return 'done' end").failure,
      Failure::Timeout);
}

TEST_F(SandboxTest, XpcallStillCallsTheHandler) {
  ASSERT_TRUE(run("return function() local ok, e = xpcall(function(a) error('x' .. a, 0) end, "
                  "function(e) return 'handled ' .. e end, 7) return tostring(ok) .. ' ' .. e "
                  "end")
                  .ok());
  EXPECT_EQ(result, "false handled x7");
}

TEST_F(SandboxTest, MemoryBombsAreStoppedAndTheStateStaysUsable) {
  size_t before = box.memory_used();
  EXPECT_EQ(run("return function() local t = {} for i = 1, 1e9 do t[i] = i end end", 5).failure,
            Failure::Memory);
  EXPECT_EQ(run("return function() local s = 'x' while true do s = s .. s end end", 5).failure,
            Failure::Memory);
  EXPECT_EQ(run("return function() return #string.rep('x', 1e9) end", 5).failure, Failure::Memory);
  EXPECT_LE(box.memory_used(), kLimit);
  EXPECT_LT(box.memory_used(), before + (1 << 20));  // collected after the failures
  EXPECT_FALSE(box.exhausted());
  ASSERT_TRUE(
      run("return function() local t = {} for i = 1, 100 do t[i] = i end return #t end").ok());
  EXPECT_EQ(result, "100");
}

TEST_F(SandboxTest, EachChunkHasItsOwnGlobals) {
  // One chunk sets a global and breaks its own string library...
  ASSERT_TRUE(run("leaked = 'yes' string.upper = nil ngx.say = nil "
                  "return function() other = 1 return type(string.upper) end")
                  .ok());
  EXPECT_EQ(result, "nil");
  // ...another one sees neither, and `("x"):upper()` still works through the shared metatable.
  ASSERT_TRUE(run("return function() return tostring(leaked) .. tostring(other) .. "
                  "string.upper('a') .. ('b'):upper() .. type(ngx.say) end")
                  .ok());
  EXPECT_EQ(result, "nilnilABfunction");
}

TEST_F(SandboxTest, RequireOnlyKnowsThePreloadedModules) {
  ASSERT_TRUE(run("local core = require('apisix.core') local cjson = require('cjson.safe') "
                  "return function() return type(core.response.exit) .. type(core.log.warn) .. "
                  "cjson.encode({a = 1}) end")
                  .ok());
  EXPECT_EQ(result, "functionfunction{\"a\":1}");
  CallResult r = run("local io = require('io') return function() end");
  EXPECT_EQ(r.failure, Failure::Error);
  EXPECT_NE(r.message.find("module 'io' is not available"), std::string::npos) << r.message;
}

TEST_F(SandboxTest, ProxiesCannotBeUnlocked) {
  ASSERT_TRUE(run("return function() return tostring(getmetatable(ngx.var)) end").ok());
  EXPECT_EQ(result, "false");
  EXPECT_EQ(run("return function() setmetatable(ngx.var, {}) end").failure, Failure::Error);
}

TEST_F(SandboxTest, RequestFunctionsOutsideARequestAreErrors) {
  CallResult r = run("return function() return ngx.req.get_method() end");
  EXPECT_EQ(r.failure, Failure::Error);
  EXPECT_NE(r.message.find("not available outside a request"), std::string::npos) << r.message;
  ASSERT_TRUE(run("return function() return ngx.md5('abc') .. ' ' .. "
                  "ngx.encode_base64('hi') .. ' ' .. ngx.HTTP_FORBIDDEN end")
                  .ok());
  EXPECT_EQ(result, "900150983cd24fb0d6963f7d28e17f72 aGk= 403");
}

TEST_F(SandboxTest, GarbageFarBeyondTheLimitIsCollectedNotRefused) {
  // Live data near half the limit (8 MiB), then short strings made and dropped that add up to
  // several times the limit: the garbage is collected in time, the function succeeds.
  CallResult r =
      run("return function() "
          "  local keep = {} for i = 1, 50000 do keep[i] = {} end "  // 3.7 MiB
          "  local n = 0 for i = 1, 1000000 do local s = 'key' .. i n = n + #s end "
          "  return #keep .. ' ' .. n end",
          10);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(result, "50000 8888896");
  EXPECT_LE(box.memory_used(), kLimit);
}

TEST_F(SandboxTest, StringRepWithHugeCountsFailsCleanly) {
  const char* bombs[] = {"string.rep('x', 2^31 - 1)", "string.rep('ab', 2^30)",
                         "string.rep('x', 1e9, ', ')", "('xyz'):rep(2^53)",
                         "string.rep(string.rep('x', 1e6), 1e6)"};
  for (const char* bomb : bombs) {
    result.clear();
    CallResult r = run("return function() return #" + std::string(bomb) + " end", 5);
    // Refused by the memory limit or as too long for a Lua string (a count past 2^31 wraps in
    // LuaJIT and may give a short string): never a crash, never a string past the limit.
    EXPECT_TRUE(r.ok() || r.failure == Failure::Memory || r.failure == Failure::Error) << bomb;
    if (r.ok()) {
      EXPECT_LE(std::stoull(result), kLimit) << bomb;
    }
    EXPECT_LE(box.memory_used(), kLimit) << bomb;
  }
  ASSERT_TRUE(run("return function() return #string.rep('ab', 1000, ',') end").ok());
  EXPECT_EQ(result, "2999");
}

TEST_F(SandboxTest, CostlyFunctionsRefuseHugeInputs) {
  // Inputs of 3 MiB: the limit is 2 MiB, within the 8 MiB memory limit of this state.
  const char* calls[] = {"ngx.md5(big)",
                         "ngx.sha1_bin(big)",
                         "ngx.hmac_sha1('k', big)",
                         "ngx.encode_base64(big)",
                         "ngx.decode_base64(big)",
                         "ngx.escape_uri(big)",
                         "require('cjson').decode(big)",
                         "require('cjson').encode({big})"};
  for (const char* call : calls) {
    CallResult r = run("local big = string.rep('a', 3 * 2^20) return function() return " +
                           std::string(call) + " end",
                       5);
    EXPECT_EQ(r.failure, Failure::Error) << call;
    EXPECT_NE(r.message.find("too large"), std::string::npos) << call << ": " << r.message;
  }
  CallResult r =
      run("local cjson = require('cjson.safe') return function() "
          "local v, err = cjson.decode(string.rep('[', 1001) .. string.rep(']', 1001)) "
          "return tostring(v) .. ' ' .. err .. ' ' .. #ngx.md5(string.rep('a', 2^20)) end");
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(result, "nil json.decode: nesting deeper than 1000 32");
  ASSERT_TRUE(run("local cjson = require('cjson') return function() "
                  "return #cjson.decode(string.rep('[', 1000) .. string.rep(']', 1000)) end")
                  .ok());
  EXPECT_EQ(result, "1");
}

TEST_F(SandboxTest, JsonOfASharedSubtableIsTooLargeAndCyclesAreRefused) {
  // 2^19 leaves, each table met many times: 3 MiB of JSON from a table of 20 small tables.
  CallResult r =
      run("return function() local t = {1} for i = 1, 19 do t = {t, t} end "
          "return require('cjson').encode(t) end",
          5);
  ASSERT_EQ(r.failure, Failure::Error);
  EXPECT_NE(r.message.find("too large"), std::string::npos) << r.message;
  r =
      run("return function() local t = {} t[1] = t t[2] = t return require('cjson').encode(t) "
          "end",
          5);
  EXPECT_EQ(r.failure, Failure::Error);
  EXPECT_NE(r.message.find("contains itself"), std::string::npos) << r.message;
  // Shared but small is fine, as in cjson.
  ASSERT_TRUE(
      run("return function() local s = {1} return require('cjson').encode({s, s}) end").ok());
  EXPECT_EQ(result, "[[1],[1]]");
}

TEST_F(SandboxTest, HttpTimeRefusesTimesItCannotFormat) {
  ASSERT_TRUE(run("return function() return ngx.http_time(0) .. '|' .. ngx.http_time(-1) .. '|' "
                  ".. ngx.http_time(253402300799) end")
                  .ok());
  EXPECT_EQ(result,
            "Thu, 01 Jan 1970 00:00:00 GMT|Wed, 31 Dec 1969 23:59:59 GMT|"
            "Fri, 31 Dec 9999 23:59:59 GMT");
  for (const char* when : {"0/0", "1/0", "-1/0", "1e300", "-1e300", "2^62", "253402300800"}) {
    CallResult r = run("return function() return ngx.http_time(" + std::string(when) + ") end");
    EXPECT_EQ(r.failure, Failure::Error) << when << " gave " << result;
    EXPECT_NE(r.message.find("out of range"), std::string::npos) << when << ": " << r.message;
  }
  EXPECT_EQ(run("return function() return ngx.http_time('soon') end").failure, Failure::Error);
}

}  // namespace
}  // namespace portico::plugins::edge
