// mocking (APISIX priority 10900, access): answers with a made-up response instead of the
// upstream, so client teams can work against an API before it exists (or while it is down):
// `response_example` as written (with variables), or a JSON body generated from
// `response_schema`. An optional delay is a timer.
#include "plugins/context.hpp"
#include "plugins/header_config.hpp"
#include "plugins/plugin.hpp"
#include "plugins/var_template.hpp"

namespace portico::plugins {
namespace {

// A sample of a JSON-schema-like description: each property's `example` when it has one, else a
// fixed value of its type (APISIX draws random ones; fixed ones make client tests repeatable).
json sample_of(const json& schema, int depth = 0) {
  if (!schema.is_object() || depth > 32) return nullptr;
  if (auto e = schema.find("example"); e != schema.end()) return *e;
  // `type` may be a list (["string", "null"]): its first name.
  std::string type = schema.contains("properties") ? "object" : "string";
  if (auto t = schema.find("type"); t != schema.end()) {
    if (t->is_string())
      type = t->get<std::string>();
    else if (t->is_array() && !t->empty() && t->front().is_string())
      type = t->front().get<std::string>();
  }
  if (type == "object") {
    json out = json::object();
    if (auto props = schema.find("properties"); props != schema.end() && props->is_object())
      for (auto it = props->begin(); it != props->end(); ++it)
        out[it.key()] = sample_of(*it, depth + 1);
    return out;
  }
  if (type == "array") {
    json out = json::array();
    if (auto items = schema.find("items"); items != schema.end())
      out.push_back(sample_of(*items, depth + 1));
    return out;
  }
  if (type == "integer" || type == "number") return 0;
  if (type == "boolean") return true;
  if (type == "null") return nullptr;
  return "string";
}

class Mocking final : public Plugin {
 public:
  int status = 200;
  std::string content_type = "application/json;charset=utf8";
  std::optional<VarTemplate> example;
  std::string generated;  // from response_schema
  HeaderTemplates headers;
  bool mock_header = true;
  double delay = 0;

  bool waits_in_access() const override { return delay > 0; }

  Step access(Context& ctx) const override {
    for (const auto& [name, value] : headers)
      ctx.response_headers.push_back({HeaderEdit::Op::Add, name, value.render(ctx)});
    if (mock_header)
      ctx.response_headers.push_back(
          {HeaderEdit::Op::Set, "X-Mock-By", "Portico/" PORTICO_VERSION});
    ctx.respond(status, example ? example->render(ctx) : generated, content_type);
    return Step::Respond;
  }

  Task<Step> access_async(Context& ctx) const override {
    Timer timer(co_await asio::this_coro::executor);
    timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(delay * 1000)));
    co_await timer.async_wait(await_ec);
    co_return access(ctx);
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<Mocking>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  // (A 1xx is no final answer: the client would wait for one.)
  p->status = static_cast<int>(r.integer_or("response_status", 200, 200, 599));
  p->content_type = r.string_or("content_type", p->content_type);
  std::string media = p->content_type.substr(0, p->content_type.find(';'));
  if (media != "application/json" && media != "text/plain" && media != "text/html" &&
      media != "application/xml" && media != "text/xml")
    r.error("content_type",
            "must be application/json, text/plain, text/html, application/xml "
            "or text/xml (parameters allowed)");
  else if (!valid_header_value(p->content_type))
    r.error("content_type", "must be one line");
  if (auto example = r.string("response_example")) p->example.emplace(*example);
  const json* schema = r.raw("response_schema");
  if (schema && !schema->is_object()) r.error("response_schema", "must be an object");
  if (!p->example && !schema) errors.add(path, "needs response_example or response_schema");
  if (!p->example && schema && schema->is_object()) {
    if (media != "application/json" && media != "text/plain")
      r.error("response_schema",
              "generates JSON: use content_type application/json or "
              "text/plain, or write response_example");
    p->generated = sample_of(*schema).dump();
  }
  if (const json* h = r.raw("response_headers"))
    p->headers = read_header_templates(*h, r.child_path("response_headers"), errors);
  p->mock_header = r.boolean_or("with_mock_header", true);
  p->delay = static_cast<double>(r.integer_or("delay", 0, 0, 3600));
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& mocking_plugin() {
  static const PluginType type{"mocking", 10900, &create};
  return type;
}

}  // namespace portico::plugins
