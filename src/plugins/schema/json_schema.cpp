#include "plugins/schema/json_schema.hpp"

#include <arpa/inet.h>
#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <vector>

namespace portico::plugins {

using config::json;

namespace {

enum TypeBit : uint8_t {
  kNull = 1,
  kBoolean = 2,
  kObject = 4,
  kArray = 8,
  kNumber = 16,
  kString = 32,
  kInteger = 64,
};

// Subschema visits per check: far beyond any real schema and body, small enough that a crafted
// value cannot hold a worker (about a millisecond).
constexpr int kCheckBudget = 100000;

constexpr std::pair<const char*, uint8_t> kTypes[] = {
    {"null", kNull},     {"boolean", kBoolean}, {"object", kObject},  {"array", kArray},
    {"number", kNumber}, {"string", kString},   {"integer", kInteger}};

bool integral(const json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  double d = v.get<double>();
  return std::isfinite(d) && d == std::floor(d);
}

const char* type_name(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean";
  if (v.is_object()) return "object";
  if (v.is_array()) return "array";
  if (v.is_string()) return "string";
  return integral(v) ? "integer" : "number";
}

bool has_type(uint8_t types, const json& v) {
  if (v.is_null()) return types & kNull;
  if (v.is_boolean()) return types & kBoolean;
  if (v.is_object()) return types & kObject;
  if (v.is_array()) return types & kArray;
  if (v.is_string()) return types & kString;
  if (types & kNumber) return true;
  return (types & kInteger) && integral(v);
}

// JSON Schema's equality: numbers by value (1 == 1.0; an unsigned 2^64-1 is not -1, which
// nlohmann's == would say after a cast), objects and arrays item by item.
bool same_value(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_number_float() || b.is_number_float()) return a.get<double>() == b.get<double>();
    bool a_neg = a.is_number_integer() && !a.is_number_unsigned() && a.get<int64_t>() < 0;
    bool b_neg = b.is_number_integer() && !b.is_number_unsigned() && b.get<int64_t>() < 0;
    if (a_neg != b_neg) return false;
    return a_neg ? a.get<int64_t>() == b.get<int64_t>() : a.get<uint64_t>() == b.get<uint64_t>();
  }
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!same_value(a[i], b[i])) return false;
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto other = b.find(it.key());
      if (other == b.end() || !same_value(*it, *other)) return false;
    }
    return true;
  }
  return a == b;
}

// A text equal for equal values (same_value) and different otherwise, for uniqueItems: numbers
// written by value (an integral float as an integer), object keys in order (nlohmann sorts).
void canonical(const json& v, std::string& out) {
  if (v.is_number_float() && integral(v) && std::fabs(v.get<double>()) < 9.2e18) {
    out += std::to_string(static_cast<int64_t>(v.get<double>()));
  } else if (v.is_array()) {
    out += '[';
    for (const auto& item : v) {
      canonical(item, out);
      out += ',';
    }
    out += ']';
  } else if (v.is_object()) {
    out += '{';
    for (auto it = v.begin(); it != v.end(); ++it) {
      out += json(it.key()).dump();
      out += ':';
      canonical(*it, out);
      out += ',';
    }
    out += '}';
  } else {
    out += v.dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string number_text(double d) {
  if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
  return json(d).dump();
}

bool digits(std::string_view s, size_t from, size_t n) {
  if (from + n > s.size()) return false;
  for (size_t i = from; i < from + n; ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

int number_at(std::string_view s, size_t from, size_t n) {
  int v = 0;
  for (size_t i = from; i < from + n; ++i) v = v * 10 + (s[i] - '0');
  return v;
}

bool valid_date(std::string_view s) {
  if (s.size() != 10 || !digits(s, 0, 4) || s[4] != '-' || !digits(s, 5, 2) || s[7] != '-' ||
      !digits(s, 8, 2))
    return false;
  int y = number_at(s, 0, 4), m = number_at(s, 5, 2), d = number_at(s, 8, 2);
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m < 1 || m > 12 || d < 1 || d > kDays[m - 1]) return false;
  return !(m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
}

// RFC 3339: 2026-11-29T18:00:00Z, with fractions and offsets.
bool valid_date_time(std::string_view s) {
  if (s.size() < 20 || !valid_date(s.substr(0, 10))) return false;
  if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return false;
  if (!digits(s, 11, 2) || s[13] != ':' || !digits(s, 14, 2) || s[16] != ':' || !digits(s, 17, 2))
    return false;
  if (number_at(s, 11, 2) > 23 || number_at(s, 14, 2) > 59 || number_at(s, 17, 2) > 60)
    return false;
  size_t at = 19;
  if (s[at] == '.') {
    size_t start = ++at;
    while (at < s.size() && s[at] >= '0' && s[at] <= '9') ++at;
    if (at == start) return false;
  }
  std::string_view zone = s.substr(at);
  if (zone == "Z" || zone == "z") return true;
  return zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && digits(zone, 1, 2) &&
         zone[3] == ':' && digits(zone, 4, 2) && number_at(zone, 1, 2) <= 23 &&
         number_at(zone, 4, 2) <= 59;
}

bool valid_hostname(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '.') {
      if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-') return false;
      label = 0;
      continue;
    }
    char c = s[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    ++label;
  }
  return true;
}

bool valid_format(const std::string& format, const std::string& v) {
  // (inet_pton and friends would stop at a NUL: "10.0.0.1\0anything" must not pass.)
  if (v.find('\0') != std::string::npos)
    return format != "email" && format != "ipv4" && format != "ipv6" && format != "hostname" &&
           format != "date" && format != "date-time";
  if (format == "email") {
    size_t at = v.find('@');
    return at != std::string::npos && at > 0 && v.find('@', at + 1) == std::string::npos &&
           valid_hostname(std::string_view(v).substr(at + 1)) &&
           v.find_first_of(" \t\r\n") == std::string::npos;
  }
  if (format == "ipv4" || format == "ipv6") {
    unsigned char buf[16];
    return inet_pton(format == "ipv4" ? AF_INET : AF_INET6, v.c_str(), buf) == 1;
  }
  if (format == "hostname") return valid_hostname(v);
  if (format == "date") return valid_date(v);
  if (format == "date-time") return valid_date_time(v);
  return true;  // an annotation only
}

}  // namespace

struct JsonSchema::Node {
  bool never = false;  // the schema `false`
  int ref = -1;        // $ref: the node that applies instead
  uint8_t types = 0;   // 0: any
  std::optional<std::vector<json>> enum_values;
  std::optional<json> constant;
  std::vector<std::pair<std::string, int>> properties;
  std::vector<std::string> required;
  int additional = -1;  // additionalProperties as a schema
  bool additional_forbidden = false;
  std::vector<std::pair<std::unique_ptr<RE2>, int>> pattern_properties;
  std::optional<size_t> min_properties, max_properties;
  int items = -1;          // one schema for every item
  std::vector<int> tuple;  // or one per position
  int additional_items = -1;
  bool additional_items_forbidden = false;
  std::optional<size_t> min_items, max_items;
  bool unique_items = false;
  std::optional<size_t> min_length, max_length;
  std::unique_ptr<RE2> pattern;
  std::optional<double> minimum, maximum, exclusive_minimum, exclusive_maximum, multiple_of;
  std::vector<int> all_of, any_of, one_of;
  int negated = -1;
  std::string format;
};

struct JsonSchema::Compiled {
  json doc;
  std::vector<std::unique_ptr<Node>> nodes;
  std::map<std::string, int> by_pointer;  // compiled subschemas, for $ref
  struct PendingRef {
    int node;
    std::string target;
    std::string path;
  };
  std::vector<PendingRef> refs;

  int compile(const json& s, const std::string& pointer, const std::string& path,
              config::Errors& errors);
  // `depth`: how deep in the value; `budget`: subschema visits left (anyOf/oneOf branches that
  // each descend could otherwise cost exponential time on a crafted value).
  std::string check(int node, const json& v, int depth, int& budget) const;
  // A cycle of $ref / allOf / anyOf / oneOf / not that never descends into a value would check
  // the same value for ever: a config error.
  bool loops_in_place(int node, std::vector<uint8_t>& state) const;
};

namespace {

std::optional<size_t> count_field(const json& s, const char* key, const std::string& path,
                                  config::Errors& errors) {
  auto it = s.find(key);
  if (it == s.end()) return std::nullopt;
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    errors.add(path + "." + key, "must be a non-negative integer");
    return std::nullopt;
  }
  return static_cast<size_t>(it->get<int64_t>());
}

std::optional<double> number_field(const json& s, const char* key, const std::string& path,
                                   config::Errors& errors) {
  auto it = s.find(key);
  if (it == s.end() || it->is_boolean()) return std::nullopt;
  if (!it->is_number()) {
    errors.add(path + "." + key, "must be a number");
    return std::nullopt;
  }
  return it->get<double>();
}

std::unique_ptr<RE2> regex(const std::string& text, const std::string& path,
                           config::Errors& errors) {
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_unique<RE2>(text, options);
  if (!re->ok()) {
    errors.add(path, "is not a regular expression RE2 takes: " + re->error());
    return nullptr;
  }
  return re;
}

std::string escape_pointer(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

}  // namespace

int JsonSchema::Compiled::compile(const json& s, const std::string& pointer,
                                  const std::string& path, config::Errors& errors) {
  int index = static_cast<int>(nodes.size());
  nodes.push_back(std::make_unique<Node>());
  by_pointer[pointer] = index;
  auto sub = [&](const json& child, const std::string& key) {
    return compile(child, pointer + "/" + key, path + "." + key, errors);
  };
  if (s.is_boolean()) {
    nodes[index]->never = !s.get<bool>();
    return index;
  }
  if (!s.is_object()) {
    errors.add(path, "must be a schema (an object or a boolean)");
    return index;
  }
  if (nodes.size() > 10000) {
    errors.add(path, "the schema is too large (10,000 subschemas at most)");
    return index;
  }
  for (const auto& [key, value] : s.items()) {
    static const char* const kUnsupported[] = {"if",
                                               "then",
                                               "else",
                                               "contains",
                                               "propertyNames",
                                               "dependencies",
                                               "dependentRequired",
                                               "dependentSchemas",
                                               "unevaluatedProperties",
                                               "unevaluatedItems",
                                               "prefixItems",
                                               "$dynamicRef",
                                               "$recursiveRef"};
    for (const char* k : kUnsupported)
      if (key == k) errors.add(path + "." + key, "is not supported by Portico's validator");
  }
  if (auto it = s.find("$ref"); it != s.end()) {
    if (!it->is_string())
      errors.add(path + ".$ref", "must be a string");
    else
      refs.push_back({index, it->get<std::string>(), path + ".$ref"});
    return index;  // (draft 4 to 7: keywords beside $ref are ignored)
  }
  if (auto it = s.find("type"); it != s.end()) {
    uint8_t types = 0;
    bool ok = it->is_string() || (it->is_array() && !it->empty());
    for (const auto& t : it->is_array() ? *it : json::array({*it})) {
      bool known = false;
      for (const auto& [name, bit] : kTypes)
        if (t.is_string() && t.get<std::string>() == name) {
          types |= bit;
          known = true;
        }
      ok = ok && known;
    }
    if (!ok)
      errors.add(path + ".type",
                 "must be a type name (null, boolean, object, array, number, string, integer) or a "
                 "list of them");
    nodes[index]->types = types;
  }
  if (auto it = s.find("enum"); it != s.end()) {
    if (!it->is_array() || it->empty())
      errors.add(path + ".enum", "must be a non-empty list");
    else
      nodes[index]->enum_values = it->get<std::vector<json>>();
  }
  if (auto it = s.find("const"); it != s.end()) nodes[index]->constant = *it;
  if (auto it = s.find("properties"); it != s.end()) {
    if (!it->is_object())
      errors.add(path + ".properties", "must be an object of schemas");
    else
      for (const auto& [name, child] : it->items()) {
        int c = compile(child, pointer + "/properties/" + escape_pointer(name),
                        path + ".properties." + name, errors);
        nodes[index]->properties.emplace_back(name, c);
      }
  }
  if (auto it = s.find("required"); it != s.end()) {
    bool ok = it->is_array();
    if (ok)
      for (const auto& r : *it) ok = ok && r.is_string();
    if (!ok)
      errors.add(path + ".required", "must be a list of property names");
    else
      nodes[index]->required = it->get<std::vector<std::string>>();
  }
  // additionalProperties / additionalItems: `false` forbids, a schema checks.
  auto forbidden_or_schema = [&](const char* key, bool Node::*forbidden, int Node::*schema) {
    auto it = s.find(key);
    if (it == s.end()) return;
    if (it->is_boolean())
      (*nodes[index]).*forbidden = !it->get<bool>();
    else
      (*nodes[index]).*schema = sub(*it, key);
  };
  forbidden_or_schema("additionalProperties", &Node::additional_forbidden, &Node::additional);
  if (auto it = s.find("patternProperties"); it != s.end()) {
    if (!it->is_object())
      errors.add(path + ".patternProperties", "must be an object of schemas");
    else
      for (const auto& [re, child] : it->items()) {
        auto compiled = regex(re, path + ".patternProperties." + re, errors);
        int c = compile(child, pointer + "/patternProperties/" + escape_pointer(re),
                        path + ".patternProperties." + re, errors);
        if (compiled) nodes[index]->pattern_properties.emplace_back(std::move(compiled), c);
      }
  }
  nodes[index]->min_properties = count_field(s, "minProperties", path, errors);
  nodes[index]->max_properties = count_field(s, "maxProperties", path, errors);
  if (auto it = s.find("items"); it != s.end()) {
    if (it->is_array()) {
      for (size_t i = 0; i < it->size(); ++i)
        nodes[index]->tuple.push_back(compile((*it)[i], pointer + "/items/" + std::to_string(i),
                                              path + ".items[" + std::to_string(i) + "]", errors));
    } else {
      nodes[index]->items = sub(*it, "items");
    }
  }
  forbidden_or_schema("additionalItems", &Node::additional_items_forbidden,
                      &Node::additional_items);
  nodes[index]->min_items = count_field(s, "minItems", path, errors);
  nodes[index]->max_items = count_field(s, "maxItems", path, errors);
  if (auto it = s.find("uniqueItems"); it != s.end()) {
    if (!it->is_boolean())
      errors.add(path + ".uniqueItems", "must be a boolean");
    else
      nodes[index]->unique_items = it->get<bool>();
  }
  nodes[index]->min_length = count_field(s, "minLength", path, errors);
  nodes[index]->max_length = count_field(s, "maxLength", path, errors);
  if (auto it = s.find("pattern"); it != s.end()) {
    if (!it->is_string())
      errors.add(path + ".pattern", "must be a string");
    else
      nodes[index]->pattern = regex(it->get<std::string>(), path + ".pattern", errors);
  }
  Node& n = *nodes[index];
  n.minimum = number_field(s, "minimum", path, errors);
  n.maximum = number_field(s, "maximum", path, errors);
  n.exclusive_minimum = number_field(s, "exclusiveMinimum", path, errors);
  n.exclusive_maximum = number_field(s, "exclusiveMaximum", path, errors);
  // Draft 4: exclusiveMinimum: true makes minimum exclusive.
  if (auto it = s.find("exclusiveMinimum"); it != s.end() && it->is_boolean() && it->get<bool>())
    std::swap(n.exclusive_minimum, n.minimum);
  if (auto it = s.find("exclusiveMaximum"); it != s.end() && it->is_boolean() && it->get<bool>())
    std::swap(n.exclusive_maximum, n.maximum);
  n.multiple_of = number_field(s, "multipleOf", path, errors);
  if (n.multiple_of && *n.multiple_of <= 0) errors.add(path + ".multipleOf", "must be above 0");
  for (auto [key, list] : {std::pair{"allOf", &Node::all_of}, std::pair{"anyOf", &Node::any_of},
                           std::pair{"oneOf", &Node::one_of}}) {
    auto it = s.find(key);
    if (it == s.end()) continue;
    if (!it->is_array() || it->empty()) {
      errors.add(path + "." + key, "must be a non-empty list of schemas");
      continue;
    }
    for (size_t i = 0; i < it->size(); ++i) {
      int c = compile((*it)[i], pointer + "/" + key + "/" + std::to_string(i),
                      path + "." + key + "[" + std::to_string(i) + "]", errors);
      ((*nodes[index]).*list).push_back(c);
    }
  }
  if (auto it = s.find("not"); it != s.end()) nodes[index]->negated = sub(*it, "not");
  if (auto it = s.find("format"); it != s.end()) {
    if (!it->is_string())
      errors.add(path + ".format", "must be a string");
    else
      nodes[index]->format = it->get<std::string>();
  }
  return index;
}

std::shared_ptr<const JsonSchema> JsonSchema::compile(const json& schema, const std::string& path,
                                                      config::Errors& errors) {
  size_t before = errors.size();
  std::shared_ptr<JsonSchema> out(new JsonSchema());
  Compiled& c = *out->compiled_;
  c.doc = schema;
  c.compile(c.doc, "", path, errors);
  // $refs point into the document: compiled when first named (definitions are compiled only if
  // used), recursion allowed.
  for (size_t i = 0; i < c.refs.size(); ++i) {
    Compiled::PendingRef ref = c.refs[i];
    if (ref.target != "#" && !ref.target.starts_with("#/")) {
      errors.add(ref.path, "only references within the schema (\"#...\") are supported");
      continue;
    }
    std::string pointer = ref.target.substr(1);
    auto found = c.by_pointer.find(pointer);
    if (found != c.by_pointer.end()) {
      c.nodes[static_cast<size_t>(ref.node)]->ref = found->second;
      continue;
    }
    const json* target = nullptr;
    try {
      target = &c.doc.at(json::json_pointer(pointer));
    } catch (const std::exception&) {
    }
    if (!target) {
      errors.add(ref.path, "points at nothing in the schema: " + ref.target);
      continue;
    }
    c.nodes[static_cast<size_t>(ref.node)]->ref = c.compile(*target, pointer, ref.path, errors);
  }
  if (errors.size() == before) {
    std::vector<uint8_t> state(c.nodes.size(), 0);
    for (size_t i = 0; i < c.nodes.size(); ++i)
      if (c.loops_in_place(static_cast<int>(i), state)) {
        errors.add(path,
                   "refers to itself ($ref, allOf, anyOf, oneOf, not) without descending "
                   "into a property or item: it could never be checked");
        break;
      }
  }
  if (errors.size() != before) return nullptr;
  return out;
}

JsonSchema::JsonSchema() : compiled_(std::make_unique<Compiled>()) {}
JsonSchema::~JsonSchema() = default;

std::string JsonSchema::check(const json& value) const {
  int budget = kCheckBudget;
  std::string why = compiled_->check(0, value, 0, budget);
  return budget < 0 ? "the value is too costly to check against this schema" : why;
}

bool JsonSchema::Compiled::loops_in_place(int index, std::vector<uint8_t>& state) const {
  auto& mark = state[static_cast<size_t>(index)];
  if (mark == 1) return true;  // on the current path: a cycle
  if (mark == 2) return false;
  mark = 1;
  const Node& n = *nodes[static_cast<size_t>(index)];
  std::vector<int> same_value = n.all_of;
  same_value.insert(same_value.end(), n.any_of.begin(), n.any_of.end());
  same_value.insert(same_value.end(), n.one_of.begin(), n.one_of.end());
  if (n.negated >= 0) same_value.push_back(n.negated);
  if (n.ref >= 0) same_value.push_back(n.ref);
  for (int c : same_value)
    if (loops_in_place(c, state)) return true;
  mark = 2;
  return false;
}

std::string JsonSchema::Compiled::check(int index, const json& v, int depth, int& budget) const {
  if (--budget < 0) return "the value is too costly to check against this schema";
  if (depth > 256) return "the value is nested too deeply";
  const Node& n = *nodes[static_cast<size_t>(index)];
  if (n.never) return "no value is allowed here";
  if (n.ref >= 0) return check(n.ref, v, depth, budget);
  if (n.types && !has_type(n.types, v)) {
    std::string want;
    for (const auto& [name, bit] : kTypes)
      if (n.types & bit) want += (want.empty() ? "" : " or ") + std::string(name);
    return "wrong type: expected " + want + ", got " + type_name(v);
  }
  if (n.enum_values && std::none_of(n.enum_values->begin(), n.enum_values->end(),
                                    [&](const json& e) { return same_value(e, v); }))
    return "matches none of the enum values";
  if (n.constant && !same_value(*n.constant, v))
    return "value should match constant " + n.constant->dump();
  if (v.is_object()) {
    for (const auto& r : n.required)
      if (!v.contains(r)) return "property \"" + r + "\" is required";
    if (n.min_properties && v.size() < *n.min_properties)
      return "expect object to have at least " + std::to_string(*n.min_properties) + " properties";
    if (n.max_properties && v.size() > *n.max_properties)
      return "expect object to have at most " + std::to_string(*n.max_properties) + " properties";
    for (const auto& [name, item] : v.items()) {
      bool matched = false;
      for (const auto& [pname, child] : n.properties)
        if (pname == name) {
          matched = true;
          if (auto why = check(child, item, depth + 1, budget); !why.empty())
            return "property \"" + name + "\" validation failed: " + why;
        }
      for (const auto& [re, child] : n.pattern_properties)
        if (RE2::PartialMatch(name, *re)) {
          matched = true;
          if (auto why = check(child, item, depth + 1, budget); !why.empty())
            return "property \"" + name + "\" validation failed: " + why;
        }
      if (matched) continue;
      if (n.additional_forbidden) return "additional properties forbidden, found " + name;
      if (n.additional >= 0)
        if (auto why = check(n.additional, item, depth + 1, budget); !why.empty())
          return "property \"" + name + "\" validation failed: " + why;
    }
  }
  if (v.is_array()) {
    if (n.min_items && v.size() < *n.min_items)
      return "expect array to have at least " + std::to_string(*n.min_items) + " items";
    if (n.max_items && v.size() > *n.max_items)
      return "expect array to have at most " + std::to_string(*n.max_items) + " items";
    for (size_t i = 0; i < v.size(); ++i) {
      int child = n.items;
      if (!n.tuple.empty()) {
        if (i < n.tuple.size()) {
          child = n.tuple[i];
        } else {
          if (n.additional_items_forbidden)
            return "failed to validate item " + std::to_string(i + 1) +
                   ": additional items forbidden";
          child = n.additional_items;
        }
      }
      if (child < 0) continue;
      if (auto why = check(child, v[i], depth + 1, budget); !why.empty())
        return "failed to validate item " + std::to_string(i + 1) + ": " + why;
    }
    if (n.unique_items && v.size() > 1) {
      std::vector<std::string> keys(v.size());
      for (size_t i = 0; i < v.size(); ++i) canonical(v[i], keys[i]);
      std::sort(keys.begin(), keys.end());
      if (std::adjacent_find(keys.begin(), keys.end()) != keys.end())
        return "expected unique items but items are equal";
    }
  }
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (n.min_length || n.max_length) {
      size_t len = code_points(s);
      if (n.min_length && len < *n.min_length)
        return "string too short, expected at least " + std::to_string(*n.min_length) + ", got " +
               std::to_string(len);
      if (n.max_length && len > *n.max_length)
        return "string too long, expected at most " + std::to_string(*n.max_length) + ", got " +
               std::to_string(len);
    }
    if (n.pattern && !RE2::PartialMatch(s, *n.pattern))
      return "failed to match pattern \"" + n.pattern->pattern() + "\" with \"" +
             (s.size() > 64 ? s.substr(0, 64) + "..." : s) + "\"";
    if (!n.format.empty() && !valid_format(n.format, s))
      return "expected a valid " + n.format + ", got \"" +
             (s.size() > 64 ? s.substr(0, 64) + "..." : s) + "\"";
  }
  if (v.is_number()) {
    double d = v.get<double>();
    if (n.minimum && d < *n.minimum)
      return "expected " + number_text(d) + " to be at least " + number_text(*n.minimum);
    if (n.maximum && d > *n.maximum)
      return "expected " + number_text(d) + " to be at most " + number_text(*n.maximum);
    if (n.exclusive_minimum && d <= *n.exclusive_minimum)
      return "expected " + number_text(d) + " to be greater than " +
             number_text(*n.exclusive_minimum);
    if (n.exclusive_maximum && d >= *n.exclusive_maximum)
      return "expected " + number_text(d) + " to be smaller than " +
             number_text(*n.exclusive_maximum);
    if (n.multiple_of) {
      bool whole = v.is_number_integer() && *n.multiple_of == std::floor(*n.multiple_of) &&
                   *n.multiple_of < 9.2e18;
      double q = d / *n.multiple_of;
      // Integers exactly; decimals (19.99 of 0.01) within the rounding of a double.
      bool off = whole ? (v.is_number_unsigned()
                              ? v.get<uint64_t>() % static_cast<uint64_t>(*n.multiple_of) != 0
                              : v.get<int64_t>() % static_cast<int64_t>(*n.multiple_of) != 0)
                       : !std::isfinite(q) ||
                             std::fabs(q - std::round(q)) > 1e-12 * std::max(1.0, std::fabs(q));
      if (off)
        return "expected " + number_text(d) + " to be a multiple of " + number_text(*n.multiple_of);
    }
  }
  for (size_t i = 0; i < n.all_of.size(); ++i)
    if (auto why = check(n.all_of[i], v, depth, budget); !why.empty())
      return "allOf " + std::to_string(i + 1) + " failed: " + why;
  if (!n.any_of.empty() && std::none_of(n.any_of.begin(), n.any_of.end(),
                                        [&](int c) { return check(c, v, depth, budget).empty(); }))
    return "object matches none of the alternatives";
  if (!n.one_of.empty()) {
    size_t matches =
        static_cast<size_t>(std::count_if(n.one_of.begin(), n.one_of.end(), [&](int c) {
          return check(c, v, depth, budget).empty();
        }));
    if (matches != 1)
      return matches == 0
                 ? "value should match only one schema, but matches none"
                 : "value should match only one schema, but matches " + std::to_string(matches);
  }
  if (n.negated >= 0 && check(n.negated, v, depth, budget).empty())
    return "value wrongly matches forbidden schema";
  return {};
}

}  // namespace portico::plugins
