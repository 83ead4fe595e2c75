// Route `vars` expressions read the request through this: nginx-style variables (arg_*, http_*,
// cookie_*, uri, host, remote_addr, ...) over the parsed head, without copying it.
#pragma once

#include <string>

#include "http/http_parser.hpp"
#include "router/vars_expr.hpp"

namespace portico::http {

// %XX decoding (invalid escapes are kept as they are); query arguments also turn '+' into ' '.
std::string percent_decode(std::string_view s, bool plus_is_space);

class RequestVars final : public router::VarSource {
 public:
  RequestVars(const RequestHead& req, std::string_view path, std::string_view client_ip,
              uint16_t client_port, uint16_t server_port, bool https = false)
      : req_(req),
        path_(path),
        client_ip_(client_ip),
        client_port_(client_port),
        server_port_(server_port),
        https_(https) {}

  std::optional<std::string_view> get(const router::VarRef& var) const override;
  // Repeated query arguments and headers: any of their values.
  bool has_value(const router::VarRef& var, std::string_view value) const override;

 private:
  std::string_view keep(std::string value) const;

  const RequestHead& req_;
  std::string_view path_;
  std::string_view client_ip_;
  uint16_t client_port_;
  uint16_t server_port_;
  bool https_;
};

}  // namespace portico::http
