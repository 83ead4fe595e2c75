// tcp-logger (APISIX priority 405, log) and udp-logger (400): each request's entry
// (log_entry.hpp) goes to a log collector (Logstash, Fluentd, Vector) in batches
// (batch_processor.hpp): the entry itself when batch_max_size is 1, else a JSON array. TCP: one
// connection per batch, TLS if asked, closed once written. UDP: one datagram per batch, from a
// socket of its own.
#include <boost/asio/ip/udp.hpp>

#include "core/name_lookup.hpp"
#include "http/service_call.hpp"
#include "plugins/log/batch_processor.hpp"
#include "plugins/log/log_entry.hpp"

namespace portico::plugins {
namespace {

using UdpSocket = asio::basic_datagram_socket<asio::ip::udp, Executor>;
constexpr size_t kMaxDatagram = 65507;

struct Collector {
  std::string host;
  uint16_t port = 0;
  double timeout = 1;
  bool single = false;  // batch_max_size 1
};

class TcpSink final : public BatchSink {
 public:
  Collector to;
  bool tls = false;
  std::string sni;  // tls_options: the name in the handshake (the certificate is not verified)

  Task<std::string> send(const std::vector<std::string>& entries) const override {
    co_return co_await http::send_to_service(
        to.host, to.port, tls, false, join_entries(entries, to.single, false), to.timeout, sni);
  }
};

class UdpSink final : public BatchSink {
 public:
  Collector to;

  Task<std::string> send(const std::vector<std::string>& entries) const override {
    std::string data = join_entries(entries, to.single, false);
    if (data.size() > kMaxDatagram)
      co_return "the batch (" + std::to_string(data.size()) +
          " bytes) does not fit a datagram: lower batch_max_size";
    NameLookup names = co_await lookup_name(to.host, to.timeout);
    if (names.addresses.empty()) co_return names.error.empty() ? "no address" : names.error;
    asio::ip::udp::endpoint peer(names.addresses.front(), to.port);
    UdpSocket socket(co_await asio::this_coro::executor);
    error_code ec;
    socket.open(peer.protocol(), ec);
    if (!ec) socket.send_to(asio::buffer(data), peer, 0, ec);  // a datagram does not wait
    if (ec) co_return "cannot send: " + ec.message();
    co_return std::string();
  }
};

void read_collector(config::ObjectReader& r, Collector& to, double timeout_unit,
                    int64_t default_timeout) {
  to.host = r.string_or("host", "");
  if (to.host.empty()) r.error("host", "is required");
  auto port = r.integer("port", 1, 65535);
  if (!port && !r.has("port")) r.error("port", "is required");
  to.port = static_cast<uint16_t>(port.value_or(0));
  to.timeout =
      static_cast<double>(r.integer_or("timeout", default_timeout, 1, 3600000)) * timeout_unit;
}

std::shared_ptr<const Plugin> finish(config::ObjectReader& r, Errors& errors, size_t before,
                                     std::shared_ptr<BatchingLogger> p,
                                     std::shared_ptr<BatchSink> sink, Collector& to,
                                     const char* name, const char* batch_name) {
  p->plugin_name = name;
  read_log_entry_config(r, p->entry);
  BatchSettings batch = read_batch_settings(r, batch_name);
  to.single = batch.max_size == 1;
  r.finish();
  if (errors.size() != before) return nullptr;
  p->batches = std::make_shared<BatchProcessor>(std::move(batch), std::move(sink), name);
  return p;
}

std::shared_ptr<const Plugin> create_tcp(const json& conf, const Scope&, const std::string& path,
                                         Errors& errors) {
  auto sink = std::make_shared<TcpSink>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  read_collector(r, sink->to, 0.001, 1000);  // timeout in milliseconds, as APISIX's
  sink->tls = r.boolean_or("tls", false);
  sink->sni = r.string_or("tls_options", "");
  Collector& to = sink->to;
  return finish(r, errors, before, std::make_shared<BatchingLogger>(), sink, to, "tcp-logger",
                "tcp logger");
}

std::shared_ptr<const Plugin> create_udp(const json& conf, const Scope&, const std::string& path,
                                         Errors& errors) {
  auto sink = std::make_shared<UdpSink>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  read_collector(r, sink->to, 1, 3);  // seconds, as APISIX's
  Collector& to = sink->to;
  return finish(r, errors, before, std::make_shared<BatchingLogger>(), sink, to, "udp-logger",
                "udp logger");
}

}  // namespace

const PluginType& tcp_logger_plugin() {
  static const PluginType type{"tcp-logger", 405, &create_tcp, nullptr, false, true};
  return type;
}

const PluginType& udp_logger_plugin() {
  static const PluginType type{"udp-logger", 400, &create_udp, nullptr, false, true};
  return type;
}

}  // namespace portico::plugins
