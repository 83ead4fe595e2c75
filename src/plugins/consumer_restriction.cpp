// consumer-restriction (APISIX priority 2400, access): who may use a route, by the consumer an
// authentication plugin named (or, on a consumer, by the route or service it calls): a
// blacklist, a whitelist, and methods allowed per name.
#include <algorithm>

#include "plugins/consumers.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"
#include "router/route_rule.hpp"

namespace portico::plugins {
namespace {

enum class Subject { ConsumerName, ConsumerGroupId, ServiceId, RouteId };

struct MethodsFor {
  std::string name;
  uint32_t methods = 0;  // router::method_bit
};

class ConsumerRestriction final : public Plugin {
 public:
  Subject subject = Subject::ConsumerName;
  std::string type_name = "consumer_name";
  std::vector<std::string> blacklist;
  std::optional<std::vector<std::string>> whitelist;
  std::vector<MethodsFor> allowed_by_methods;
  int rejected_code = 403;
  std::string rejected_msg;

  Step access(Context& ctx) const override {
    std::string_view value = subject_of(ctx);
    if (value.empty()) {
      ctx.respond_message(
          401, "The request is rejected, please check the " + type_name + " for this request");
      return Step::Respond;
    }
    auto listed = [&](const std::vector<std::string>& list) {
      return std::find(list.begin(), list.end(), value) != list.end();
    };
    if (listed(blacklist)) return reject(ctx);
    bool whitelisted = whitelist && listed(*whitelist);
    if (whitelist && !whitelisted) return reject(ctx);
    // Names without an entry are not restricted by method (APISIX).
    if (!whitelisted)
      for (const MethodsFor& m : allowed_by_methods)
        if (m.name == value && !(m.methods & router::method_bit(ctx.req->method)))
          return reject(ctx);
    return Step::Continue;
  }

 private:
  std::string_view subject_of(const Context& ctx) const {
    switch (subject) {
      case Subject::ServiceId:
        return ctx.service_id ? std::string_view(*ctx.service_id) : std::string_view();
      case Subject::RouteId:
        return ctx.route_id ? std::string_view(*ctx.route_id) : std::string_view();
      case Subject::ConsumerGroupId:
        return ctx.consumer ? std::string_view(ctx.consumer->group_id) : std::string_view();
      default:
        return ctx.consumer ? std::string_view(ctx.consumer->username) : std::string_view();
    }
  }
  Step reject(Context& ctx) const {
    ctx.respond_message(rejected_code, rejected_msg);
    return Step::Respond;
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<ConsumerRestriction>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  p->type_name = r.string_or("type", "consumer_name");
  if (p->type_name == "service_id")
    p->subject = Subject::ServiceId;
  else if (p->type_name == "route_id")
    p->subject = Subject::RouteId;
  else if (p->type_name == "consumer_group_id")
    p->subject = Subject::ConsumerGroupId;
  else if (p->type_name != "consumer_name")
    r.error("type", "must be consumer_name, consumer_group_id, service_id or route_id");
  bool has_black = r.has("blacklist"), has_white = r.has("whitelist");
  p->blacklist = r.string_list("blacklist");
  if (has_white) p->whitelist = r.string_list("whitelist");
  if (has_black && p->blacklist.empty()) r.error("blacklist", "must list at least one name");
  if (has_white && p->whitelist->empty()) r.error("whitelist", "must list at least one name");
  const json* by_methods = r.raw("allowed_by_methods");
  if (by_methods && !by_methods->is_array())
    r.error("allowed_by_methods", "must be a list of {user, methods}");
  for (size_t i = 0; by_methods && by_methods->is_array() && i < by_methods->size(); ++i) {
    config::ObjectReader m((*by_methods)[i],
                           r.child_path("allowed_by_methods") + "[" + std::to_string(i) + "]",
                           errors);
    MethodsFor entry;
    entry.name = m.string_or("user", "");
    if (entry.name.empty()) m.error("user", "is required");
    std::vector<std::string> methods = m.string_list("methods");
    if (methods.empty()) m.error("methods", "must list at least one method");
    for (const std::string& method : methods) {
      uint32_t bit = router::method_bit(method);
      if (bit == router::method_bit("")) m.error("methods", "unknown method \"" + method + "\"");
      entry.methods |= bit;
    }
    m.finish();
    p->allowed_by_methods.push_back(std::move(entry));
  }
  if (!has_black && !has_white && !by_methods)
    errors.add(path, "needs blacklist, whitelist or allowed_by_methods");
  p->rejected_code = static_cast<int>(r.integer_or("rejected_code", 403, 200, 599));
  p->rejected_msg = r.string_or("rejected_msg", "The " + p->type_name + " is forbidden.");
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

}  // namespace

const PluginType& consumer_restriction_plugin() {
  static const PluginType type{"consumer-restriction", 2400, &create};
  return type;
}

}  // namespace portico::plugins
