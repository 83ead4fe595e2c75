// response-rewrite (APISIX priority 899, header_filter): replaces the status, headers or body
// of the response, the upstream's or a plugin's; with `vars`, only responses they match (e.g.
// [["status", "==", 500]]).
#include <re2/re2.h>

#include "core/base64.hpp"
#include "plugins/context.hpp"
#include "plugins/context_vars.hpp"
#include "plugins/header_config.hpp"
#include "plugins/plugin.hpp"
#include "plugins/regex_rewrite.hpp"

namespace portico::plugins {
namespace {

// Bodies up to this size are rewritten by `filters`; longer ones pass unchanged (logged).
constexpr size_t kMaxFilteredBody = 8 * 1024 * 1024;

struct BodyFilter {
  std::unique_ptr<RE2> regex;
  std::string replace;  // RE2 rewrite syntax
  bool global = false;  // scope "global": every match; "once": the first
};

class ResponseRewrite final : public Plugin {
 public:
  std::optional<int> status;
  std::optional<std::string> body;
  std::vector<HeaderEdit> headers;
  std::vector<BodyFilter> filters;
  std::optional<router::VarsExpr> vars;

  void header_filter(Context& ctx) const override {
    if (vars && !vars->eval(ContextVars(ctx))) return;  // nothing rewritten, body included
    if (status) ctx.response_status = *status;
    if (body) ctx.response_body = *body;
    ctx.response_headers.insert(ctx.response_headers.end(), headers.begin(), headers.end());
    // A compressed upstream body cannot be matched as text: filters leave it alone.
    if (!filters.empty() && ctx.response) {
      bool encoded = false;
      for (const auto& h : ctx.response->headers)
        encoded = encoded || (http::iequals(h.name, "content-encoding") && h.value != "identity");
      ctx.note(this)[0] = encoded ? 0 : 1;
    }
  }

  size_t response_body_limit(const Context& ctx) const override {
    const auto* wants = ctx.find_note(this);
    return wants && (*wants)[0] == 1 ? kMaxFilteredBody : 0;
  }

  void body_filter(Context&, std::string& text) const override {
    for (const BodyFilter& f : filters) {
      if (f.global)
        RE2::GlobalReplace(&text, *f.regex, f.replace);
      else
        RE2::Replace(&text, *f.regex, f.replace);
    }
  }
};

void read_filters(config::ObjectReader& r, std::vector<BodyFilter>& out) {
  const json* list = r.raw("filters");
  if (!list) return;
  if (!list->is_array() || list->empty()) {
    r.error("filters", "must be a non-empty list of {regex, replace, scope, options}");
    return;
  }
  for (size_t i = 0; i < list->size(); ++i) {
    std::string path = r.child_path("filters") + "[" + std::to_string(i) + "]";
    config::ObjectReader fr((*list)[i], path, r.errors());
    auto regex = fr.string("regex");
    auto replace = fr.string("replace");
    std::string scope = fr.string_or("scope", "once");
    std::string options = fr.string_or("options", "jo");
    if (!regex || regex->empty()) fr.error("regex", "is required");
    if (!replace) fr.error("replace", "is required");
    if (scope != "once" && scope != "global") fr.error("scope", "must be once or global");
    fr.finish();
    if (!regex || regex->empty() || !replace) continue;
    RE2::Options opts(RE2::Quiet);
    opts.set_case_sensitive(options.find('i') == std::string::npos);
    BodyFilter f;
    f.regex = std::make_unique<RE2>(*regex, opts);
    f.replace = nginx_rewrite_to_re2(*replace);
    f.global = scope == "global";
    std::string why;
    if (!f.regex->ok())
      r.errors().add(path + ".regex", f.regex->error());
    else if (!f.regex->CheckRewriteString(f.replace, &why))
      r.errors().add(path + ".replace", why);
    else
      out.push_back(std::move(f));
  }
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<ResponseRewrite>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  if (auto s = r.integer("status_code", 200, 598)) p->status = static_cast<int>(*s);
  auto body = r.string("body");
  if (r.boolean_or("body_base64", false) && body) {
    auto decoded = base64_decode(*body, Base64Alphabet::Standard);
    if (!decoded) r.error("body", "is not valid base64 (body_base64 is true)");
    body = decoded.value_or("");
  }
  p->body = body;
  if (const json* h = r.raw("headers"))
    p->headers = read_header_edits(*h, r.child_path("headers"), errors);
  if (const json* v = r.raw("vars")) {
    if (!v->is_array())
      r.error("vars", "must be a list of [variable, operator, value] conditions");
    else
      p->vars = router::VarsExpr::compile(*v, r.child_path("vars"), errors);
  }
  read_filters(r, p->filters);
  if (p->body && !p->filters.empty()) r.error("filters", "use either body or filters, not both");
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
