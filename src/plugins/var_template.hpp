// Values with variables, as APISIX writes them in plugin configs ("$remote_addr",
// "${ssl_client_s_dn}", "\$" for a literal dollar): parsed once with the config, filled in per
// request from Context::var (an unknown or absent variable is empty).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace portico::plugins {

class Context;

class VarTemplate {
 public:
  explicit VarTemplate(std::string_view text);
  bool has_vars() const { return has_vars_; }
  // The text with its variables' values; CR, LF and NUL from a value are dropped (the result
  // goes into a header).
  std::string render(const Context& ctx) const;

 private:
  struct Piece {
    std::string text;  // literal text, or a variable's name
    bool is_var = false;
  };
  std::vector<Piece> pieces_;
  bool has_vars_ = false;
};

}  // namespace portico::plugins
