// portico: start | validate | version | route-explain
#include <cstring>
#include <iostream>
#include <string>

#include "config/node_config.hpp"
#include "config/snapshot.hpp"
#include "core/log.hpp"
#include "core/server.hpp"
#include "router/path_normalizer.hpp"
#include "router/route_explain.hpp"

// jemalloc options (read by the allocator at start-up): a background thread hands freed memory
// back to the kernel within seconds even while workers idle, so a burst of connections leaves
// no lasting RSS behind.
extern "C" const char* malloc_conf;
const char* malloc_conf = "background_thread:true,dirty_decay_ms:2000,muzzy_decay_ms:2000";

namespace {

constexpr const char* kDefaultConfig = "conf/config.yaml";

void usage() {
  std::cerr << "usage:\n"
               "  portico start [-c FILE]        run in the foreground (default -c "
            << kDefaultConfig
            << ")\n"
               "  portico validate [-c FILE]     check the config and the routes it names\n"
               "  portico route-explain [-c FILE] --method M --host H --uri U [--remote-addr A]\n"
               "  portico version\n";
}

struct Args {
  std::string config = kDefaultConfig;
  std::string method = "GET", host, uri = "/", remote_addr;
  bool ok = true;
};

Args parse_args(int argc, char** argv, int first) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) {
        std::cerr << k << " needs a value\n";
        a.ok = false;
        return;
      }
      out = argv[++i];
    };
    if (k == "-c" || k == "--config")
      value(a.config);
    else if (k == "--method")
      value(a.method);
    else if (k == "--host")
      value(a.host);
    else if (k == "--uri")
      value(a.uri);
    else if (k == "--remote-addr")
      value(a.remote_addr);
    else {
      std::cerr << "unknown argument " << k << "\n";
      a.ok = false;
    }
  }
  return a;
}

// Loads the node config and the routes it names, printing every error. nullptr on errors.
std::unique_ptr<portico::config::Snapshot> load_all(const std::string& path,
                                                    portico::config::NodeConfig& node) {
  portico::config::Errors errors;
  node = portico::config::load_node_config(path, errors);
  if (!errors.empty()) {
    std::cerr << path << ": " << errors.size() << " error(s)\n" << errors.to_string();
    return nullptr;
  }
  portico::config::set_edge_function_limits(node.edge_functions);
  if (node.provider == "etcd") {
    std::cerr << path << ": config.provider is etcd: the routes live in etcd; ask a running node"
              << " (Admin API GET /apisix/admin/routes, /apisix/admin/routes/match?...)\n";
    return nullptr;
  }
  auto snap = portico::config::load_snapshot(node.routes_file, node.http, 1, errors);
  if (!snap) {
    std::cerr << node.routes_file << ": " << errors.size() << " error(s)\n" << errors.to_string();
    return nullptr;
  }
  return snap;
}

int cmd_start(const Args& a) {
  portico::config::Errors errors;
  auto node = portico::config::load_node_config(a.config, errors);
  if (!errors.empty()) {
    std::cerr << a.config << ": " << errors.size() << " error(s)\n" << errors.to_string();
    return 1;
  }
  try {
    portico::log::configure(node.error_log, node.log_level);
    portico::Server server(std::move(node));
    return server.run();
  } catch (const std::exception& e) {
    portico::log::error(std::string("start-up failed: ") + e.what());
    return 1;
  }
}

int cmd_validate(const Args& a) {
  portico::config::NodeConfig node;
  portico::config::Errors errors;
  node = portico::config::load_node_config(a.config, errors);
  if (errors.empty() && node.provider == "etcd") {
    std::cout << a.config << ": ok (routes come from etcd; values there are validated as they"
              << " arrive, see docs/operations.md)\n";
    return 0;
  }
  auto snap = load_all(a.config, node);
  if (!snap) return 1;
  std::cout << a.config << ": ok (" << snap->routes.size() << " routes, " << snap->upstream_count
            << " upstreams)\n";
  return 0;
}

int cmd_route_explain(const Args& a) {
  portico::config::NodeConfig node;
  auto snap = load_all(a.config, node);
  if (!snap) return 1;
  portico::router::ExplainQuery q{a.method, a.host, a.uri, a.remote_addr};
  portico::router::Explanation e;
  std::string error;
  if (!portico::router::explain_query(snap->router, q, e, error)) {
    std::cerr << error << "\n";
    return 1;
  }
  std::cout << portico::router::format_explanation(snap->router, e);
  return e.winner == portico::router::RouteIndex::kNoMatch ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage();
    return 64;
  }
  std::string cmd = argv[1];
  if (cmd == "version" || cmd == "--version") {
    std::cout << "portico " << PORTICO_VERSION << "\n";
    return 0;
  }
  Args a = parse_args(argc, argv, 2);
  if (!a.ok) {
    usage();
    return 64;
  }
  if (cmd == "start") return cmd_start(a);
  if (cmd == "validate") return cmd_validate(a);
  if (cmd == "route-explain") return cmd_route_explain(a);
  usage();
  return 64;
}
