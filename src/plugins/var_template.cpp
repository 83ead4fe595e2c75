#include "plugins/var_template.hpp"

#include <cctype>

#include "plugins/context.hpp"

namespace portico::plugins {
namespace {

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

}  // namespace

VarTemplate::VarTemplate(std::string_view text) {
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) pieces_.push_back({std::move(literal), false});
    literal.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size() && text[i + 1] == '$') {  // "\$": a dollar
      literal += '$';
      ++i;
      continue;
    }
    if (c != '$' || i + 1 >= text.size()) {
      literal += c;
      continue;
    }
    size_t start = i + 1;
    bool braced = text[start] == '{';
    if (braced) ++start;
    size_t end = start;
    while (end < text.size() && name_char(text[end])) ++end;
    if (end == start || (braced && (end >= text.size() || text[end] != '}'))) {
      literal += c;  // not a variable: kept as written
      continue;
    }
    flush();
    pieces_.push_back({std::string(text.substr(start, end - start)), true});
    has_vars_ = true;
    i = braced ? end : end - 1;
  }
  flush();
}

std::string VarTemplate::render(const Context& ctx) const {
  std::string out;
  for (const Piece& p : pieces_) {
    if (!p.is_var) {
      out += p.text;
      continue;
    }
    for (char c : ctx.var(p.text))
      if (c != '\r' && c != '\n' && c != '\0') out += c;
  }
  return out;
}

}  // namespace portico::plugins
