// string.find, string.match, string.gmatch and string.gsub for edge functions: Lua 5.1 patterns,
// as LuaJIT's, with one difference that matters here. LuaJIT's run to their end inside C, where
// the time limit's hook cannot reach: `s:find(".-.-.-x")` over 100 KB backtracks ~10^15 times,
// and a worker would never come back. These count their steps and look at the clock every
// thousand (`step`: LuaSandbox::count_step), so the time limit holds inside a match too. Plain
// finds use a linear search (memmem), and results are built in Lua's memory, which the memory limit
// counts.
#pragma once

struct lua_State;

namespace portico::plugins::edge {

// Called once per matching step; raises a Lua error to stop the match (the time limit).
using PatternStep = void (*)(lua_State*);

// Replaces find, match, gmatch and gsub in the table on top of the stack (the string library).
void install_pattern_functions(lua_State* L, PatternStep step);

}  // namespace portico::plugins::edge
