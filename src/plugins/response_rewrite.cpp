// response-rewrite (APISIX priority 899, header_filter): replaces the status, headers or body
// of the response, the upstream's or a plugin's.
#include "plugins/context.hpp"
#include "plugins/header_config.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

class ResponseRewrite final : public Plugin {
 public:
  std::optional<int> status;
  std::optional<std::string> body;
  std::vector<HeaderEdit> headers;

  void header_filter(Context& ctx) const override {
    if (status) ctx.response_status = *status;
    if (body) ctx.response_body = *body;
    ctx.response_headers.insert(ctx.response_headers.end(), headers.begin(), headers.end());
  }
};

bool decode_base64(const std::string& in, std::string& out) {
  static const std::string chars =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  out.clear();
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    size_t v = chars.find(c);
    if (v == std::string::npos) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return true;
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<ResponseRewrite>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  if (auto s = r.integer("status_code", 200, 598)) p->status = static_cast<int>(*s);
  auto body = r.string("body");
  if (r.boolean_or("body_base64", false) && body) {
    std::string decoded;
    if (!decode_base64(*body, decoded))
      r.error("body", "is not valid base64 (body_base64 is true)");
    body = decoded;
  }
  p->body = body;
  if (const json* h = r.raw("headers"))
    p->headers = read_header_edits(*h, r.child_path("headers"), errors);
  if (r.has("vars")) r.error("vars", "is not supported yet");
  if (r.has("filters")) r.error("filters", "is not supported yet");
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& response_rewrite_plugin() {
  static const PluginType type{"response-rewrite", 899, &create};
  return type;
}

}  // namespace portico::plugins
