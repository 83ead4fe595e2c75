// proxy-rewrite (APISIX priority 1008, rewrite): changes what is sent upstream: the uri (fixed,
// or regex_uri with RE2 captures), method, Host and headers.
#include <re2/re2.h>

#include "core/hex.hpp"
#include "plugins/context.hpp"
#include "plugins/header_config.hpp"
#include "plugins/plugin.hpp"
#include "plugins/regex_rewrite.hpp"
#include "plugins/var_template.hpp"

namespace portico::plugins {
namespace {

const char* const kMethods[] = {"GET",     "POST",   "PUT",       "DELETE", "PATCH", "HEAD",
                                "OPTIONS", "TRACE",  "MKCOL",     "COPY",   "MOVE",  "PROPFIND",
                                "LOCK",    "UNLOCK", "PROPPATCH", "CONNECT"};

class ProxyRewrite final : public Plugin {
 public:
  std::optional<std::string> uri;
  std::unique_ptr<RE2> regex;
  std::string replacement;  // RE2 rewrite syntax (\1), converted from APISIX's $1
  std::optional<std::string> method;
  std::optional<std::string> host;
  std::vector<HeaderEdit> headers;
  // Per header edit: its value's variables ("$remote_addr", APISIX), or null for a fixed value.
  std::vector<std::shared_ptr<const VarTemplate>> templates;

  static std::string safe_encode(std::string_view path) {
    std::string out;
    out.reserve(path.size());
    for (char ch : path) {
      auto c = static_cast<unsigned char>(ch);
      if (c <= 0x20 || c >= 0x7f ||
          std::string_view("\"#<>\\^`{|}").find(ch) != std::string_view::npos) {
        out += '%';
        out += hex::kUpperDigits[c >> 4];
        out += hex::kUpperDigits[c & 15];
      } else {
        out += ch;
      }
    }
    return out;
  }

  Step rewrite(Context& ctx) const override {
    const http::RequestHead& r = *ctx.req;
    if (uri || regex) {
      std::string path;
      if (uri) {
        path = *uri;
      } else {
        path.assign(ctx.path);
        // APISIX (ngx.re.sub): the first match is replaced; no match leaves the uri alone.
        RE2::Replace(&path, *regex, replacement);
        // The path was percent-decoded: encoded again (APISIX's uri_safe_encode), or a client's
        // %0d%0a or %20 would split the request line sent upstream.
        path = safe_encode(path);
      }
      // APISIX: the request's query follows, after '&' when the new uri has a query of its own.
      if (!r.query.empty()) {
        path += path.find('?') == std::string::npos ? '?' : '&';
        path += r.query;
      }
      ctx.upstream.target = std::move(path);
    }
    if (method) ctx.upstream.method = *method;
    if (host) ctx.upstream.host = *host;
    for (size_t i = 0; i < headers.size(); ++i) {
      ctx.upstream.headers.push_back(headers[i]);
      if (templates[i]) ctx.upstream.headers.back().value = templates[i]->render(ctx);
    }
    return Step::Continue;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<ProxyRewrite>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  if (auto uri = r.string("uri")) {
    if (uri->empty() || uri->front() != '/' || !valid_header_value(*uri) ||
        uri->find(' ') != std::string::npos)
      r.error("uri", "must start with '/' and contain no spaces or control characters");
    else
      p->uri = *uri;
  }
  if (const json* re = r.raw("regex_uri")) {
    if (!re->is_array() || re->size() != 2 || !(*re)[0].is_string() || !(*re)[1].is_string()) {
      r.error("regex_uri", "must be [regex, replacement]");
    } else {
      p->regex = std::make_unique<RE2>((*re)[0].get<std::string>(), RE2::Quiet);
      p->replacement = nginx_rewrite_to_re2((*re)[1].get<std::string>());
      std::string why;
      if (!p->regex->ok())
        errors.add(r.child_path("regex_uri") + "[0]", p->regex->error());
      else if (!p->regex->CheckRewriteString(p->replacement, &why))
        errors.add(r.child_path("regex_uri") + "[1]", why);
    }
  }
  if (p->uri && p->regex) r.error("uri", "use either uri or regex_uri, not both");
  if (auto m = r.string("method")) {
    bool known = false;
    for (const char* k : kMethods) known = known || *m == k;
    if (!known)
      r.error("method", "unknown method \"" + *m + "\"");
    else
      p->method = *m;
  }
  if (auto h = r.string("host")) {
    if (h->empty() || !valid_header_value(*h))
      r.error("host", "must be a host name");
    else
      p->host = *h;
  }
  if (const json* h = r.raw("headers"))
    p->headers = read_header_edits(*h, r.child_path("headers"), errors);
  for (const HeaderEdit& edit : p->headers) {
    auto t = std::make_shared<const VarTemplate>(edit.value);
    p->templates.push_back(t->has_vars() && edit.op != HeaderEdit::Op::Remove ? t : nullptr);
  }
  r.ignore("use_real_request_uri_unsafe");
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& proxy_rewrite_plugin() {
  static const PluginType type{"proxy-rewrite", 1008, &create};
  return type;
}

}  // namespace portico::plugins
