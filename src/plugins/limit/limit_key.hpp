// The `key` / `key_type` pair the limit-* plugins share (APISIX): a variable name ("remote_addr",
// "http_x_user"), a combination ("$remote_addr $http_x_user"), or a constant.
#pragma once

#include <string>
#include <vector>

#include "config/field_reader.hpp"
#include "plugins/context.hpp"

namespace portico::plugins {

class LimitKey {
 public:
  // Reads key_type (var | var_combination | constant, default var) and key (default
  // remote_addr).
  static LimitKey read(config::ObjectReader& r);
  // The key for this request, into `out`. A var that is empty falls back to remote_addr
  // (APISIX), so clients without the header still share a limit by address.
  void extract(const Context& ctx, std::string& out) const;

 private:
  enum class Type { Var, Combination, Constant } type_ = Type::Var;
  std::string key_ = "remote_addr";
  struct Piece {
    bool is_var;
    std::string text;
  };
  std::vector<Piece> pieces_;  // var_combination, split at compile time
};

}  // namespace portico::plugins
