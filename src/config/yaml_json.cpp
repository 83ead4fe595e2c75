#include "config/yaml_json.hpp"

#include <yaml.h>

#include <charconv>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

// libyaml's event parser, building JSON directly: no intermediate node tree, which made
// yaml-cpp spend seconds on a 50,000-route file (reloads must be cheap, see bench/README.md).

namespace portico::config {
namespace {

std::string where(const yaml_mark_t& m) {
  return "line " + std::to_string(m.line + 1) + ", column " + std::to_string(m.column + 1);
}

// YAML 1.2 core schema for plain (unquoted) scalars; quoted or !!str-tagged ones stay strings.
nlohmann::json scalar(const yaml_event_t& e) {
  std::string s(reinterpret_cast<const char*>(e.data.scalar.value), e.data.scalar.length);
  const char* tag = reinterpret_cast<const char*>(e.data.scalar.tag);
  if (e.data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
      (tag && std::string_view(tag) == YAML_STR_TAG))
    return s;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  const char* b = s.data();
  const char* end = b + s.size();
  const char* digits = (*b == '-' || *b == '+') ? b + 1 : b;
  if (digits < end && *digits >= '0' && *digits <= '9') {
    const char* start = *b == '+' ? b + 1 : b;
    int64_t i = 0;
    auto [p, ec] = std::from_chars(start, end, i);
    if (ec == std::errc() && p == end) return i;
    double d = 0;
    auto [p2, ec2] = std::from_chars(start, end, d);
    if (ec2 == std::errc() && p2 == end) return d;
  }
  return s;
}

class Builder {
 public:
  // Adds a finished value to the container on top of the stack (or makes it the document).
  void add(nlohmann::json value, const yaml_mark_t& mark) {
    if (stack_.empty()) {
      root_ = std::move(value);
      done_ = true;
      return;
    }
    Frame& top = stack_.back();
    if (top.value.is_array()) {
      top.value.push_back(std::move(value));
    } else if (!top.key) {
      if (!value.is_string() && !value.is_number() && !value.is_boolean())
        throw std::runtime_error(where(mark) + ": mapping keys must be plain values");
      top.key = value.is_string() ? value.get<std::string>() : value.dump();
    } else {
      if (top.value.contains(*top.key))
        throw std::runtime_error(where(mark) + ": duplicate key '" + *top.key + "'");
      top.value[*top.key] = std::move(value);
      top.key.reset();
    }
  }
  void open(nlohmann::json container, const yaml_char_t* anchor) {
    stack_.push_back(
        {std::move(container), std::nullopt, anchor ? reinterpret_cast<const char*>(anchor) : ""});
  }
  void close(const yaml_mark_t& mark) {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (!f.anchor.empty()) anchors_[f.anchor] = f.value;
    add(std::move(f.value), mark);
  }
  void anchor(const yaml_char_t* name, const nlohmann::json& value) {
    if (name) anchors_[reinterpret_cast<const char*>(name)] = value;
  }
  nlohmann::json alias(const yaml_char_t* name, const yaml_mark_t& mark) {
    auto it = anchors_.find(reinterpret_cast<const char*>(name));
    if (it == anchors_.end()) throw std::runtime_error(where(mark) + ": unknown alias");
    return it->second;
  }
  bool done() const { return done_; }
  nlohmann::json take() { return std::move(root_); }

 private:
  struct Frame {
    nlohmann::json value;
    std::optional<std::string> key;
    std::string anchor;
  };
  std::vector<Frame> stack_;
  std::map<std::string, nlohmann::json> anchors_;
  nlohmann::json root_;
  bool done_ = false;
};

struct Parser {
  yaml_parser_t p;
  Parser() { yaml_parser_initialize(&p); }
  ~Parser() { yaml_parser_delete(&p); }
};

struct Event {
  yaml_event_t e{};
  ~Event() { yaml_event_delete(&e); }
};

}  // namespace

nlohmann::json yaml_to_json(const std::string& text) {
  Parser parser;
  yaml_parser_set_input_string(&parser.p, reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  Builder b;
  while (true) {
    Event ev;
    if (!yaml_parser_parse(&parser.p, &ev.e))
      throw std::runtime_error("YAML syntax error at " + where(parser.p.problem_mark) + ": " +
                               (parser.p.problem ? parser.p.problem : "unknown problem"));
    const yaml_event_t& e = ev.e;
    switch (e.type) {
      case YAML_STREAM_END_EVENT:
        return b.take();
      case YAML_DOCUMENT_END_EVENT:
        if (b.done()) return b.take();  // only the first document counts
        break;
      case YAML_MAPPING_START_EVENT:
        b.open(nlohmann::json::object(), e.data.mapping_start.anchor);
        break;
      case YAML_SEQUENCE_START_EVENT:
        b.open(nlohmann::json::array(), e.data.sequence_start.anchor);
        break;
      case YAML_MAPPING_END_EVENT:
      case YAML_SEQUENCE_END_EVENT:
        b.close(e.start_mark);
        break;
      case YAML_SCALAR_EVENT: {
        nlohmann::json v = scalar(e);
        b.anchor(e.data.scalar.anchor, v);
        b.add(std::move(v), e.start_mark);
        break;
      }
      case YAML_ALIAS_EVENT:
        b.add(b.alias(e.data.alias.anchor, e.start_mark), e.start_mark);
        break;
      default:
        break;
    }
  }
}

nlohmann::json load_yaml_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  try {
    return yaml_to_json(ss.str());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

}  // namespace portico::config
