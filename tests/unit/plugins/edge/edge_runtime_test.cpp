#include "plugins/edge/edge_runtime.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <lua.hpp>

#include "config/node_config.hpp"
#include "plugins/consumers.hpp"
#include "plugins/context.hpp"

namespace portico::plugins::edge {
namespace {

// A request as the server would hand it to plugins: GET /p?a=1&b=2&b=x%20y with two headers.
class RuntimeTest : public ::testing::Test {
 protected:
  RuntimeTest() {
    req.method = "GET";
    req.target = "/p?a=1&b=2&b=x%20y";
    req.path = "/p";
    req.query = "a=1&b=2&b=x%20y";
    req.host = "example.com";
    req.headers = {{"Host", "example.com"}, {"X-Token", "secret"}, {"Cookie", "sid=42"}};
    ctx.req = &req;
    ctx.path = req.path;
    ctx.client_ip = "10.0.0.1";
    ctx.route_id = &route;
  }

  std::shared_ptr<FunctionSet> functions(std::vector<std::string> sources) {
    for (const auto& s : sources) EXPECT_EQ(Runtime::current().check(s, 0.05), "") << s;
    return std::make_shared<FunctionSet>(std::move(sources), config::json{{"phase", "access"}});
  }

  Outcome run(const FunctionSet& set, Phase phase = Phase::Access, std::string* body = nullptr) {
    return Runtime::current().run(set, phase, ctx, body, 0.05);
  }

  static const HeaderEdit* edit(const std::vector<HeaderEdit>& edits, std::string_view name) {
    for (const auto& e : edits)
      if (e.name == name) return &e;
    return nullptr;
  }

  std::string route = "r1";
  http::RequestHead req;
  Context ctx;
};

TEST_F(RuntimeTest, ChecksNameSyntaxErrorsAndNonFunctions) {
  Runtime& rt = Runtime::current();
  EXPECT_EQ(rt.check("return function() end", 0.05), "");
  std::string why = rt.check("return function()\n  local a = 1\n  x y\nend", 0.05);
  EXPECT_NE(why.find("[string \"return function()...\"]:3:"), std::string::npos) << why;
  EXPECT_EQ(rt.check("return 42", 0.05), "only accept Lua function, the input code type is number");
  EXPECT_NE(rt.check("while true do end", 0.02).find("time limit"), std::string::npos);
}

TEST_F(RuntimeTest, ReadsTheRequestThroughNgxAndTheCtxArgument) {
  auto set = functions({R"(return function(conf, ctx)
    local args = ngx.req.get_uri_args()
    ngx.ctx.seen = table.concat({ngx.var.uri, ngx.var.arg_a, ngx.var.http_x_token,
      ngx.var.cookie_sid, ngx.var.remote_addr, ngx.var.host, ngx.req.get_method(),
      args.a, args.b[1], args.b[2], ngx.req.get_headers()["X-Token"], ctx.var.uri,
      ctx.route_id, conf.phase, tostring(ngx.var.no_such_variable)}, "|")
  end)",
                        R"(return function() return 200, ngx.ctx.seen end)"});
  Outcome out = run(*set);
  ASSERT_EQ(out.failure, Failure::None) << out.message;
  ASSERT_TRUE(out.answered);
  EXPECT_EQ(ctx.reply.body,
            "/p|1|secret|42|10.0.0.1|example.com|GET|1|2|x y|secret|/p|r1|access|nil");
}

TEST_F(RuntimeTest, EditsTheUpstreamRequest) {
  auto set = functions({R"(return function()
    ngx.req.set_header("X-User", "alice")
    ngx.req.set_header("X-Multi", {"a", "b"})
    ngx.req.clear_header("X-Token")
    ngx.req.set_uri("/new path")
    ngx.req.set_uri_args({q = "a b"})
  end)",
                        R"(return function()
    local h = ngx.req.get_headers()
    assert(h["x-user"] == "alice" and h["x-token"] == nil and #h["x-multi"] == 2)
    assert(ngx.var.http_x_user == "alice" and ngx.var.uri == "/new path")
    assert(ngx.req.get_uri_args().q == "a b")
  end)"});
  Outcome out = run(*set);
  ASSERT_EQ(out.failure, Failure::None) << out.message;
  EXPECT_FALSE(out.answered);
  ASSERT_TRUE(ctx.upstream.target);
  EXPECT_EQ(*ctx.upstream.target, "/new%20path?q=a%20b");
  ASSERT_TRUE(edit(ctx.upstream.headers, "X-User"));
  EXPECT_EQ(edit(ctx.upstream.headers, "X-User")->value, "alice");
  EXPECT_EQ(edit(ctx.upstream.headers, "X-Token")->op, HeaderEdit::Op::Remove);
}

TEST_F(RuntimeTest, RefusesFramingHeadersAndHeaderInjection) {
  auto length = functions({"return function() ngx.req.set_header('Content-Length', '0') end"});
  Outcome out = run(*length);
  EXPECT_EQ(out.failure, Failure::Error);
  EXPECT_NE(out.message.find("is the gateway's to set"), std::string::npos) << out.message;
  auto crlf = functions({"return function() ngx.req.set_header('X-A', 'a\\r\\nX-B: b') end"});
  EXPECT_EQ(run(*crlf).failure, Failure::Error);
  EXPECT_TRUE(ctx.upstream.headers.empty());
}

TEST_F(RuntimeTest, ExitAnswersAndStopsTheFunction) {
  auto set = functions({"return function() ngx.exit(403) error('not reached') end",
                        "return function() error('not reached either') end"});
  Outcome out = run(*set);
  ASSERT_EQ(out.failure, Failure::None) << out.message;
  ASSERT_TRUE(out.answered);
  EXPECT_EQ(ctx.reply.status, 403);
  EXPECT_NE(ctx.reply.body.find("403 Forbidden"), std::string::npos);
}

TEST_F(RuntimeTest, ExitOkContinuesWithTheNextFunction) {
  auto set = functions({"return function() ngx.exit(ngx.OK) error('not reached') end",
                        "return function() ngx.req.set_header('X-Second', '1') end"});
  Outcome out = run(*set);
  ASSERT_EQ(out.failure, Failure::None) << out.message;
  EXPECT_FALSE(out.answered);
  EXPECT_TRUE(edit(ctx.upstream.headers, "X-Second"));
}

TEST_F(RuntimeTest, PrintedOutputAndStatusMakeTheAnswer) {
  auto set = functions({R"(return function()
    ngx.status = 418 ngx.header["X-Teapot"] = "yes" ngx.say("short ", "and stout") ngx.exit(200)
  end)"});
  Outcome out = run(*set);
  ASSERT_TRUE(out.answered) << out.message;
  EXPECT_EQ(ctx.reply.status, 418);
  EXPECT_EQ(ctx.reply.body, "short and stout\n");
  EXPECT_EQ(ctx.reply.content_type, "text/plain");
  EXPECT_TRUE(edit(ctx.response_headers, "X-Teapot"));
}

TEST_F(RuntimeTest, ReturnedStatusAndTableBodyAnswerAsJson) {
  auto set =
      functions({"local core = require('apisix.core') return function() "
                 "return 401, {message = 'who are you'} end"});
  Outcome out = run(*set);
  ASSERT_TRUE(out.answered) << out.message;
  EXPECT_EQ(ctx.reply.status, 401);
  EXPECT_EQ(ctx.reply.body, R"({"message":"who are you"})");
  EXPECT_EQ(ctx.reply.content_type, "application/json");
  auto core =
      functions({"local core = require('apisix.core') return function() "
                 "core.response.exit(429, 'slow down') end"});
  ctx.reply = {};
  out = run(*core);
  ASSERT_TRUE(out.answered) << out.message;
  EXPECT_EQ(ctx.reply.status, 429);
  EXPECT_EQ(ctx.reply.body, "slow down");
}

TEST_F(RuntimeTest, NgxCtxIsSharedByTheSetsOfOneRequestOnly) {
  auto pre = functions({"return function() ngx.ctx.user = 'bob' end"});
  auto post = functions({"return function() ngx.header['X-User'] = ngx.ctx.user end"});
  ASSERT_TRUE(run(*pre).failure == Failure::None);
  ctx.status = 200;
  ASSERT_EQ(run(*post, Phase::HeaderFilter).failure, Failure::None);
  ASSERT_TRUE(edit(ctx.response_headers, "X-User"));
  EXPECT_EQ(edit(ctx.response_headers, "X-User")->value, "bob");
  ctx.request_local.reset();  // the request is over (run_log does this)
  ctx.response_headers.clear();
  ASSERT_EQ(run(*post, Phase::HeaderFilter).failure, Failure::None);
  EXPECT_EQ(edit(ctx.response_headers, "X-User")->op, HeaderEdit::Op::Remove);  // nil: no user
}

TEST_F(RuntimeTest, HeaderFilterSeesAndChangesTheResponse) {
  http::ResponseHead resp;
  resp.status = 201;
  resp.headers = {{"Content-Type", "text/html"}, {"X-Up", "1"}};
  ctx.response = &resp;
  ctx.status = 201;
  auto set = functions({R"(return function()
    assert(ngx.status == 201 and ngx.header.content_type == "text/html")
    ngx.header["X-Up"] = nil
    ngx.header.content_length = nil
    ngx.status = 202
    assert(ngx.header["X-Up"] == nil and ngx.status == 202)
  end)"});
  Outcome out = run(*set, Phase::HeaderFilter);
  ASSERT_EQ(out.failure, Failure::None) << out.message;
  EXPECT_EQ(ctx.response_status, 202);
  EXPECT_EQ(edit(ctx.response_headers, "X-Up")->op, HeaderEdit::Op::Remove);
  EXPECT_FALSE(edit(ctx.response_headers, "content-length"));
}

TEST_F(RuntimeTest, BodyFilterRewritesTheWholeBody) {
  auto set =
      functions({"return function() ngx.arg[1] = ngx.arg[1]:upper() .. "
                 "tostring(ngx.arg[2]) end"});
  std::string body = "hello";
  ASSERT_EQ(run(*set, Phase::BodyFilter, &body).failure, Failure::None);
  EXPECT_EQ(body, "HELLOtrue");
}

TEST_F(RuntimeTest, AnsweringIsRefusedAfterTheResponseHead) {
  auto set = functions({"return function() ngx.say('too late') end"});
  ctx.status = 200;
  Outcome out = run(*set, Phase::HeaderFilter);
  EXPECT_EQ(out.failure, Failure::Error);
  EXPECT_NE(out.message.find("not in the header_filter phase"), std::string::npos);
}

TEST_F(RuntimeTest, AFailureLeavesTheRuntimeUsable) {
  auto loop = functions({"return function() while true do end end"});
  auto fine = functions({"return function() return 200, 'fine' end"});
  Outcome out = Runtime::current().run(*loop, Phase::Access, ctx, nullptr, 0.01);
  EXPECT_EQ(out.failure, Failure::Timeout);
  EXPECT_EQ(out.function, 0u);
  out = run(*fine);
  ASSERT_EQ(out.failure, Failure::None) << out.message;
  EXPECT_EQ(ctx.reply.body, "fine");
}

TEST_F(RuntimeTest, CompiledFunctionsAreReleasedWhenTheirSetDies) {
  // Each set's chunk holds a table of 2^17 numbers (1 MiB) in an upvalue (a table: equal strings
  // would be interned into one); 40 alive at once would be 40 MiB, over the 32 MiB limit: the
  // state only stays small if dead sets are released.
  Runtime& rt = Runtime::current();
  const char* source =
      "local big = {} for i = 1, 131072 do big[i] = i end "
      "return function() return 200, #big .. '' end";
  for (int i = 0; i < 40; ++i) {
    auto set =
        std::make_shared<FunctionSet>(std::vector<std::string>{source}, config::json::object());
    Outcome out = run(*set);
    ASSERT_EQ(out.failure, Failure::None) << i << ": " << out.message;
    EXPECT_EQ(ctx.reply.body, "131072");
  }
  auto last = functions({"return function() end"});
  run(*last);  // releases what the dead sets left
  lua_gc(rt.sandbox().state(), LUA_GCCOLLECT, 0);
  EXPECT_LT(rt.sandbox().memory_used(), size_t{4} << 20);
}

TEST_F(RuntimeTest, AFunctionSetIsCompiledOncePerRuntime) {
  auto set =
      functions({"local calls = 0 return function() calls = calls + 1 "
                 "return 200, tostring(calls) end"});
  run(*set);
  run(*set);
  EXPECT_EQ(ctx.reply.body, "2");  // the same compiled closure: its upvalue counted both calls
}

TEST_F(RuntimeTest, ConsumerNameIsSetPastAMetatableTheFunctionsGaveCtx) {
  // Before authentication a function hides `ctx` behind a __newindex that records writes.
  auto pre = functions({R"(return function(conf, ctx)
    setmetatable(ctx, {__newindex = function(t, k) ngx.ctx.intercepted = k end})
  end)"});
  ASSERT_EQ(run(*pre, Phase::Rewrite).failure, Failure::None);
  Consumer alice{"alice", "", nullptr};
  ctx.consumer = &alice;
  auto later = functions({R"(return function(conf, ctx)
    return 200, tostring(ctx.consumer_name) .. " " .. tostring(ngx.ctx.intercepted)
  end)"});
  Outcome out = run(*later);
  ASSERT_TRUE(out.answered) << out.message;
  EXPECT_EQ(ctx.reply.body, "alice nil");  // set by the gateway, not through the metatable
}

TEST_F(RuntimeTest, NgxVarStatusIsTheResponseStatus) {
  http::ResponseHead resp;
  resp.status = 502;
  ctx.response = &resp;
  ctx.status = 503;
  auto set = functions({R"(return function()
    ngx.header["X-Status"] = ngx.var.status .. "/" .. ngx.var.upstream_status
  end)"});
  Outcome out = run(*set, Phase::HeaderFilter);
  ASSERT_EQ(out.failure, Failure::None) << out.message;
  ASSERT_TRUE(edit(ctx.response_headers, "X-Status"));
  EXPECT_EQ(edit(ctx.response_headers, "X-Status")->value, "503/502");
}

// The peak resident size of this process grows by less than `bytes` while `f` runs.
template <typename F>
void expect_peak_growth_below(size_t bytes, F f) {
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  f();
  getrusage(RUSAGE_SELF, &after);
  EXPECT_LT(static_cast<size_t>(after.ru_maxrss - before.ru_maxrss) * 1024, bytes);
}

TEST_F(RuntimeTest, PrintingARepeatedListStopsAtTheOutputLimit) {
  // 2^16 references to one 4 KiB string: 256 MiB if flattened before the 1 MiB check.
  auto set = functions({R"(return function()
    local t = {string.rep("x", 4096)}
    for i = 1, 16 do t = {t, t} end
    ngx.say(t)
  end)"});
  expect_peak_growth_below(64 << 20, [&] {
    Outcome out = run(*set);
    EXPECT_EQ(out.failure, Failure::Error);
    EXPECT_NE(out.message.find("ngx.say: too large"), std::string::npos) << out.message;
  });
}

TEST_F(RuntimeTest, ReturnedJsonBodyOfASharedSubtableIsTooLarge) {
  // Encoded outside the functions' time limit: the size is what stops it.
  auto set = functions({R"(return function()
    local t = {1}
    for i = 1, 19 do t = {t, t} end
    return 200, t
  end)"});
  Outcome out = run(*set);
  EXPECT_EQ(out.failure, Failure::Error);
  EXPECT_NE(out.message.find("too large"), std::string::npos) << out.message;
  EXPECT_FALSE(out.answered);
}

TEST_F(RuntimeTest, HeaderListsAndUriArgsOfARepeatedStringAreTooLarge) {
  // A list of 65536 references to one 4 KiB string is 512 KiB of Lua memory and 256 MiB once
  // copied out as header values or query arguments.
  const std::string list =
      "local v = string.rep('x', 4096) local t = {} for i = 1, 65536 do t[i] = v end ";
  const char* writes[] = {"ngx.header['X-Big'] = t", "ngx.req.set_header('X-Big', t)",
                          "ngx.req.set_uri_args({k = t})", "ngx.encode_args({k = t})"};
  for (const char* write : writes) {
    auto set = functions({list + "return function() " + write + " end"});
    Outcome out = run(*set);
    EXPECT_EQ(out.failure, Failure::Error) << write;
    EXPECT_NE(out.message.find("too large"), std::string::npos) << write << ": " << out.message;
  }
  EXPECT_TRUE(ctx.response_headers.empty());
  EXPECT_TRUE(ctx.upstream.headers.empty());
  EXPECT_FALSE(ctx.upstream.target);
  // Setting one header again and again keeps one edit, the last.
  auto again = functions({"return function() for i = 1, 10000 do ngx.header['X-N'] = i end end"});
  ASSERT_EQ(run(*again).failure, Failure::None);
  ASSERT_EQ(ctx.response_headers.size(), 1u);
  EXPECT_EQ(ctx.response_headers[0].value, "10000");
}

TEST_F(RuntimeTest, ADecodePastTheLimitTimesOutCleanlyAndLeavesTheRuntimeUsable) {
  // One decode of ~0.5 MB under a 1 ms limit: the limit runs out inside the call (after the
  // parse, or while the tables are built, where the clock is looked at) and the timeout unwinds
  // out of it. (How soon it stops is a timing, not asserted here.)
  auto set = functions({R"(local core = require('apisix.core')
    local big = '[' .. string.rep('{"k": [1, 2, 3, "four"]},', 20000) .. '0]'
    return function() ngx.ctx.n = #core.json.decode(big) end)"});
  // The first run compiles the chunk (building the text) and decodes within a second.
  Outcome first = Runtime::current().run(*set, Phase::Access, ctx, nullptr, 1.0);
  ASSERT_EQ(first.failure, Failure::None) << first.message;
  Outcome out = Runtime::current().run(*set, Phase::Access, ctx, nullptr, 0.001);
  EXPECT_EQ(out.failure, Failure::Timeout) << out.message;
  auto after = functions({"return function() ngx.ctx.n = #require('cjson').decode('[1,2]') end"});
  EXPECT_EQ(run(*after).failure, Failure::None);
}

TEST_F(RuntimeTest, APathologicalPatternStopsAtTheTimeLimit) {
  // ~10^18 backtracking steps inside one string.find: LuaJIT's own would hold the worker for
  // good. The time limit reaches into the match, here and when a chunk's top level is checked.
  auto set =
      functions({"return function() ngx.ctx.r = string.rep('a', 100000):find('.-.-.-.-x') end"});
  Outcome out = run(*set);
  EXPECT_EQ(out.failure, Failure::Timeout) << out.message;
  std::string at_check = Runtime::current().check(
      "local r = ('a'):rep(100000):gsub('.-.-.-x', '') return function() end", 0.05);
  EXPECT_NE(at_check.find("time limit"), std::string::npos) << at_check;
  auto after = functions({"return function() ngx.ctx.r = ('k=v'):match('(%w)=(%w)') end"});
  EXPECT_EQ(run(*after).failure, Failure::None);
}

// The worker's state at 8 MiB for one test (restored after): its sets may hold 4 MiB each.
class SmallStateTest : public RuntimeTest {
 protected:
  SmallStateTest() : saved(config::edge_function_limits()) {
    config::EdgeFunctionLimits small = saved;
    small.memory_limit = 8 << 20;
    config::set_edge_function_limits(small);
  }
  ~SmallStateTest() override { config::set_edge_function_limits(saved); }

  // A set whose upvalue counts its calls: answers the count.
  std::shared_ptr<FunctionSet> counter() {
    return functions(
        {"local calls = 0 return function() calls = calls + 1 "
         "return 200, tostring(calls) end"});
  }
  std::string count(const FunctionSet& set) {
    Outcome out = run(set);
    EXPECT_EQ(out.failure, Failure::None) << out.message;
    return ctx.reply.body;
  }

  config::EdgeFunctionLimits saved;
};

TEST_F(SmallStateTest, ASetOverHalfTheLimitFailsAloneAndTheOthersKeepTheirUpvalues) {
  auto keeper = counter();
  EXPECT_EQ(count(*keeper), "1");
  // Keeps 32 KiB more per call in an upvalue (distinct strings: equal ones would be one). Small
  // steps: when it fails, the state is full of what it holds, not of one call's temporaries.
  auto hog =
      functions({"local keep = {} return function() "
                 "keep[#keep + 1] = string.rep('h', 32 * 1024 - 32) .. #keep "
                 "return 200, tostring(#keep) end"});
  Outcome out;
  int calls = 0;
  for (; calls < 400; ++calls) {
    out = run(*hog);
    if (out.failure != Failure::None) break;
    EXPECT_LE(Runtime::current().memory_of(*hog), size_t{4} << 20);
  }
  ASSERT_EQ(out.failure, Failure::Memory) << out.message;
  EXPECT_NE(out.message.find("more than half of the worker's edge_functions.memory_limit"),
            std::string::npos)
      << out.message;
  EXPECT_GE(calls, 100);  // it had its half: 3 MiB and more were fine
  // The hog's compiled functions were dropped; the keeper's upvalue was not.
  EXPECT_EQ(Runtime::current().memory_of(*hog), 0u);
  EXPECT_EQ(count(*keeper), "2");
  ASSERT_EQ(run(*hog).failure, Failure::None);
  EXPECT_EQ(ctx.reply.body, "1");  // compiled again: its table starts over
}

TEST_F(SmallStateTest, GarbageDoesNotCountAgainstASetsShare) {
  // 3 MiB kept, then 40 MiB of strings made and dropped per call: only what is live counts.
  auto set =
      functions({"local keep = {} for i = 1, 6 do "
                 "keep[i] = string.rep('g', 512 * 1024 - 32) .. i end "
                 "return function() local n = 0 for i = 1, 80 do "
                 "n = n + #(string.rep('t', 512 * 1024 - 32) .. i) end "
                 "return 200, tostring(n) end"});
  for (int i = 0; i < 3; ++i) {
    Outcome out = Runtime::current().run(*set, Phase::Access, ctx, nullptr, 1.0);
    ASSERT_EQ(out.failure, Failure::None) << out.message;
  }
  // Not dropped: it still holds its strings (most of them: one the config check made first may
  // stay charged to the check).
  EXPECT_GT(Runtime::current().memory_of(*set), size_t{2} << 20);
}

TEST_F(SmallStateTest, ASetThatCatchesItsShareErrorFailsAllTheSame) {
  // The error is caught and the data let go before returning: the call still fails, as a
  // caught time-out does, and the set starts over.
  auto set =
      functions({"local keep = {} return function() "
                 "local ok = pcall(function() for i = 1, 200 do "
                 "keep[#keep + 1] = string.rep('c', 64 * 1024) .. i end end) "
                 "keep = {} return 200, tostring(ok) end"});
  Outcome out = run(*set);
  ASSERT_EQ(out.failure, Failure::Memory) << out.message;
  EXPECT_NE(out.message.find("more than half"), std::string::npos) << out.message;
  EXPECT_EQ(Runtime::current().memory_of(*set), 0u);
}

TEST_F(SmallStateTest, WhenTheStateIsFullTheSetsHoldingTheMostAreDroppedFirst) {
  // Two sets keep 3 MiB and 1.5 MiB (each under its half); a third then needs 3.5 MiB: the state
  // (8 MiB) runs out. Dropping the largest (3 MiB) brings live data under half the limit; the
  // 1.5 MiB set and a small counter keep their upvalues.
  const char* holder =
      "local keep = {} local calls = 0 return function() calls = calls + 1 "
      "if calls == 1 then for i = 1, %d do "
      "keep[i] = string.rep('%c', 512 * 1024 - 32) .. i end end "
      "return 200, tostring(calls) end";
  char text[512];
  // Distinct text per set: equal strings are one string, charged to whoever made it first.
  std::snprintf(text, sizeof(text), holder, 6, 'l');
  auto large = functions({text});
  std::snprintf(text, sizeof(text), holder, 3, 'm');
  auto medium = functions({text});
  auto keeper = counter();
  EXPECT_EQ(count(*large), "1");
  EXPECT_EQ(count(*medium), "1");
  EXPECT_EQ(count(*keeper), "1");
  auto late =
      functions({"return function() local t = {} for i = 1, 7 do "
                 "t[i] = string.rep('y', 512 * 1024 - 32) .. i end "
                 "return 200, tostring(#t) end"});
  Outcome out = run(*late);
  ASSERT_EQ(out.failure, Failure::Memory) << out.message;
  EXPECT_EQ(Runtime::current().memory_of(*large), 0u);
  EXPECT_GT(Runtime::current().memory_of(*medium), size_t{3} << 19);
  EXPECT_EQ(count(*medium), "2");
  EXPECT_EQ(count(*keeper), "2");
  EXPECT_EQ(count(*large), "1");  // compiled again
}

}  // namespace
}  // namespace portico::plugins::edge
