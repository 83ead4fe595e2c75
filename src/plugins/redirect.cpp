// redirect (APISIX priority 900, rewrite): answers with a redirect instead of proxying: to
// `uri` (with variables), to the path rewritten by `regex_uri`, or from http to https.
#include <re2/re2.h>

#include <algorithm>

#include "config/node_config.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"
#include "plugins/regex_rewrite.hpp"
#include "plugins/var_template.hpp"

namespace portico::plugins {
namespace {

template <class Escaped>
std::string percent_escape(std::string_view s, Escaped escaped) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (escaped(c)) {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// nginx's ngx_escape_uri (NGX_ESCAPE_URI), which APISIX's encode_uri uses: space, '#', '%',
// '?', control bytes and bytes from 0x7f up.
std::string escape_uri(std::string_view s) {
  return percent_escape(s, [](unsigned char c) {
    return c <= 0x20 || c >= 0x7f || c == '#' || c == '%' || c == '?';
  });
}

std::string escape_controls(std::string_view s) {
  return percent_escape(s, [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

class Redirect final : public Plugin {
 public:
  std::optional<VarTemplate> uri;
  std::unique_ptr<RE2> regex;
  std::string replacement;  // RE2 rewrite syntax
  bool http_to_https = false;
  int code = 302;
  bool encode_uri = false;
  bool append_query_string = false;

  Step rewrite(Context& ctx) const override {
    std::string location;
    int status = code;
    if (http_to_https) {
      // A proxy in front that terminated TLS says so (APISIX trusts the header as sent).
      std::string_view scheme = ctx.header("x-forwarded-proto");
      if (scheme.empty()) scheme = ctx.https ? "https" : "http";
      if (scheme != "http") return Step::Continue;
      uint16_t port = config::https_port();
      location.append("https://").append(ctx.var("host"));
      if (port != 443) location.append(":").append(std::to_string(port));
      location.append(ctx.req->target);
      // 301 may turn a POST into a GET; 308 keeps the method and body (RFC 9110 15.4).
      status = ctx.req->method == "GET" || ctx.req->method == "HEAD" ? 301 : 308;
    } else if (uri) {
      location = uri->render(ctx);
    } else if (regex) {
      location.assign(ctx.path);
      if (!RE2::Replace(&location, *regex, replacement)) return Step::Continue;
    } else {
      return Step::Continue;
    }
    if (encode_uri) {
      size_t q = location.find('?');
      std::string escaped = escape_uri(std::string_view(location).substr(0, q));
      if (q != std::string::npos) escaped.append(location, q);
      location = std::move(escaped);
    }
    if (append_query_string) {
      size_t q = ctx.req->target.find('?');
      if (q != std::string_view::npos) {
        location.push_back(location.find('?') == std::string::npos ? '?' : '&');
        location.append(ctx.req->target.substr(q + 1));
      }
    }
    // A decoded path (regex_uri) or a variable may hold control bytes: escaped, so the header
    // stays one line and the redirect keeps its Location.
    if (std::any_of(location.begin(), location.end(),
                    [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
      location = escape_controls(location);
    ctx.response_headers.push_back({HeaderEdit::Op::Set, "Location", std::move(location)});
    ctx.respond(status, "", "");
    return Step::Respond;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<Redirect>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  int given = r.has("uri") + r.has("regex_uri") + r.has("http_to_https");
  if (given != 1) errors.add(path, "needs exactly one of uri, regex_uri and http_to_https");
  if (auto uri = r.string("uri")) {
    if (uri->size() < 2) r.error("uri", "must be at least 2 characters");
    p->uri.emplace(*uri);
  }
  if (const json* re = r.raw("regex_uri")) {
    if (!re->is_array() || re->size() != 2 || !(*re)[0].is_string() || !(*re)[1].is_string()) {
      r.error("regex_uri", "must be [regex, replacement]");
    } else {
      p->regex = std::make_unique<RE2>((*re)[0].get<std::string>(), RE2::Quiet);
      p->replacement = nginx_rewrite_to_re2((*re)[1].get<std::string>());
      std::string why;
      if (!p->regex->ok())
        r.error("regex_uri", "invalid regex: " + p->regex->error());
      else if (!p->regex->CheckRewriteString(p->replacement, &why))
        r.error("regex_uri", "invalid replacement: " + why);
    }
  }
  p->http_to_https = r.boolean_or("http_to_https", false);
  p->code = static_cast<int>(r.integer_or("ret_code", 302, 200, 599));
  p->encode_uri = r.boolean_or("encode_uri", false);
  p->append_query_string = r.boolean_or("append_query_string", false);
  // The https redirect keeps the whole request target, query included.
  if (p->http_to_https && p->append_query_string)
    r.error("append_query_string", "cannot be used with http_to_https");
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& redirect_plugin() {
  static const PluginType type{"redirect", 900, &create};
  return type;
}

}  // namespace portico::plugins
