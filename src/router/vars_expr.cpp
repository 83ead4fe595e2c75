#include "router/vars_expr.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

#include "router/route_rule.hpp"

namespace portico::router {

using config::Errors;
using config::json;

// The right-hand side, pre-converted for its operator so evaluation only compares.
struct VarsExpr::Value {
  enum class Type : uint8_t { Null, String, Number, Never };
  Type type = Type::Never;  // for ==/~=; Never: booleans, arrays, objects (Lua never equals)
  std::string text;
  double number = 0;
  std::vector<std::string> strings;  // `in`
  std::vector<double> numbers;       // `in`
  std::unique_ptr<re2::RE2> regex;
  std::vector<Cidr> cidrs;
};

namespace {

constexpr std::string_view kBlanks = " \t\n\v\f\r";

struct OpName {
  std::string_view name;
  VarsExpr::Op op;
};
constexpr std::array<OpName, 11> kOps{{{"==", VarsExpr::Op::Eq},
                                       {"~=", VarsExpr::Op::Ne},
                                       {">", VarsExpr::Op::Gt},
                                       {">=", VarsExpr::Op::Ge},
                                       {"<", VarsExpr::Op::Lt},
                                       {"<=", VarsExpr::Op::Le},
                                       {"~~", VarsExpr::Op::Regex},
                                       {"~*", VarsExpr::Op::RegexI},
                                       {"in", VarsExpr::Op::In},
                                       {"has", VarsExpr::Op::Has},
                                       {"ipmatch", VarsExpr::Op::IpMatch}}};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<VarsExpr::Op> find_op(std::string_view name) {
  std::string l = lower(name);  // lua-resty-expr lower-cases operators ("IN", "IPMATCH")
  for (const auto& o : kOps)
    if (o.name == l) return o.op;
  return std::nullopt;
}

std::optional<VarsExpr::Logic> find_logic(const json& j) {
  if (!j.is_string()) return std::nullopt;
  std::string u = j.get<std::string>();
  for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (u == "AND") return VarsExpr::Logic::And;
  if (u == "OR") return VarsExpr::Logic::Or;
  if (u == "!AND") return VarsExpr::Logic::NotAnd;
  if (u == "!OR") return VarsExpr::Logic::NotOr;
  return std::nullopt;
}

std::string at(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

// An address as Cidr bytes; false when `text` is not a plain IPv4 or IPv6 address.
bool parse_address(std::string_view text, std::array<uint8_t, 16>& out) {
  if (text.find('/') != std::string_view::npos) return false;
  Cidr c;
  if (!Cidr::parse(text, c)) return false;
  out = c.bytes;
  return true;
}

struct FixedVar {
  std::string_view name;
  VarKind kind;
  std::string_view header;  // for nginx variables that are a header in disguise
};
constexpr std::array<FixedVar, 20> kFixedVars{{
    {"uri", VarKind::Uri, ""},
    {"request_uri", VarKind::RequestUri, ""},
    {"args", VarKind::Args, ""},
    {"query_string", VarKind::Args, ""},
    {"host", VarKind::Host, ""},
    {"remote_addr", VarKind::RemoteAddr, ""},
    {"remote_port", VarKind::RemotePort, ""},
    {"server_addr", VarKind::ServerAddr, ""},
    {"server_port", VarKind::ServerPort, ""},
    {"request_method", VarKind::RequestMethod, ""},
    {"scheme", VarKind::Scheme, ""},
    {"server_protocol", VarKind::ServerProtocol, ""},
    {"route_id", VarKind::RouteId, ""},
    {"service_id", VarKind::ServiceId, ""},
    {"consumer_name", VarKind::ConsumerName, ""},
    {"status", VarKind::Status, ""},
    {"upstream_status", VarKind::UpstreamStatus, ""},
    {"content_type", VarKind::Http, "content-type"},
    {"content_length", VarKind::Http, "content-length"},
    {"http_host", VarKind::Http, "host"},
}};

}  // namespace

std::optional<double> lua_tonumber(std::string_view s) {
  size_t b = s.find_first_not_of(kBlanks);
  if (b == std::string_view::npos) return std::nullopt;
  s = s.substr(b, s.find_last_not_of(kBlanks) - b + 1);
  bool negative = false;
  if (s.front() == '-' || s.front() == '+') {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    double v = 0;
    for (char c : s.substr(2)) {
      int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
              : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
              : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                          : -1;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    return negative ? -v : v;
  }
  // from_chars also takes "inf" and "nan", which Lua's tonumber does not here.
  if (s.empty() || !(std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.'))
    return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return negative ? -v : v;
}

std::optional<VarRef> parse_var_name(std::string_view name, std::string& error) {
  auto prefixed = [&](std::string_view prefix, VarKind kind) -> std::optional<VarRef> {
    std::string_view rest = name.substr(prefix.size());
    if (rest.empty()) {
      error = "variable \"" + std::string(name) + "\" needs a name after \"" + std::string(prefix) +
              "\"";
      return std::nullopt;
    }
    if (kind != VarKind::Http) return VarRef{kind, std::string(rest)};
    std::string header = lower(rest);
    std::replace(header.begin(), header.end(), '_', '-');
    return VarRef{kind, std::move(header)};
  };
  for (const auto& f : kFixedVars)
    if (f.name == name) return VarRef{f.kind, std::string(f.header.empty() ? name : f.header)};
  if (name.starts_with("post_arg_")) {
    error = "post_arg_* is not supported: routes are matched before the request body is read";
    return std::nullopt;
  }
  if (name.starts_with("arg_")) return prefixed("arg_", VarKind::Arg);
  if (name.starts_with("http_")) return prefixed("http_", VarKind::Http);
  if (name.starts_with("cookie_")) return prefixed("cookie_", VarKind::Cookie);
  error = "unknown variable \"" + std::string(name) +
          "\" (arg_*, http_*, cookie_*, uri, request_uri, args, host, remote_addr, remote_port, "
          "server_addr, server_port, request_method, scheme, server_protocol, route_id, "
          "service_id, consumer_name, status, upstream_status)";
  return std::nullopt;
}

// Walks the JSON once, recording every error with its path.
class VarsCompiler {
 public:
  VarsCompiler(VarsExpr& out, Errors& errors) : out_(out), errors_(errors) {}

  bool top(const json& j, const std::string& path) {
    if (!j.is_array()) return fail(path, "must be an array of expressions");
    if (j.empty()) return true;  // matches everything, as in lua-resty-expr
    if (j[0].is_array()) {
      for (size_t i = 0; i < j.size(); ++i) {
        VarsExpr::Node n;
        if (node(j[i], at(path, i), n)) out_.nodes_.push_back(std::move(n));
      }
      return ok_;
    }
    if (find_logic(j[0])) {
      VarsExpr::Node n;
      if (group(j, path, n)) out_.nodes_.push_back(std::move(n));
      return ok_;
    }
    return fail(path,
                "must be a list of expressions: wrap the expression in brackets, "
                "[[var, op, value]]");
  }

 private:
  VarsExpr& out_;
  Errors& errors_;
  bool ok_ = true;

  bool fail(const std::string& path, std::string message) {
    errors_.add(path, std::move(message));
    ok_ = false;
    return false;
  }

  // An element of a list: a nested list (AND), a logic group, or a comparison.
  bool node(const json& j, const std::string& path, VarsExpr::Node& n) {
    if (!j.is_array()) return fail(path, "must be an expression array");
    if (j.empty()) return fail(path, "must not be empty");
    if (j[0].is_array()) {
      n.logic = VarsExpr::Logic::And;
      return children(j, 0, path, n);
    }
    if (find_logic(j[0])) return group(j, path, n);
    return comparison(j, path, n);
  }

  bool group(const json& j, const std::string& path, VarsExpr::Node& n) {
    n.logic = *find_logic(j[0]);
    if (j.size() < 3) {  // lua-resty-expr: "rule too short"
      std::string message = j[0].get<std::string>();
      message.insert(0, 1, '"');
      message.append("\" needs at least two expressions");
      return fail(path, std::move(message));
    }
    return children(j, 1, path, n);
  }

  // j[first..] compiled into n's children; every element is checked, not just up to an error.
  bool children(const json& j, size_t first, const std::string& path, VarsExpr::Node& n) {
    bool good = true;
    for (size_t i = first; i < j.size(); ++i) {
      VarsExpr::Node child;
      if (node(j[i], at(path, i), child))
        n.children.push_back(std::move(child));
      else
        good = false;
    }
    return good;
  }

  bool comparison(const json& j, const std::string& path, VarsExpr::Node& n) {
    if (j.size() < 2 || j.size() > 4)
      return fail(path, "must be [var, op, value] or [var, \"!\", op, value]");
    if (!j[0].is_string()) return fail(at(path, 0), "must be a variable name");
    std::string error;
    auto var = parse_var_name(j[0].get_ref<const std::string&>(), error);
    if (!var) return fail(at(path, 0), error);
    n.var = var_index(std::move(*var));

    size_t op_at = 1;
    if (j.size() == 4) {
      if (j[1] != "!") return fail(at(path, 1), "must be \"!\" (not) in a four-element expression");
      n.negate = true;
      op_at = 2;
    }
    static const json kNull;
    const json* value = op_at + 1 < j.size() ? &j[op_at + 1] : &kNull;
    if (j.size() == 2) {
      // [var, value] means [var, "==", value]; [var, op] compares with nil (lua-resty-expr).
      if (!(j[1].is_string() && find_op(j[1].get<std::string>()))) {
        n.op = VarsExpr::Op::Eq;
        return set_value(n, j[1], at(path, 1));
      }
    }
    if (!j[op_at].is_string()) return fail(at(path, op_at), "must be an operator string");
    auto op = find_op(j[op_at].get<std::string>());
    if (!op)
      return fail(at(path, op_at),
                  "unknown operator \"" + j[op_at].get<std::string>() +
                      "\" (==, ~=, >, >=, <, <=, ~~, ~*, in, has, ipmatch, or \"!\" before one)");
    n.op = *op;
    return set_value(n, *value, j.size() == 2 ? path : at(path, op_at + 1));
  }

  uint16_t var_index(VarRef var) {
    auto& vars = out_.variables_;
    for (size_t i = 0; i < vars.size(); ++i)
      if (vars[i].kind == var.kind && vars[i].name == var.name) return static_cast<uint16_t>(i);
    vars.push_back(std::move(var));
    return static_cast<uint16_t>(vars.size() - 1);
  }

  bool set_value(VarsExpr::Node& n, const json& j, const std::string& path) {
    using Op = VarsExpr::Op;
    using Type = VarsExpr::Value::Type;
    auto v = std::make_shared<VarsExpr::Value>();
    switch (n.op) {
      case Op::Eq:
      case Op::Ne:
        if (j.is_null()) {
          v->type = Type::Null;
        } else if (j.is_string()) {
          v->type = Type::String;
          v->text = j.get<std::string>();
        } else if (j.is_number()) {
          v->type = Type::Number;
          v->number = j.get<double>();
        }  // booleans, arrays and objects never equal a request variable (Type::Never)
        break;
      case Op::Gt:
      case Op::Ge:
      case Op::Lt:
      case Op::Le: {
        std::optional<double> num;
        if (j.is_number())
          num = j.get<double>();
        else if (j.is_string())
          num = lua_tonumber(j.get_ref<const std::string&>());
        if (!num) return fail(path, "must be a number (or a numeric string)");
        v->number = *num;
        break;
      }
      case Op::Regex:
      case Op::RegexI: {
        if (!j.is_string()) return fail(path, "must be a regular expression string");
        re2::RE2::Options options;
        options.set_log_errors(false);
        options.set_encoding(re2::RE2::Options::EncodingLatin1);  // bytes, as PCRE without "u"
        options.set_case_sensitive(n.op == Op::Regex);
        v->regex = std::make_unique<re2::RE2>(j.get<std::string>(), options);
        if (!v->regex->ok()) return fail(path, "invalid regex: " + v->regex->error());
        break;
      }
      case Op::In:
        if (!j.is_array()) return fail(path, "must be an array of strings or numbers");
        for (size_t i = 0; i < j.size(); ++i) {
          if (j[i].is_string())
            v->strings.push_back(j[i].get<std::string>());
          else if (j[i].is_number())
            v->numbers.push_back(j[i].get<double>());
          else
            fail(at(path, i), "must be a string or a number");
        }
        break;
      case Op::Has:
        if (!j.is_string()) return fail(path, "must be a string");
        v->text = j.get<std::string>();
        break;
      case Op::IpMatch: {
        auto add = [&](const json& item, const std::string& item_path) {
          Cidr c;
          if (!item.is_string()) return fail(item_path, "must be an IP address or CIDR string");
          if (!Cidr::parse(item.get_ref<const std::string&>(), c))
            return fail(item_path, "invalid ip address: " + item.get<std::string>());
          v->cidrs.push_back(c);
          return true;
        };
        if (j.is_string()) {
          add(j, path);
        } else if (j.is_array() && !j.empty()) {
          for (size_t i = 0; i < j.size(); ++i) add(j[i], at(path, i));
        } else {
          return fail(path, "must be an IP address or CIDR, or a non-empty list of them");
        }
        break;
      }
    }
    n.value = std::move(v);
    return ok_;
  }
};

std::optional<VarsExpr> VarsExpr::compile(const json& vars, const std::string& path,
                                          Errors& errors) {
  VarsExpr expr;
  VarsCompiler compiler(expr, errors);
  if (!compiler.top(vars, path)) return std::nullopt;
  return expr;
}

bool VarsExpr::eval(const VarSource& source) const {
  for (const auto& n : nodes_)
    if (!eval_node(n, source)) return false;
  return true;
}

bool VarsExpr::eval_node(const Node& n, const VarSource& source) const {
  if (n.value) return compare(n, source) != n.negate;
  bool any = n.logic == Logic::Or || n.logic == Logic::NotOr;
  bool result = !any;
  for (const auto& child : n.children) {
    if (eval_node(child, source) == any) {
      result = any;
      break;
    }
  }
  return n.logic == Logic::NotAnd || n.logic == Logic::NotOr ? !result : result;
}

bool VarsExpr::compare(const Node& n, const VarSource& source) const {
  const VarRef& var = variables_[n.var];
  const Value& v = *n.value;
  if (n.op == Op::Has) return source.has_value(var, v.text);
  std::optional<std::string_view> l = source.get(var);

  auto equals = [&]() {
    switch (v.type) {
      case Value::Type::Null:
        return !l;
      case Value::Type::String:
        return l && *l == v.text;
      case Value::Type::Number: {  // Lua: tonumber(var) == value
        if (!l) return false;
        auto num = lua_tonumber(*l);
        return num && *num == v.number;
      }
      case Value::Type::Never:
        return false;
    }
    return false;
  };

  switch (n.op) {
    case Op::Eq:
      return equals();
    case Op::Ne:
      return !equals();
    case Op::Gt:
    case Op::Ge:
    case Op::Lt:
    case Op::Le: {
      if (!l) return false;
      auto num = lua_tonumber(*l);
      if (!num) return false;
      if (n.op == Op::Gt) return *num > v.number;
      if (n.op == Op::Ge) return *num >= v.number;
      if (n.op == Op::Lt) return *num < v.number;
      return *num <= v.number;
    }
    case Op::Regex:
    case Op::RegexI:
      return l && re2::RE2::PartialMatch(re2::StringPiece(l->data(), l->size()), *v.regex);
    case Op::In: {
      if (!l) return false;
      for (const auto& s : v.strings)
        if (*l == s) return true;
      if (v.numbers.empty()) return false;
      auto num = lua_tonumber(*l);
      return num && std::find(v.numbers.begin(), v.numbers.end(), *num) != v.numbers.end();
    }
    case Op::IpMatch: {
      std::array<uint8_t, 16> addr;
      if (!l || !parse_address(*l, addr)) return false;
      for (const auto& c : v.cidrs)
        if (c.contains(addr)) return true;
      return false;
    }
    case Op::Has:
      break;
  }
  return false;
}

}  // namespace portico::router
