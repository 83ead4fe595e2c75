#include "plugins/edge/lua_patterns.hpp"

#include <string.h>
#include <lua.hpp>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace portico::plugins::edge {
namespace {

constexpr int kMaxCaptures = 32;       // LUA_MAXCAPTURES
constexpr int kMaxDepth = 200;         // nested matcher calls: the C stack a pattern may use
constexpr ptrdiff_t kUnfinished = -1;  // a capture whose ')' has not been met yet
constexpr ptrdiff_t kPosition = -2;    // a position capture: "()"
constexpr char kEscape = '%';
constexpr size_t kCompareStep = 64;  // bytes of a back-reference compared per step

// Everything is plain data: a timeout raised by `step` unwinds through these frames.
struct Matcher {
  Matcher(lua_State* state, PatternStep each_step, const char* s, size_t len, const char* p_end)
      : L(state), step(each_step), src_begin(s), src_end(s + len), pat_end(p_end) {}

  lua_State* L;
  PatternStep step;
  const char* src_begin;
  const char* src_end;
  const char* pat_end;
  int level = 0;  // captures opened so far
  int depth = 0;
  struct Capture {
    const char* begin = nullptr;
    ptrdiff_t len = 0;
  } capture[kMaxCaptures];

  [[noreturn]] void fail(const char* message) const {
    luaL_error(L, "%s", message);
    __builtin_unreachable();
  }

  // One past the single-character class at `p` (a char, '.', %x or a [set]).
  const char* class_end(const char* p) const {
    char c = *p++;
    if (c == kEscape) {
      if (p >= pat_end) fail("malformed pattern (ends with '%')");
      return p + 1;
    }
    if (c == '[') {
      if (p < pat_end && *p == '^') ++p;
      do {        // the first character of a set is itself, even ']'
        step(L);  // a set may be megabytes long: each character is a step
        if (p >= pat_end) fail("malformed pattern (missing ']')");
        if (*p++ == kEscape && p < pat_end) ++p;
      } while (p >= pat_end || *p != ']');
      return p + 1;
    }
    return p;
  }

  static bool in_class(int c, int cl) {
    bool yes;
    switch (std::tolower(cl)) {
      case 'a':
        yes = std::isalpha(c);
        break;
      case 'c':
        yes = std::iscntrl(c);
        break;
      case 'd':
        yes = std::isdigit(c);
        break;
      case 'l':
        yes = std::islower(c);
        break;
      case 'p':
        yes = std::ispunct(c);
        break;
      case 's':
        yes = std::isspace(c);
        break;
      case 'u':
        yes = std::isupper(c);
        break;
      case 'w':
        yes = std::isalnum(c);
        break;
      case 'x':
        yes = std::isxdigit(c);
        break;
      case 'z':
        yes = c == 0;
        break;
      default:
        return cl == c;  // %. %% %[ ...: the character itself
    }
    return std::isupper(cl) ? !yes : yes;
  }

  // `p` at '[', `last` at its ']'.
  bool in_set(int c, const char* p, const char* last) const {
    bool match = true;
    if (p[1] == '^') {
      match = false;
      ++p;
    }
    while (++p < last) {
      step(L);
      if (*p == kEscape) {
        ++p;
        if (in_class(c, static_cast<unsigned char>(*p))) return match;
      } else if (p[1] == '-' && p + 2 < last) {
        p += 2;
        if (static_cast<unsigned char>(p[-2]) <= c && c <= static_cast<unsigned char>(*p))
          return match;
      } else if (static_cast<unsigned char>(*p) == c) {
        return match;
      }
    }
    return !match;
  }

  bool single(const char* s, const char* p, const char* ep) const {
    if (s >= src_end) return false;
    int c = static_cast<unsigned char>(*s);
    switch (*p) {
      case '.':
        return true;
      case kEscape:
        return in_class(c, static_cast<unsigned char>(p[1]));
      case '[':
        return in_set(c, p, ep - 1);
      default:
        return static_cast<unsigned char>(*p) == c;
    }
  }

  const char* balance(const char* s, const char* p) const {
    if (p + 1 >= pat_end) fail("missing arguments to '%b'");
    if (s >= src_end || *s != *p) return nullptr;
    char open = p[0], close = p[1];
    int count = 1;
    while (++s < src_end) {
      step(L);
      if (*s == close) {
        if (--count == 0) return s + 1;
      } else if (*s == open) {
        ++count;
      }
    }
    return nullptr;
  }

  const char* back_reference(const char* s, char digit) const {
    int l = digit - '1';
    if (l < 0 || l >= level || capture[l].len == kUnfinished) fail("invalid capture index");
    size_t len = static_cast<size_t>(capture[l].len);
    if (static_cast<size_t>(src_end - s) < len) return nullptr;
    for (size_t at = 0; at < len; at += kCompareStep) {  // a step per so many bytes compared
      step(L);
      if (memcmp(capture[l].begin + at, s + at, std::min(kCompareStep, len - at)) != 0)
        return nullptr;
    }
    return s + len;
  }

  const char* max_expand(const char* s, const char* p, const char* ep) {
    ptrdiff_t i = 0;
    while (single(s + i, p, ep)) {
      step(L);
      ++i;
    }
    for (; i >= 0; --i)  // as many as possible, then one fewer each time the rest fails
      if (const char* res = match(s + i, ep + 1)) return res;
    return nullptr;
  }

  const char* min_expand(const char* s, const char* p, const char* ep) {
    for (;;) {
      if (const char* res = match(s, ep + 1)) return res;
      if (!single(s, p, ep)) return nullptr;
      ++s;
    }
  }

  const char* open_capture(const char* s, const char* p, ptrdiff_t what) {
    if (level >= kMaxCaptures) fail("too many captures");
    capture[level].begin = s;
    capture[level].len = what;
    ++level;
    const char* res = match(s, p);
    if (!res) --level;
    return res;
  }

  const char* close_capture(const char* s, const char* p) {
    int l = level - 1;
    while (l >= 0 && capture[l].len != kUnfinished) --l;
    if (l < 0) fail("invalid pattern capture");
    capture[l].len = s - capture[l].begin;
    const char* res = match(s, p);
    if (!res) capture[l].len = kUnfinished;
    return res;
  }

  // Where a match of pattern [p, pat_end) starting at `s` ends, or null.
  const char* match(const char* s, const char* p) {
    if (++depth > kMaxDepth) fail("pattern too complex");
    const char* res = match_here(s, p);
    --depth;
    return res;
  }

  const char* match_here(const char* s, const char* p) {
    for (;;) {
      step(L);
      if (p >= pat_end) return s;
      switch (*p) {
        case '(':
          if (p + 1 < pat_end && p[1] == ')') return open_capture(s, p + 2, kPosition);
          return open_capture(s, p + 1, kUnfinished);
        case ')':
          return close_capture(s, p + 1);
        case '$':
          if (p + 1 == pat_end) return s == src_end ? s : nullptr;
          break;  // a '$' elsewhere is itself
        case kEscape:
          if (p + 1 < pat_end && p[1] == 'b') {
            s = balance(s, p + 2);
            if (!s) return nullptr;
            p += 4;
            continue;
          }
          if (p + 1 < pat_end && p[1] == 'f') {
            p += 2;
            if (p >= pat_end || *p != '[') fail("missing '[' after '%f' in pattern");
            const char* ep = class_end(p);
            int before = s == src_begin ? 0 : static_cast<unsigned char>(s[-1]);
            int here = s < src_end ? static_cast<unsigned char>(*s) : 0;
            if (in_set(before, p, ep - 1) || !in_set(here, p, ep - 1)) return nullptr;
            p = ep;
            continue;
          }
          if (p + 1 < pat_end && std::isdigit(static_cast<unsigned char>(p[1]))) {
            s = back_reference(s, p[1]);
            if (!s) return nullptr;
            p += 2;
            continue;
          }
          break;
        default:
          break;
      }
      const char* ep = class_end(p);
      bool m = single(s, p, ep);
      char suffix = ep < pat_end ? *ep : '\0';
      switch (suffix) {
        case '?':
          if (m)
            if (const char* res = match(s + 1, ep + 1)) return res;
          p = ep + 1;
          continue;
        case '*':
          return max_expand(s, p, ep);
        case '+':
          return m ? max_expand(s + 1, p, ep) : nullptr;
        case '-':
          return min_expand(s, p, ep);
        default:
          if (!m) return nullptr;
          ++s;
          p = ep;
          continue;
      }
    }
  }

  // Capture i of the match [s, e) (the whole match when there are none and i is 0).
  void push_capture(int i, const char* s, const char* e) const {
    if (i >= level) {
      if (i != 0) fail("invalid capture index");
      lua_pushlstring(L, s, static_cast<size_t>(e - s));
      return;
    }
    ptrdiff_t len = capture[i].len;
    if (len == kUnfinished) fail("unfinished capture");
    if (len == kPosition)
      lua_pushinteger(L, capture[i].begin - src_begin + 1);
    else
      lua_pushlstring(L, capture[i].begin, static_cast<size_t>(len));
  }

  // Every capture, or the whole match when the pattern has none (`s` null: nothing then).
  int push_captures(const char* s, const char* e) const {
    int n = (level == 0 && s) ? 1 : level;
    luaL_checkstack(L, n, "too many captures");
    for (int i = 0; i < n; ++i) push_capture(i, s, e);
    return n;
  }
};

PatternStep step_of(lua_State* L) {
  return reinterpret_cast<PatternStep>(lua_touserdata(L, lua_upvalueindex(1)));
}

Matcher matcher(lua_State* L, const char* s, size_t len, const char* p, size_t plen) {
  return Matcher(L, step_of(L), s, len, p + plen);
}

// A string position as Lua gives it (negative: from the end) -> offset from 0, clamped.
// A number argument as LuaJIT reads one (a 32-bit int; out of range: INT_MIN).
int32_t int_arg(lua_State* L, int arg, lua_Number fallback) {
  lua_Number n = luaL_optnumber(L, arg, fallback);
  return n >= INT32_MIN && n <= INT32_MAX ? static_cast<int32_t>(n) : INT32_MIN;
}

ptrdiff_t start_offset(lua_State* L, int arg, size_t len) {
  int64_t pos = int_arg(L, arg, 1);
  if (pos < 0) pos += static_cast<int64_t>(len) + 1;
  if (pos < 1) pos = 1;
  return static_cast<ptrdiff_t>(pos - 1);
}

// A pattern ends at its first zero byte, as in Lua 5.1 and LuaJIT (%z matches one).
size_t pattern_length(const char* p, size_t len) { return strnlen(p, len); }

bool has_specials(const char* p, size_t len) {
  for (size_t i = 0; i < len; ++i)
    if (p[i] != '\0' && strchr("^$*+?.([%-", p[i])) return true;
  return false;
}

int find_or_match(lua_State* L, bool find) {
  size_t len = 0, plen = 0;
  const char* s = luaL_checklstring(L, 1, &len);
  const char* p = luaL_checklstring(L, 2, &plen);
  ptrdiff_t init = start_offset(L, 3, len);
  if (static_cast<size_t>(init) > len) init = static_cast<ptrdiff_t>(len);  // as Lua 5.1
  if (find && (lua_toboolean(L, 4) || !has_specials(p, plen))) {
    // memmem is linear (two-way): a long needle costs no more than the text.
    const void* at = memmem(s + init, len - static_cast<size_t>(init), p, plen);
    if (!at) {
      lua_pushnil(L);
      return 1;
    }
    ptrdiff_t offset = static_cast<const char*>(at) - s;
    lua_pushinteger(L, offset + 1);
    lua_pushinteger(L, offset + static_cast<ptrdiff_t>(plen));
    return 2;
  }
  plen = pattern_length(p, plen);
  Matcher m = matcher(L, s, len, p, plen);
  bool anchored = plen > 0 && *p == '^';
  if (anchored) ++p;
  const char* from = s + init;
  do {
    m.level = 0;
    m.depth = 0;
    if (const char* end = m.match(from, p)) {
      if (!find) return m.push_captures(from, end);
      lua_pushinteger(L, from - s + 1);
      lua_pushinteger(L, end - s);
      return m.push_captures(nullptr, nullptr) + 2;
    }
  } while (from++ < m.src_end && !anchored);
  lua_pushnil(L);
  return 1;
}

int find(lua_State* L) { return find_or_match(L, true); }
int match(lua_State* L) { return find_or_match(L, false); }

// gmatch's iterator: upvalues step, subject, pattern, next offset.
int gmatch_next(lua_State* L) {
  size_t len = 0, plen = 0;
  const char* s = lua_tolstring(L, lua_upvalueindex(2), &len);
  const char* p = lua_tolstring(L, lua_upvalueindex(3), &plen);
  Matcher m = matcher(L, s, len, p, pattern_length(p, plen));
  for (const char* from = s + lua_tointeger(L, lua_upvalueindex(4)); from <= m.src_end; ++from) {
    m.level = 0;
    m.depth = 0;
    if (const char* end = m.match(from, p)) {
      ptrdiff_t next = end - s;
      if (end == from) ++next;  // an empty match: move on, or it would be found again
      lua_pushinteger(L, next);
      lua_replace(L, lua_upvalueindex(4));
      return m.push_captures(from, end);
    }
  }
  return 0;
}

int gmatch(lua_State* L) {
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, gmatch_next, 4);
  return 1;
}

// Appends gsub's replacement for the match [s, e) to `b`.
void add_replacement(Matcher& m, luaL_Buffer* b, const char* s, const char* e, int repl_type) {
  lua_State* L = m.L;
  if (repl_type == LUA_TSTRING || repl_type == LUA_TNUMBER) {
    size_t n = 0;
    const char* r = lua_tolstring(L, 3, &n);
    for (size_t i = 0; i < n; ++i) {
      m.step(L);
      if (r[i] != kEscape) {
        luaL_addchar(b, r[i]);
        continue;
      }
      if (i + 1 >= n) {  // a '%' at the end escapes the terminating zero (Lua 5.1, LuaJIT)
        luaL_addchar(b, '\0');
        continue;
      }
      char c = r[++i];
      if (!std::isdigit(static_cast<unsigned char>(c))) {
        luaL_addchar(b, c);  // "%%" is '%'
      } else if (c == '0') {
        luaL_addlstring(b, s, static_cast<size_t>(e - s));
      } else {
        m.push_capture(c - '1', s, e);
        luaL_addvalue(b);
      }
    }
    return;
  }
  if (repl_type == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    int n = m.push_captures(s, e);
    lua_call(L, n, 1);
  } else {  // a table: indexed by the first capture
    m.push_capture(0, s, e);
    lua_gettable(L, 3);
  }
  if (!lua_toboolean(L, -1)) {  // nil or false: the match stays as it was
    lua_pop(L, 1);
    lua_pushlstring(L, s, static_cast<size_t>(e - s));
  } else if (!lua_isstring(L, -1)) {
    luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  }
  luaL_addvalue(b);
}

int gsub(lua_State* L) {
  size_t len = 0, plen = 0;
  const char* s = luaL_checklstring(L, 1, &len);
  const char* p = luaL_checklstring(L, 2, &plen);
  int repl_type = lua_type(L, 3);
  luaL_argcheck(L,
                repl_type == LUA_TNUMBER || repl_type == LUA_TSTRING ||
                    repl_type == LUA_TFUNCTION || repl_type == LUA_TTABLE,
                3, "string/function/table expected");
  int64_t max = int_arg(L, 4, static_cast<lua_Number>(len) + 1);
  plen = pattern_length(p, plen);
  Matcher m = matcher(L, s, len, p, plen);
  bool anchored = plen > 0 && *p == '^';
  if (anchored) ++p;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char* from = s;
  int64_t count = 0;
  while (count < max) {
    m.level = 0;
    m.depth = 0;
    const char* end = m.match(from, p);
    if (end) {
      ++count;
      add_replacement(m, &b, from, end, repl_type);
    }
    if (end && end > from)
      from = end;
    else if (from < m.src_end)
      luaL_addchar(&b, *from++);
    else
      break;
    if (anchored) break;
  }
  luaL_addlstring(&b, from, static_cast<size_t>(m.src_end - from));
  luaL_pushresult(&b);
  lua_pushinteger(L, count);
  return 2;
}

}  // namespace

void install_pattern_functions(lua_State* L, PatternStep step) {
  const std::pair<const char*, lua_CFunction> functions[] = {
      {"find", find}, {"match", match}, {"gmatch", gmatch}, {"gsub", gsub}};
  for (const auto& [name, f] : functions) {
    lua_pushlightuserdata(L, reinterpret_cast<void*>(step));
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
  }
}

}  // namespace portico::plugins::edge
