// gzip (APISIX priority 995, header_filter + body_filter): compresses upstream responses for
// clients that accept gzip, as nginx's gzip module (which APISIX's plugin turns on): JSON for
// mobile clients on slow links is a few times smaller. The body is read whole (up to 8 MiB, the
// body_filter limit) and compressed once; a longer one goes out as it came.
#include <zlib.h>

#include <algorithm>
#include <cstdlib>

#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

constexpr size_t kMaxCompressed = 8 * 1024 * 1024;

std::string_view media_type(std::string_view content_type) {
  std::string_view t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t;
}

// Whether Accept-Encoding takes gzip: listed, and not with q=0.
bool accepts_gzip(std::string_view accept) {
  while (!accept.empty()) {
    size_t comma = accept.find(',');
    std::string_view item = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    std::string_view coding = item.substr(0, item.find(';'));
    while (!coding.empty() && coding.back() == ' ') coding.remove_suffix(1);
    if (!http::iequals(coding, "gzip") && coding != "*") continue;
    size_t q = item.find("q=");
    if (q == std::string_view::npos) return true;
    std::string_view value = item.substr(q + 2);
    std::string weight(value.substr(0, value.find_first_of(" ;")));
    return std::strtod(weight.c_str(), nullptr) > 0;
  }
  return false;
}

class Gzip final : public Plugin {
 public:
  bool all_types = false;
  std::vector<std::string> types{"text/html"};
  int64_t min_length = 20;
  int level = 1;
  bool http10 = false;  // http_version 1.0: HTTP/1.0 requests are compressed too
  bool vary = false;

  void header_filter(Context& ctx) const override {
    const http::ResponseHead* r = ctx.response;
    if (!r || ctx.req->method == "HEAD") return;  // an upstream answer with a body
    // nginx's: other statuses (206 ranges, 304) are left alone.
    if (r->status != 200 && r->status != 403 && r->status != 404) return;
    if (ctx.req->minor_version == 0 && !http10) return;
    if (!accepts_gzip(ctx.header("accept-encoding"))) return;
    if (r->content_length >= 0 && (r->content_length < min_length ||
                                   static_cast<uint64_t>(r->content_length) > kMaxCompressed))
      return;
    std::string_view type;
    for (const auto& h : r->headers) {
      if (http::iequals(h.name, "content-encoding")) return;  // encoded already
      if (http::iequals(h.name, "content-type")) type = media_type(h.value);
    }
    if (!all_types && std::none_of(types.begin(), types.end(),
                                   [&](const std::string& t) { return http::iequals(t, type); }))
      return;
    ctx.note(this)[0] = 1;
  }

  size_t response_body_limit(const Context& ctx) const override {
    const auto* wanted = ctx.find_note(this);
    return wanted && (*wanted)[0] == 1 ? kMaxCompressed : 0;
  }

  bool encodes_body() const override { return true; }

  void body_filter(Context& ctx, std::string& body) const override {
    if (static_cast<int64_t>(body.size()) < min_length) return;  // a body of unknown length
    z_stream z{};
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16 /* gzip wrapper */, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
      return;
    std::string out(deflateBound(&z, static_cast<uLong>(body.size())), '\0');
    z.next_in = reinterpret_cast<Bytef*>(body.data());
    z.avail_in = static_cast<uInt>(body.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    int rc = deflate(&z, Z_FINISH);
    out.resize(z.total_out);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) return;  // sent as it came
    body.swap(out);
    ctx.response_headers.push_back({HeaderEdit::Op::Set, "Content-Encoding", "gzip"});
    if (vary) ctx.response_headers.push_back({HeaderEdit::Op::Add, "Vary", "Accept-Encoding"});
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<Gzip>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  if (const json* t = r.raw("types")) {
    if (t->is_string() && t->get<std::string>() == "*") {
      p->all_types = true;
    } else if (t->is_array() && !t->empty()) {
      p->types = r.string_list("types");
    } else {
      r.error("types", "must be \"*\" or a non-empty list of media types");
    }
  }
  p->min_length = r.integer_or("min_length", 20, 1, int64_t{1} << 40);
  p->level = static_cast<int>(r.integer_or("comp_level", 1, 1, 9));
  const json* version = r.raw("http_version");
  if (version &&
      !(version->is_number() && (version->get<double>() == 1.0 || version->get<double>() == 1.1)))
    r.error("http_version", "must be 1.1 or 1.0");
  p->http10 = version && version->get<double>() == 1.0;
  p->vary = r.boolean_or("vary", false);
  r.ignore("buffers");  // nginx's gzip_buffers: the body is compressed in one piece here
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& gzip_plugin() {
  static const PluginType type{"gzip", 995, &create};
  return type;
}

}  // namespace portico::plugins
