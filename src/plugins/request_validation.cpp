// request-validation (APISIX priority 2800, rewrite and body): checks the request's headers
// (`header_schema`, over the headers as names in lower case to values, a list for a header sent
// twice) and body (`body_schema`, over the JSON body, or the form's fields when the body is
// application/x-www-form-urlencoded) against JSON Schemas compiled once with the config
// (schema/json_schema.hpp). A request that fails gets `rejected_code` (400) with
// `rejected_msg`, or the reason, and never reaches the upstream.
#include "core/log.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"
#include "plugins/request_json.hpp"
#include "plugins/schema/json_schema.hpp"

namespace portico::plugins {
namespace {

constexpr size_t kMaxDepth = 128;

// Deeper nesting than any API needs is refused before parsing: comparing such values (enum,
// uniqueItems) would recurse as deep.
bool shallow(std::string_view text) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

bool is_form(std::string_view content_type) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  return http::iequals(media, "application/x-www-form-urlencoded");
}

class RequestValidation final : public Plugin {
 public:
  std::shared_ptr<const JsonSchema> header_schema, body_schema;
  int rejected_code = 400;
  std::optional<std::string> rejected_msg;
  size_t max_body = 1 << 20;

  Step rewrite(Context& ctx) const override {
    const http::RequestHead& r = *ctx.req;
    if (header_schema) {
      if (auto why = header_schema->check(headers_json(r)); !why.empty()) return reject(ctx, why);
    }
    if (body_schema) {
      if (!r.chunked && r.content_length <= 0)
        return reject(ctx, "the request has no body to validate");
      // Which one the upstream reads is its choice: the body could pass as JSON here and be
      // read as a form there.
      size_t types = 0;
      for (const auto& h : r.headers) types += http::iequals(h.name, "content-type");
      if (types > 1) return reject(ctx, "the request has more than one Content-Type");
      if (r.content_length > static_cast<int64_t>(max_body)) {
        ctx.respond_error(413, "request body larger than request-validation reads (max_body " +
                                   std::to_string(max_body) + ")");
        return Step::Respond;
      }
    }
    return Step::Continue;
  }

  size_t body_limit() const override { return body_schema ? max_body : 0; }

  Step body(Context& ctx, std::string_view body) const override {
    if (!body_schema) return Step::Continue;
    json value;
    if (is_form(ctx.header("content-type"))) {
      value = args_json(body);  // ngx.decode_args
    } else {                    // JSON, whatever the type says, as APISIX
      if (!shallow(body)) return reject(ctx, "the JSON body is nested too deeply");
      value = json::parse(body, nullptr, false);
      if (value.is_discarded()) return reject(ctx, "the body is not valid JSON");
    }
    if (auto why = body_schema->check(value); !why.empty()) return reject(ctx, why);
    return Step::Continue;
  }

 private:
  Step reject(Context& ctx, const std::string& why) const {
    log::info("request-validation: refused request from " + ctx.client_ip + " to " +
              log::one_line(ctx.req->target, 200) + ": " + log::one_line(why, 300));
    ctx.respond(rejected_code, rejected_msg ? *rejected_msg : why, "text/plain; charset=utf-8");
    return Step::Respond;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<RequestValidation>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  if (const json* s = r.raw("header_schema"))
    p->header_schema = JsonSchema::compile(*s, r.child_path("header_schema"), errors);
  if (const json* s = r.raw("body_schema"))
    p->body_schema = JsonSchema::compile(*s, r.child_path("body_schema"), errors);
  if (!r.has("header_schema") && !r.has("body_schema"))
    errors.add(path, "needs header_schema or body_schema");
  p->rejected_code = static_cast<int>(r.integer_or("rejected_code", 400, 200, 599));
  if (auto msg = r.string("rejected_msg")) {
    if (msg->empty() || msg->size() > 256) r.error("rejected_msg", "must be 1 to 256 characters");
    p->rejected_msg = std::move(*msg);
  }
  p->max_body = static_cast<size_t>(r.size_or("max_body", 1 << 20, 1, 64 << 20));
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& request_validation_plugin() {
  static const PluginType type{"request-validation", 2800, &create};
  return type;
}

}  // namespace portico::plugins
