// referer-restriction (APISIX priority 2990, access): lets through only requests whose Referer
// names a listed host (whitelist), or refuses listed hosts (blacklist). `*.example.com` matches
// any host ending in `.example.com`.
#include <algorithm>

#include "plugins/context.hpp"
#include "plugins/ip_lists.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

// The host of an absolute http(s) or scheme-relative URL, lower-cased; empty when the value is
// not one (APISIX then treats the Referer as missing).
std::string referer_host(std::string_view url) {
  if (url.size() >= 6 && http::iequals(url.substr(0, 6), "https:"))  // schemes: any case
    url.remove_prefix(6);
  else if (url.size() >= 5 && http::iequals(url.substr(0, 5), "http:"))
    url.remove_prefix(5);
  if (!url.starts_with("//")) return {};
  url.remove_prefix(2);
  std::string_view authority = url.substr(0, url.find_first_of("/?#"));
  if (size_t at = authority.rfind('@'); at != std::string_view::npos)  // user:password@
    authority.remove_prefix(at + 1);
  std::string_view host;
  if (authority.starts_with("[")) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return {};
    host = authority.substr(0, close + 1);
  } else {
    host = authority.substr(0, authority.find(':'));
  }
  if (host.ends_with(".")) host.remove_suffix(1);  // "evil.com." is evil.com
  std::string out(host);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

struct HostPattern {
  std::string text;  // lower-case; for a wildcard, the suffix after '*'
  bool suffix = false;
  bool matches(std::string_view host) const { return suffix ? host.ends_with(text) : host == text; }
};

class RefererRestriction final : public Plugin {
 public:
  std::vector<HostPattern> hosts;
  bool whitelist = false;
  bool bypass_missing = false;
  std::string message = "Your referer host is not allowed";

  Step access(Context& ctx) const override {
    std::string host = referer_host(ctx.header("referer"));
    bool refuse;
    if (host.empty())
      refuse = !bypass_missing;
    else
      refuse = whitelist != std::any_of(hosts.begin(), hosts.end(),
                                        [&](const HostPattern& p) { return p.matches(host); });
    if (!refuse) return Step::Continue;
    ctx.respond_message(403, message);
    return Step::Respond;
  }
};

bool valid_pattern(std::string_view p) {
  if (p.starts_with("*")) p.remove_prefix(1);
  return !p.empty() && std::all_of(p.begin(), p.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '.' || c == '_';
  });
}

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<RefererRestriction>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  ChosenList list = read_chosen_list(r, "whitelist", "blacklist", "host");
  p->whitelist = list.first;
  for (size_t i = 0; i < list.items.size(); ++i) {
    const std::string& host = list.items[i];
    if (!valid_pattern(host)) {
      errors.add(r.child_path(list.field) + "[" + std::to_string(i) + "]",
                 "must be a host name, optionally starting with '*' (\"*.example.com\")");
      continue;
    }
    HostPattern h;
    h.suffix = host.front() == '*';
    h.text = host.substr(h.suffix ? 1 : 0);
    std::transform(h.text.begin(), h.text.end(), h.text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    p->hosts.push_back(std::move(h));
  }
  p->bypass_missing = r.boolean_or("bypass_missing", false);
  p->message = read_message(r, p->message);
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& referer_restriction_plugin() {
  static const PluginType type{"referer-restriction", 2990, &create};
  return type;
}

}  // namespace portico::plugins
