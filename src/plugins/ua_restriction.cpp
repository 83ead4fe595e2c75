// ua-restriction (APISIX priority 2999, access): lets through only User-Agents matching an
// allowlist, or refuses those matching a denylist (RE2 regexes, matched anywhere in the value,
// case-sensitive, as APISIX's).
#include <re2/re2.h>
#include <re2/set.h>

#include "plugins/context.hpp"
#include "plugins/ip_lists.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

std::string_view trimmed(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

class UaRestriction final : public Plugin {
 public:
  std::unique_ptr<RE2::Set> rules;  // one pass over the value for the whole list
  bool allow = false;               // allowlist (else denylist)
  bool bypass_missing = false;
  std::string message = "Not allowed";

  Step access(Context& ctx) const override {
    bool seen = false, matched = false;
    for (const auto& h : ctx.req->headers) {
      if (!http::iequals(h.name, "user-agent")) continue;
      seen = true;
      // Several User-Agent lines: an allowlist needs one match, a denylist refuses on any.
      if (rules->Match(trimmed(h.value), nullptr)) matched = true;
    }
    if (!seen) return bypass_missing ? Step::Continue : refuse(ctx);
    return matched == allow ? Step::Continue : refuse(ctx);
  }

 private:
  Step refuse(Context& ctx) const {
    ctx.respond_message(403, message);
    return Step::Respond;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<UaRestriction>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  ChosenList list = read_chosen_list(r, "allowlist", "denylist", "regex");
  p->allow = list.first;
  RE2::Options options(RE2::Quiet);
  p->rules = std::make_unique<RE2::Set>(options, RE2::UNANCHORED);
  for (size_t i = 0; i < list.items.size(); ++i) {
    const std::string& regex = list.items[i];
    std::string why;
    if (regex.empty() || p->rules->Add(regex, &why) < 0)
      errors.add(r.child_path(list.field) + "[" + std::to_string(i) + "]",
                 regex.empty() ? "must not be empty" : "invalid regex: " + why);
  }
  p->bypass_missing = r.boolean_or("bypass_missing", false);
  p->message = read_message(r, p->message);
  r.finish();
  if (errors.size() == before && !p->rules->Compile())
    r.error(list.field, "the regexes do not fit RE2's memory budget");
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& ua_restriction_plugin() {
  static const PluginType type{"ua-restriction", 2999, &create};
  return type;
}

}  // namespace portico::plugins
