// file-logger (APISIX priority 399, log): each request's entry (log_entry.hpp) as one JSON line
// appended to a file. Lines go through the access log's writer thread, one per file shared by
// every route that names it, so a slow disk never stalls a worker; the file is opened when the
// config is loaded, so a path that cannot be written is a config error.
#include <stdexcept>

#include "core/access_log.hpp"
#include "metrics/series_counters.hpp"
#include "plugins/limit/scoped_table.hpp"
#include "plugins/log/log_entry.hpp"

namespace portico::plugins {
namespace {

class FileLogger final : public LoggerPlugin {
 public:
  std::shared_ptr<AccessLogWriter> file;

 protected:
  void write(Context&, std::string e) const override {
    e += '\n';
    if (!file->submit(e))
      if (auto* series = metrics::SeriesCounters::current())
        series->add("portico_file_logger_dropped_total",
                    "file-logger lines dropped: 64 MiB were waiting for the disk", {});
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<FileLogger>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  std::string file = r.string_or("path", "");
  if (file.empty() || file == "off" || file == "-")
    r.error("path", file.empty() ? "is required"
                                 : "must name a file (for stdout, use the access log: log.access)");
  p->plugin_name = "file-logger";
  read_log_entry_config(r, p->entry);
  r.finish();
  if (errors.size() != before) return nullptr;
  try {
    p->file = scoped_table<AccessLogWriter>("file-logger " + file, file);
  } catch (const std::exception& e) {
    errors.add(r.child_path("path"), e.what());
    return nullptr;
  }
  return p;
}

}  // namespace

const PluginType& file_logger_plugin() {
  static const PluginType type{"file-logger", 399, &create, nullptr, false, true};
  return type;
}

}  // namespace portico::plugins
