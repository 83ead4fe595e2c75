#include "router/vars_expr.hpp"

#include <gtest/gtest.h>

#include <map>

using namespace portico::router;
using portico::config::Errors;
using portico::config::json;

namespace {

// A request as a multimap of variables: repeated keys are repeated query args or headers.
class MapSource : public VarSource {
 public:
  MapSource(std::initializer_list<std::pair<std::string, std::string>> vars) {
    for (const auto& [name, value] : vars) {
      std::string error;
      auto ref = parse_var_name(name, error);
      EXPECT_TRUE(ref) << error;
      values_.emplace(key(*ref), value);
    }
  }
  std::optional<std::string_view> get(const VarRef& var) const override {
    ++gets;
    auto it = values_.find(key(var));
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  bool has_value(const VarRef& var, std::string_view value) const override {
    auto [b, e] = values_.equal_range(key(var));
    for (auto it = b; it != e; ++it)
      if (it->second == value) return true;
    return false;
  }
  mutable int gets = 0;

 private:
  static std::string key(const VarRef& v) {
    return std::to_string(static_cast<int>(v.kind)) + ":" + v.name;
  }
  std::multimap<std::string, std::string> values_;
};

const MapSource& request() {
  static const MapSource source{
      {"arg_name", "json"},     {"arg_weight", "12"},         {"arg_hex", "0x10"},
      {"arg_blank", " 7 "},     {"arg_word", "abc"},          {"arg_tag", "red"},
      {"arg_tag", "blue"},      {"http_x_api_key", "K-1"},    {"cookie_session", "s1"},
      {"uri", "/api/v1/users"}, {"host", "api.example.com"},  {"remote_addr", "10.1.2.3"},
      {"server_port", "9080"},  {"request_method", "POST"},   {"http_x_real_ip", "2001:db8::5"},
      {"arg_empty", ""},        {"arg_bad_ip", "10.0.0.0/8"},
  };
  return source;
}

bool eval(const std::string& vars, const VarSource& source = request()) {
  Errors errors;
  auto expr = VarsExpr::compile(json::parse(vars), "vars", errors);
  EXPECT_TRUE(expr) << vars << "\n" << errors.to_string();
  return expr && expr->eval(source);
}

std::string compile_error(const std::string& vars, const std::string& path = "routes[3].vars") {
  Errors errors;
  auto expr = VarsExpr::compile(json::parse(vars), path, errors);
  EXPECT_FALSE(expr) << vars;
  EXPECT_FALSE(errors.empty()) << vars;
  return errors.to_string();
}

struct Case {
  const char* vars;
  bool expected;
};

void run(const std::vector<Case>& cases) {
  for (const auto& c : cases) EXPECT_EQ(eval(c.vars), c.expected) << c.vars;
}

}  // namespace

TEST(VarsExpr, EqualityComparesStringsExactly) {
  run({
      {R"([["arg_name", "==", "json"]])", true},
      {R"([["arg_name", "==", "JSON"]])", false},
      {R"([["arg_name", "~=", "json"]])", false},
      {R"([["arg_name", "~=", "xml"]])", true},
      {R"([["arg_name", "json"]])", true},  // the short form means ==
      {R"([["arg_name", "xml"]])", false},
      {R"([["arg_empty", "==", ""]])", true},
      {R"([["http_x_api_key", "==", "K-1"]])", true},
      {R"([["cookie_session", "==", "s1"]])", true},
      {R"([["uri", "==", "/api/v1/users"]])", true},
      {R"([["host", "==", "api.example.com"]])", true},
      {R"([["request_method", "==", "POST"]])", true},
  });
}

TEST(VarsExpr, EqualityWithANumberComparesNumerically) {
  run({
      {R"([["arg_weight", "==", 12]])", true},
      {R"([["arg_weight", "==", 12.0]])", true},
      {R"([["arg_hex", "==", 16]])", true},
      {R"([["arg_blank", "==", 7]])", true},
      {R"([["arg_weight", "==", "12.0"]])", false},  // a string value compares as a string
      {R"([["arg_word", "==", 0]])", false},         // not a number: never equal
      {R"([["arg_word", "~=", 0]])", true},
      {R"([["server_port", "==", 9080]])", true},
  });
}

TEST(VarsExpr, BooleansAndArraysNeverEqualAVariable) {
  run({
      {R"([["arg_name", "==", true]])", false},
      {R"([["arg_name", "~=", true]])", true},
      {R"([["arg_name", "==", ["json"]]])", false},
  });
}

TEST(VarsExpr, MissingVariableIsNil) {
  run({
      {R"([["arg_missing", "==", "x"]])", false},
      {R"([["arg_missing", "~=", "x"]])", true},
      {R"([["arg_missing", "==", null]])", true},  // "absent"
      {R"([["arg_name", "==", null]])", false},
      {R"([["arg_missing", "~=", null]])", false},  // "present"
      {R"([["arg_name", "~=", null]])", true},
      {R"([["arg_missing", "~="]])", false},  // [var, op] compares with nil
      {R"([["arg_missing", ">", 1]])", false},
      {R"([["arg_missing", "<", 1]])", false},
      {R"([["arg_missing", "~~", ".*"]])", false},
      {R"([["arg_missing", "in", ["a"]]])", false},
      {R"([["arg_missing", "has", "a"]])", false},
      {R"([["arg_missing", "ipmatch", "0.0.0.0/0"]])", false},
      {R"([["arg_missing", "!", "==", "x"]])", true},
  });
}

TEST(VarsExpr, OrderingConvertsBothSidesToNumbers) {
  run({
      {R"([["arg_weight", ">", 10]])", true},
      {R"([["arg_weight", ">", 12]])", false},
      {R"([["arg_weight", ">=", 12]])", true},
      {R"([["arg_weight", "<", 13]])", true},
      {R"([["arg_weight", "<=", 11]])", false},
      {R"([["arg_weight", ">", "9"]])", true},  // 12 > 9 numerically, not "12" > "9"
      {R"([["arg_hex", ">", 15]])", true},
      {R"([["arg_word", ">", 0]])", false},  // not a number: false either way
      {R"([["arg_word", "<", 0]])", false},
      {R"([["arg_empty", "<", 1]])", false},
  });
}

TEST(VarsExpr, RegexMatchesAnywhereAndTildeStarIgnoresCase) {
  run({
      {R"([["uri", "~~", "/v[0-9]+/"]])", true},
      {R"([["uri", "~~", "^/v1"]])", false},
      {R"([["uri", "~~", "^/api/v1/users$"]])", true},
      {R"([["uri", "~~", "USERS"]])", false},
      {R"([["uri", "~*", "USERS"]])", true},
      {R"([["http_x_api_key", "~*", "^k-\\d$"]])", true},
      {R"([["uri", "!", "~~", "admin"]])", true},
  });
}

TEST(VarsExpr, InLooksTheVariableUpInTheList) {
  run({
      {R"([["arg_name", "in", ["xml", "json"]]])", true},
      {R"([["arg_name", "in", ["xml"]]])", false},
      {R"([["arg_name", "in", []]])", false},
      {R"([["arg_weight", "in", [11, 12]]])", true},  // numbers compare numerically
      {R"([["arg_hex", "in", ["16", 17]]])", false},
      {R"([["arg_hex", "in", [16]]])", true},
      {R"([["request_method", "IN", ["GET", "POST"]]])", true},  // operators ignore case
  });
}

TEST(VarsExpr, HasLooksForTheValueAmongRepeatedValues) {
  run({
      {R"([["arg_tag", "has", "red"]])", true},
      {R"([["arg_tag", "has", "blue"]])", true},
      {R"([["arg_tag", "has", "green"]])", false},
      {R"([["arg_tag", "==", "red"]])", true},  // other operators see the first value
  });
}

TEST(VarsExpr, IpMatchTakesAddressesAndCidrsForV4AndV6) {
  run({
      {R"([["remote_addr", "ipmatch", "10.1.2.3"]])", true},
      {R"([["remote_addr", "ipmatch", "10.0.0.0/8"]])", true},
      {R"([["remote_addr", "ipmatch", "10.1.2.4"]])", false},
      {R"([["remote_addr", "ipmatch", ["192.168.0.0/16", "10.1.0.0/16"]]])", true},
      {R"([["remote_addr", "ipmatch", ["192.168.0.0/16", "::1"]]])", false},
      {R"([["remote_addr", "ipmatch", "::ffff:10.1.2.3"]])", true},
      {R"([["http_x_real_ip", "ipmatch", "2001:db8::/32"]])", true},
      {R"([["http_x_real_ip", "ipmatch", "2001:db9::/32"]])", false},
      {R"([["http_x_real_ip", "ipmatch", "10.0.0.0/8"]])", false},
      {R"([["arg_word", "ipmatch", "0.0.0.0/0"]])", false},    // not an address
      {R"([["arg_bad_ip", "ipmatch", "0.0.0.0/0"]])", false},  // a CIDR is not an address
      {R"([["remote_addr", "!", "ipmatch", "127.0.0.0/8"]])", true},
  });
}

TEST(VarsExpr, NotReversesAComparison) {
  run({
      {R"([["arg_weight", "!", ">", 10]])", false},
      {R"([["arg_weight", "!", ">", 15]])", true},
      {R"([["arg_weight", ">", 10], ["arg_weight", "!", ">", 15]])", true},
  });
}

TEST(VarsExpr, ListsAreAndAndLogicOperatorsNest) {
  run({
      {R"([])", true},
      {R"([["arg_name", "==", "json"], ["arg_weight", ">", 10]])", true},
      {R"([["arg_name", "==", "json"], ["arg_weight", ">", 20]])", false},
      {R"(["AND", ["arg_name", "==", "json"], ["arg_weight", ">", 10]])", true},
      {R"(["OR", ["arg_name", "==", "xml"], ["arg_weight", ">", 10]])", true},
      {R"(["OR", ["arg_name", "==", "xml"], ["arg_weight", ">", 20]])", false},
      {R"(["!AND", ["arg_name", "==", "json"], ["arg_weight", ">", 10]])", false},
      {R"(["!AND", ["arg_name", "==", "json"], ["arg_weight", ">", 20]])", true},
      {R"(["!OR", ["arg_name", "==", "xml"], ["arg_weight", ">", 20]])", true},
      {R"(["!OR", ["arg_name", "==", "json"], ["arg_weight", ">", 20]])", false},
      {R"(["or", ["arg_name", "==", "xml"], ["arg_name", "==", "json"]])", true},
      // not (name == json and (weight > 10 or not height > 15))
      {R"(["!AND", ["arg_name", "==", "json"],
                   ["OR", ["arg_weight", ">", 10], ["arg_height", "!", ">", 15]]])",
       false},
      {R"([["arg_name", "==", "json"],
           ["OR", ["arg_weight", ">", 100], [["host", "==", "api.example.com"],
                                             ["uri", "~~", "users"]]]])",
       true},
      {R"([["OR", ["arg_a", "==", "1"], ["arg_b", "==", "2"]], ["arg_name", "==", "json"]])",
       false},
  });
}

TEST(VarsExpr, StopsReadingVariablesOnceTheResultIsKnown) {
  MapSource source{{"arg_a", "1"}};
  EXPECT_TRUE(
      eval(R"(["OR", ["arg_a", "==", "1"], ["arg_b", "==", "2"], ["arg_c", "==", "3"]])", source));
  EXPECT_EQ(source.gets, 1);
}

TEST(VarsExpr, ParsesVariableNamesOnce) {
  std::string error;
  auto h = parse_var_name("http_X_Api_Key", error);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->kind, VarKind::Http);
  EXPECT_EQ(h->name, "x-api-key");
  auto a = parse_var_name("arg_Page_Size", error);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->kind, VarKind::Arg);
  EXPECT_EQ(a->name, "Page_Size");
  auto q = parse_var_name("query_string", error);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->kind, VarKind::Args);
  auto ct = parse_var_name("content_type", error);
  ASSERT_TRUE(ct);
  EXPECT_EQ(ct->kind, VarKind::Http);
  EXPECT_EQ(ct->name, "content-type");

  Errors errors;
  auto expr = VarsExpr::compile(
      json::parse(R"([["arg_a", "==", "1"], ["OR", ["arg_a", ">", 0], ["http_x", "==", "y"]]])"),
      "vars", errors);
  ASSERT_TRUE(expr);
  ASSERT_EQ(expr->variables().size(), 2u);  // arg_a once
  EXPECT_EQ(expr->variables()[1].name, "x");
}

TEST(VarsExpr, LuaToNumberAcceptsWhatLuaDoes) {
  EXPECT_EQ(lua_tonumber("12"), 12);
  EXPECT_EQ(lua_tonumber("-1.5e2"), -150);
  EXPECT_EQ(lua_tonumber("+3"), 3);
  EXPECT_EQ(lua_tonumber(".5"), 0.5);
  EXPECT_EQ(lua_tonumber("0xff"), 255);
  EXPECT_EQ(lua_tonumber("\t42 \n"), 42);
  EXPECT_FALSE(lua_tonumber(""));
  EXPECT_FALSE(lua_tonumber("  "));
  EXPECT_FALSE(lua_tonumber("12abc"));
  EXPECT_FALSE(lua_tonumber("1e"));
  EXPECT_FALSE(lua_tonumber("inf"));
  EXPECT_FALSE(lua_tonumber("nan"));
  EXPECT_FALSE(lua_tonumber("--1"));
  EXPECT_FALSE(lua_tonumber("0x"));
  EXPECT_FALSE(lua_tonumber("1 2"));
}

TEST(VarsExprCompile, NamesTheFaultyElement) {
  EXPECT_EQ(compile_error(R"([["arg_a", "==", "1"], ["arg_b", "=~", "x"]])"),
            "routes[3].vars[1][1]: unknown operator \"=~\" (==, ~=, >, >=, <, <=, ~~, ~*, in, "
            "has, ipmatch, or \"!\" before one)\n");
}

TEST(VarsExprCompile, RejectsMalformedExpressions) {
  struct ErrorCase {
    const char* vars;
    const char* expected;  // a substring of the error text
  };
  std::vector<ErrorCase> cases = {
      {R"({"arg_a": "1"})", "routes[3].vars: must be an array of expressions"},
      {R"(["arg_a", "==", "1"])", "routes[3].vars: must be a list of expressions: wrap"},
      {R"([["arg_a"]])", "routes[3].vars[0]: must be [var, op, value]"},
      {R"([["arg_a", "==", "1", "2", "3"]])", "routes[3].vars[0]: must be [var, op, value]"},
      {R"([[]])", "routes[3].vars[0]: must not be empty"},
      {R"([["arg_a", "==", "1"], "x"])", "routes[3].vars[1]: must be an expression array"},
      {R"([["arg_a", "not", "==", "1"]])", "routes[3].vars[0][1]: must be \"!\""},
      {R"([[1, "==", "1"]])", "routes[3].vars[0][0]: must be a variable name"},
      {R"([["arg_a", 5, "1"]])", "routes[3].vars[0][1]: must be an operator string"},
      {R"([["nginx_version", "==", "1"]])", "routes[3].vars[0][0]: unknown variable"},
      {R"([["arg_", "==", "1"]])", "routes[3].vars[0][0]: variable \"arg_\" needs a name"},
      {R"([["post_arg_a", "==", "1"]])", "routes[3].vars[0][0]: post_arg_* is not supported"},
      {R"(["OR", ["arg_a", "==", "1"]])", "routes[3].vars: \"OR\" needs at least two"},
      {R"(["AND", ["arg_a", "==", "1"], ["OR", ["arg_b", "==", "1"]]])",
       "routes[3].vars[2]: \"OR\" needs at least two"},
      {R"(["AND", ["arg_a", "==", "1"], ["arg_b", "=", "1"]])",
       "routes[3].vars[2][1]: unknown operator \"=\""},
      {R"([["arg_a", ">", "ten"]])", "routes[3].vars[0][2]: must be a number"},
      {R"([["arg_a", ">", null]])", "routes[3].vars[0][2]: must be a number"},
      {R"([["arg_a", "~~", 5]])", "routes[3].vars[0][2]: must be a regular expression string"},
      {R"([["arg_a", "~~", "(unclosed"]])", "routes[3].vars[0][2]: invalid regex: missing )"},
      {R"x([["arg_a", "~~", "(?=lookahead)"]])x", "routes[3].vars[0][2]: invalid regex"},
      {R"([["arg_a", "in", "x"]])", "routes[3].vars[0][2]: must be an array"},
      {R"([["arg_a", "in", ["x", true]]])",
       "routes[3].vars[0][2][1]: must be a string or a number"},
      {R"([["arg_a", "has", 1]])", "routes[3].vars[0][2]: must be a string"},
      {R"([["remote_addr", "ipmatch", ""]])", "routes[3].vars[0][2]: invalid ip address: "},
      {R"([["remote_addr", "ipmatch", []]])", "routes[3].vars[0][2]: must be an IP address"},
      {R"([["remote_addr", "ipmatch", null]])", "routes[3].vars[0][2]: must be an IP address"},
      {R"([["remote_addr", "ipmatch", ["10.0.0.0/8", "10.0.0.0/33"]]])",
       "routes[3].vars[0][2][1]: invalid ip address: 10.0.0.0/33"},
      {R"([["remote_addr", "ipmatch", ["1.2.3.4", 5]]])",
       "routes[3].vars[0][2][1]: must be an IP address or CIDR string"},
  };
  for (const auto& c : cases) {
    std::string error = compile_error(c.vars);
    EXPECT_NE(error.find(c.expected), std::string::npos) << c.vars << "\ngot: " << error;
  }
}

TEST(VarsExprCompile, ReportsEveryErrorNotJustTheFirst) {
  Errors errors;
  auto expr = VarsExpr::compile(
      json::parse(R"([["arg_a", "=", "1"], ["nope", "==", "1"], ["arg_b", "~~", "("]])"), "vars",
      errors);
  EXPECT_FALSE(expr);
  EXPECT_EQ(errors.size(), 3u) << errors.to_string();
}
