#include "plugins/limit/limit_key.hpp"

#include <cctype>

namespace portico::plugins {

LimitKey LimitKey::read(config::ObjectReader& r) {
  LimitKey k;
  std::string type = r.string_or("key_type", "var");
  k.key_ = r.string_or("key", "remote_addr");
  if (type == "var") {
    k.type_ = Type::Var;
  } else if (type == "var_combination") {
    k.type_ = Type::Combination;
    const std::string& s = k.key_;
    size_t i = 0;
    while (i < s.size()) {
      if (s[i] == '$') {
        size_t j = i + 1;
        while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
        if (j == i + 1) {
          r.error("key", "'$' must be followed by a variable name");
          break;
        }
        k.pieces_.push_back({true, s.substr(i + 1, j - i - 1)});
        i = j;
      } else {
        size_t j = s.find('$', i);
        if (j == std::string::npos) j = s.size();
        k.pieces_.push_back({false, s.substr(i, j - i)});
        i = j;
      }
    }
  } else if (type == "constant") {
    k.type_ = Type::Constant;
  } else {
    r.error("key_type", "must be var, var_combination or constant");
  }
  if (k.key_.empty()) r.error("key", "must not be empty");
  return k;
}

void LimitKey::extract(const Context& ctx, std::string& out) const {
  out.clear();
  switch (type_) {
    case Type::Constant:
      out = key_;
      return;
    case Type::Var:
      out.assign(ctx.var(key_));
      break;
    case Type::Combination: {
      bool any = false;
      for (const Piece& p : pieces_) {
        if (!p.is_var) {
          out += p.text;
          continue;
        }
        std::string_view v = ctx.var(p.text);
        any = any || !v.empty();
        out += v;
      }
      if (!any) out.clear();
      break;
    }
  }
  if (out.empty()) out.assign(ctx.client_ip);
}

}  // namespace portico::plugins
