// http-logger (APISIX priority 410, log): each request's entry (log_entry.hpp) goes to an HTTP
// or HTTPS log service in batches (batch_processor.hpp), POSTed as a JSON array, or one JSON
// object per line with concat_method new_line. An answer under 400 is success, as in APISIX.
// The send runs on the worker's loop after the response is out: it never delays a request.
#include "http/service_call.hpp"
#include "plugins/header_config.hpp"
#include "plugins/log/batch_processor.hpp"
#include "plugins/log/log_entry.hpp"

namespace portico::plugins {
namespace {

class HttpSink final : public BatchSink {
 public:
  http::ServiceUrl url;
  std::string auth_header;
  double timeout = 3;
  bool verify_tls = false;
  bool new_line = false;  // concat_method
  bool single = false;    // batch_max_size 1: the object itself, as APISIX sends it

  Task<std::string> send(const std::vector<std::string>& entries) const override {
    http::ServiceRequest call;
    call.method = "POST";
    call.timeout = timeout;
    call.verify_tls = verify_tls;
    call.max_body = 1 << 20;
    call.headers.emplace_back("Content-Type", new_line ? "text/plain" : "application/json");
    if (!auth_header.empty()) call.headers.emplace_back("Authorization", auth_header);
    call.body = join_entries(entries, single, new_line);
    http::ServiceAnswer answer = co_await http::call_service(url, call);
    if (answer.status == 0) co_return answer.error.empty() ? "no answer" : answer.error;
    if (answer.status >= 400) co_return "the log server answered " + std::to_string(answer.status);
    co_return std::string();
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<BatchingLogger>();
  auto sink = std::make_shared<HttpSink>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  std::string why;
  std::string uri = r.string_or("uri", "");
  if (uri.empty())
    r.error("uri", "is required");
  else if (auto url = http::parse_service_url(uri, why))
    sink->url = std::move(*url);
  else
    r.error("uri", why);
  sink->auth_header = r.string_or("auth_header", "");
  if (!valid_header_value(sink->auth_header)) r.error("auth_header", "must be one line");
  sink->timeout = static_cast<double>(r.integer_or("timeout", 3, 1, 3600));
  sink->verify_tls = r.boolean_or("ssl_verify", false);
  std::string concat = r.string_or("concat_method", "json");
  if (concat != "json" && concat != "new_line")
    r.error("concat_method", "must be json or new_line");
  sink->new_line = concat == "new_line";
  p->plugin_name = "http-logger";
  read_log_entry_config(r, p->entry);
  BatchSettings batch = read_batch_settings(r, "http logger");
  sink->single = batch.max_size == 1;
  r.finish();
  if (errors.size() != before) return nullptr;
  p->batches = std::make_shared<BatchProcessor>(std::move(batch), std::move(sink), "http-logger");
  return p;
}

}  // namespace

const PluginType& http_logger_plugin() {
  static const PluginType type{"http-logger", 410, &create, nullptr, false, true};
  return type;
}

}  // namespace portico::plugins
