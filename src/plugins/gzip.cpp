// gzip (APISIX priority 995, header_filter + body_filter): compresses upstream responses for
// clients that accept gzip, as nginx's gzip module (which APISIX's plugin turns on): JSON for
// mobile clients on slow links is a few times smaller. The body is read whole (up to 1 MiB) and
// compressed in one go on the worker (milliseconds at most); a longer one goes out as it came.
#include <zlib.h>

#include <algorithm>
#include <cstdlib>

#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

constexpr size_t kMaxCompressed = 1024 * 1024;

std::string_view media_type(std::string_view content_type) {
  std::string_view t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t;
}

// The q-value of one Accept-Encoding item ("gzip;q=0.5"); 1 without one.
double q_value(std::string_view params) {
  while (!params.empty()) {
    size_t semi = params.find(';');
    std::string_view p = params.substr(0, semi);
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    while (!p.empty() && p.front() == ' ') p.remove_prefix(1);
    if (p.size() >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
      return std::strtod(std::string(p.substr(2)).c_str(), nullptr);
  }
  return 1;
}

// Whether Accept-Encoding takes gzip: `gzip` with a q-value above 0, or else `*` with one.
bool accepts_gzip(std::string_view accept) {
  double gzip = -1, any = -1;
  while (!accept.empty()) {
    size_t comma = accept.find(',');
    std::string_view item = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = item.substr(0, semi);
    while (!coding.empty() && coding.front() == ' ') coding.remove_prefix(1);
    while (!coding.empty() && coding.back() == ' ') coding.remove_suffix(1);
    double q = semi == std::string_view::npos ? 1 : q_value(item.substr(semi + 1));
    if (http::iequals(coding, "gzip"))
      gzip = q;
    else if (coding == "*")
      any = q;
  }
  return gzip >= 0 ? gzip > 0 : any > 0;
}

// zlib's state, ended whatever happens.
struct Deflater {
  z_stream z{};
  bool ready = false;
  explicit Deflater(int level) {
    ready = deflateInit2(&z, level, Z_DEFLATED, 15 + 16 /* gzip wrapper */, 8,
                         Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~Deflater() {
    if (ready) deflateEnd(&z);
  }
};

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
    std::string_view type, etag;
    for (const auto& h : r->headers) {
      if (http::iequals(h.name, "content-encoding")) return;  // encoded already
      if (http::iequals(h.name, "content-type")) type = media_type(h.value);
      if (http::iequals(h.name, "etag")) etag = h.value;
    }
    if (!all_types && std::none_of(types.begin(), types.end(),
                                   [&](const std::string& t) { return http::iequals(t, type); }))
      return;
    ctx.note(this)[0] = 1;
    // As nginx: the compressed form is another representation. A strong validator or byte
    // ranges of the identity form would let a client splice one into the other.
    if (!etag.empty() && !etag.starts_with("W/"))
      ctx.response_headers.push_back({HeaderEdit::Op::Set, "ETag", "W/" + std::string(etag)});
    ctx.response_headers.push_back({HeaderEdit::Op::Remove, "Accept-Ranges", ""});
    if (vary) ctx.response_headers.push_back({HeaderEdit::Op::Add, "Vary", "Accept-Encoding"});
  }

  size_t response_body_limit(const Context& ctx) const override {
    const auto* wanted = ctx.find_note(this);
    return wanted && (*wanted)[0] == 1 ? kMaxCompressed : 0;
  }

  bool encodes_body() const override { return true; }

  void body_filter(Context& ctx, std::string& body) const override {
    if (static_cast<int64_t>(body.size()) < min_length) return;  // a body of unknown length
    // Encoded once: gzip on a global rule and a route, or a Content-Encoding another plugin set.
    for (const HeaderEdit& e : ctx.response_headers)
      if (e.op != HeaderEdit::Op::Remove && http::iequals(e.name, "content-encoding")) return;
    Deflater d(level);
    if (!d.ready) return;
    std::string out(deflateBound(&d.z, static_cast<uLong>(body.size())), '\0');
    d.z.next_in = reinterpret_cast<Bytef*>(body.data());
    d.z.avail_in = static_cast<uInt>(body.size());
    d.z.next_out = reinterpret_cast<Bytef*>(out.data());
    d.z.avail_out = static_cast<uInt>(out.size());
    if (deflate(&d.z, Z_FINISH) != Z_STREAM_END) return;  // sent as it came
    out.resize(d.z.total_out);
    body.swap(out);
    ctx.response_headers.push_back({HeaderEdit::Op::Set, "Content-Encoding", "gzip"});
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
