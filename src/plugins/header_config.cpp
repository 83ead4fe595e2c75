#include "plugins/header_config.hpp"

namespace portico::plugins {
namespace {

using config::json;

void read_map(const json& map, HeaderEdit::Op op, const std::string& path, config::Errors& errors,
              std::vector<HeaderEdit>& out) {
  if (!map.is_object()) {
    errors.add(path, "must be an object of header names to values");
    return;
  }
  for (auto it = map.begin(); it != map.end(); ++it) {
    std::string field = path + "." + it.key();
    if (!valid_header_name(it.key())) {
      errors.add(field, "is not a valid header name");
      continue;
    }
    std::string value;
    if (it.value().is_string())
      value = it.value().get<std::string>();
    else if (it.value().is_number())
      value = it.value().dump();
    else {
      errors.add(field, "must be a string or a number");
      continue;
    }
    if (!valid_header_value(value)) {
      errors.add(field, "must not contain control characters");
      continue;
    }
    HeaderEdit::Op this_op = op;
    if (op == HeaderEdit::Op::Set && value.empty()) this_op = HeaderEdit::Op::Remove;
    out.push_back({this_op, it.key(), value});
  }
}

// response-rewrite's `add` in APISIX: ["Name: value", ...].
void read_lines(const json& lines, const std::string& path, config::Errors& errors,
                std::vector<HeaderEdit>& out) {
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string item_path = path + "[" + std::to_string(i) + "]";
    const json& line = lines[i];
    size_t colon = line.is_string() ? line.get_ref<const std::string&>().find(':') : 0;
    if (!line.is_string() || colon == std::string::npos) {
      errors.add(item_path, "must be a \"Name: value\" string");
      continue;
    }
    const std::string& text = line.get_ref<const std::string&>();
    std::string name = text.substr(0, colon);
    size_t start = text.find_first_not_of(" \t", colon + 1);
    std::string value = start == std::string::npos ? "" : text.substr(start);
    if (!valid_header_name(name))
      errors.add(item_path, "is not a valid header name");
    else if (!valid_header_value(value))
      errors.add(item_path, "must not contain control characters");
    else
      out.push_back({HeaderEdit::Op::Add, std::move(name), std::move(value)});
  }
}

}  // namespace

bool valid_header_name(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool valid_header_value(std::string_view value) {
  for (char c : value)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

std::vector<HeaderEdit> read_header_edits(const json& value, const std::string& path,
                                          config::Errors& errors) {
  std::vector<HeaderEdit> out;
  if (!value.is_object()) {
    errors.add(path, "must be an object");
    return out;
  }
  bool structured = value.contains("add") || value.contains("set") || value.contains("remove");
  if (!structured) {
    read_map(value, HeaderEdit::Op::Set, path, errors, out);
    return out;
  }
  // APISIX applies them in the order add, remove, set (the edits are applied in order).
  config::ObjectReader r(value, path, errors);
  if (const json* add = r.raw("add")) {
    if (add->is_array())
      read_lines(*add, path + ".add", errors, out);
    else
      read_map(*add, HeaderEdit::Op::Add, path + ".add", errors, out);
  }
  if (const json* remove = r.raw("remove")) {
    if (!remove->is_array()) {
      r.error("remove", "must be a list of header names");
    } else {
      for (size_t i = 0; i < remove->size(); ++i) {
        const json& n = (*remove)[i];
        if (!n.is_string() || !valid_header_name(n.get<std::string>()))
          errors.add(path + ".remove[" + std::to_string(i) + "]", "must be a header name");
        else
          out.push_back({HeaderEdit::Op::Remove, n.get<std::string>(), ""});
      }
    }
  }
  if (const json* set = r.raw("set"))
    read_map(*set, HeaderEdit::Op::Set, path + ".set", errors, out);
  r.finish();
  return out;
}

HeaderTemplates read_header_templates(const config::json& value, const std::string& path,
                                      config::Errors& errors) {
  HeaderTemplates out;
  if (!value.is_object()) {
    errors.add(path, "must be an object of header name to value");
    return out;
  }
  for (auto it = value.begin(); it != value.end(); ++it) {
    std::string text = it->is_string() ? it->get<std::string>() : it->is_number() ? it->dump() : "";
    if (!valid_header_name(it.key()) || !(it->is_string() || it->is_number()) ||
        !valid_header_value(text))
      errors.add(path + "." + it.key(), "must be a header name with a one-line string value");
    else
      out.emplace_back(it.key(), VarTemplate(text));
  }
  return out;
}

}  // namespace portico::plugins
