// cors (APISIX priority 4000): answers preflight requests at the gateway and adds the CORS
// headers to responses for allowed origins.
#include <re2/re2.h>

#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

std::string joined(config::ObjectReader& r, const char* key, const char* fallback) {
  const json* v = r.raw(key);
  if (!v) return fallback;
  if (!v->is_string()) {
    r.error(key, "must be a comma-separated string");
    return fallback;
  }
  return v->get<std::string>();
}

class Cors final : public Plugin {
 public:
  std::string allow_origins = "*";
  std::vector<std::string> origin_list;  // allow_origins split at ','
  std::vector<std::unique_ptr<RE2>> origin_regexes;
  std::string allow_methods = "*";
  std::string allow_headers = "*";
  std::string expose_headers;
  int max_age = 5;
  bool allow_credential = false;

  // APISIX answers every OPTIONS request on a cors route at the gateway (preflight or not).
  Step rewrite(Context& ctx) const override {
    if (ctx.req->method == "OPTIONS") {
      ctx.respond(200, "", "");
      return Step::Respond;
    }
    return Step::Continue;
  }

  void header_filter(Context& ctx) const override {
    std::string_view origin = ctx.header("origin");
    std::string allowed;
    if (allow_origins == "*") {  // never with credentials (refused in create)
      allowed = "*";
    } else if (allow_origins == "**") {
      allowed = std::string(origin);  // any origin, named: the explicit opt-in
    } else if (!origin.empty()) {
      for (const auto& o : origin_list)
        if (o == origin) allowed = std::string(origin);
      for (const auto& re : origin_regexes)
        if (allowed.empty() && RE2::FullMatch(re2::StringPiece(origin.data(), origin.size()), *re))
          allowed = std::string(origin);
    }
    if (allowed.empty()) return;
    auto set = [&](const char* name, std::string value) {
      ctx.response_headers.push_back({HeaderEdit::Op::Set, name, std::move(value)});
    };
    set("Access-Control-Allow-Origin", allowed);
    if (allowed != "*") ctx.response_headers.push_back({HeaderEdit::Op::Add, "Vary", "Origin"});
    set("Access-Control-Allow-Methods", method_list());
    std::string_view requested = ctx.header("access-control-request-headers");
    set("Access-Control-Allow-Headers",
        allow_headers == "**" ? std::string(requested) : allow_headers);
    if (!expose_headers.empty()) set("Access-Control-Expose-Headers", expose_headers);
    set("Access-Control-Max-Age", std::to_string(max_age));
    if (allow_credential) set("Access-Control-Allow-Credentials", "true");
  }

 private:
  std::string method_list() const {
    // APISIX: "**" lists every method; "*" is sent as is.
    if (allow_methods == "**") return "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE";
    return allow_methods;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<Cors>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  p->allow_origins = joined(r, "allow_origins", "*");
  p->allow_methods = joined(r, "allow_methods", "*");
  p->allow_headers = joined(r, "allow_headers", "*");
  p->expose_headers = joined(r, "expose_headers", "");
  p->max_age = static_cast<int>(r.integer_or("max_age", 5, -1, 86400 * 365));
  p->allow_credential = r.boolean_or("allow_credential", false);
  std::string_view list = p->allow_origins;
  while (!list.empty()) {
    size_t comma = list.find(',');
    p->origin_list.emplace_back(list.substr(0, comma));
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  auto regexes = r.string_list("allow_origins_by_regex");
  for (size_t i = 0; i < regexes.size(); ++i) {
    auto re = std::make_unique<RE2>(regexes[i], RE2::Quiet);
    if (!re->ok())
      errors.add(r.child_path("allow_origins_by_regex") + "[" + std::to_string(i) + "]",
                 re->error());
    else
      p->origin_regexes.push_back(std::move(re));
  }
  r.ignore("allow_origins_by_metadata");
  r.ignore("timing_allow_origins");
  r.ignore("timing_allow_origins_by_regex");
  // As APISIX: with credentials, "*" would let any site read answers made with the user's
  // cookies. "**" (echo anything) stays the explicit way to ask for that.
  // The defaults count: {allow_credential: true} alone is refused, as in APISIX.
  if (p->allow_credential) {
    std::pair<const char*, const std::string*> fields[] = {{"allow_origins", &p->allow_origins},
                                                           {"allow_methods", &p->allow_methods},
                                                           {"allow_headers", &p->allow_headers},
                                                           {"expose_headers", &p->expose_headers}};
    for (const auto& [field, value] : fields)
      if (*value == "*")
        r.error(field,
                "can not be '*' when allow_credential is true (list what is allowed, "
                "or '**' to allow any)");
  }
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& cors_plugin() {
  static const PluginType type{"cors", 4000, &create};
  return type;
}

}  // namespace portico::plugins
