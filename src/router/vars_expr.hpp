// Route `vars` expressions (APISIX / lua-resty-expr): `[var, op, value]` comparisons over request
// variables, nested with AND/OR/!AND/!OR, compiled once from JSON and evaluated without allocating.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/field_reader.hpp"

namespace re2 {
class RE2;
}

namespace portico::router {

// Which request fact a variable names. Names are parsed once at compile time.
enum class VarKind : uint8_t {
  Arg,             // arg_<name>: first query argument <name> (case-sensitive, decoded)
  Http,            // http_<name>: request header; name lower-cased, '_' -> '-' ("x-api-key")
  Cookie,          // cookie_<name>: cookie <name> (case-sensitive)
  Uri,             // uri: normalised, decoded path without the query
  RequestUri,      // request_uri: path and query as sent
  Args,            // args, query_string: the raw query (without '?')
  Host,            // host: Host header without port, lower-cased (nginx's $host)
  RemoteAddr,      // remote_addr: client address (after real-ip, if configured)
  RemotePort,      // remote_port
  ServerAddr,      // server_addr: the local address the request came in on
  ServerPort,      // server_port: the local port
  RequestMethod,   // request_method
  Scheme,          // scheme: "http" or "https"
  ServerProtocol,  // server_protocol: "HTTP/1.1"
  RouteId,         // route_id (in plugins; unknown while matching routes)
  ServiceId,       // service_id
  ConsumerName,    // consumer_name (after authentication)
  Status,          // status: the response status (response-rewrite's vars; none while matching)
  UpstreamStatus,  // upstream_status: the upstream's status (none for a plugin's own answer)
};

struct VarRef {
  VarKind kind;
  std::string name;  // the argument, header or cookie name; the variable's own name otherwise
};

// What an expression reads a request through. The lead implements it over the HTTP request;
// tests over a map. Values are views valid for the duration of one evaluation.
class VarSource {
 public:
  // nullopt when the variable has no value (a missing argument, header or cookie).
  virtual std::optional<std::string_view> get(const VarRef& var) const = 0;
  // For `has`: whether any value of a multi-valued variable (repeated query arguments or
  // headers) equals `value`. The default checks the single value get() returns.
  virtual bool has_value(const VarRef& var, std::string_view value) const {
    auto v = get(var);
    return v && *v == value;
  }

 protected:
  ~VarSource() = default;
};

// A compiled `vars` array. Immutable and cheap to share between workers (copies share the
// compiled regexes). An empty `vars` array always matches.
class VarsExpr {
 public:
  enum class Op : uint8_t { Eq, Ne, Gt, Ge, Lt, Le, Regex, RegexI, In, Has, IpMatch };
  enum class Logic : uint8_t { And, Or, NotAnd, NotOr };

  // Compiles a route's `vars` (or a plugin's `match`) value. Errors are recorded under `path`
  // with the element's position (`routes[3].vars[1][1]: unknown operator "=~"`); returns
  // nullopt when there were any.
  static std::optional<VarsExpr> compile(const config::json& vars, const std::string& path,
                                         config::Errors& errors);

  bool eval(const VarSource& source) const;

  bool empty() const { return nodes_.empty(); }
  // Every variable the expression reads, without duplicates (to know whether cookies or query
  // arguments must be parsed before matching).
  const std::vector<VarRef>& variables() const { return variables_; }

  struct Value;  // the right-hand side of a comparison (defined in the .cpp)

 private:
  friend class VarsCompiler;
  struct Node {
    // A group (value null: AND/OR of children) or a comparison (value set).
    Logic logic = Logic::And;
    std::vector<Node> children;
    uint16_t var = 0;  // index into variables_
    Op op = Op::Eq;
    bool negate = false;
    std::shared_ptr<const Value> value;
  };

  std::vector<Node> nodes_;  // the top level: all must hold (an AND)
  std::vector<VarRef> variables_;

  bool eval_node(const Node& node, const VarSource& source) const;
  bool compare(const Node& node, const VarSource& source) const;
};

// Parses a variable name ("arg_id", "http_x_api_key", "remote_addr"); nullopt with `error` set
// when it is unknown or unsupported.
std::optional<VarRef> parse_var_name(std::string_view name, std::string& error);

// Lua's tonumber() on a string as lua-resty-expr uses it: decimal (sign, fraction, exponent)
// or hexadecimal integers, surrounding blanks allowed. nullopt when it is not a number.
std::optional<double> lua_tonumber(std::string_view text);

}  // namespace portico::router
