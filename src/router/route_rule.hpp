// What a route asks of a request (hosts, uris, methods, client addresses, priority), compiled
// for fast checks, and the request facts it is matched against.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace portico::router {

class VarsExpr;
class VarSource;

// An IPv4 or IPv6 network. IPv4 is stored as an IPv4-mapped IPv6 address so one compare works.
struct Cidr {
  std::array<uint8_t, 16> bytes{};
  int bits = 128;
  static bool parse(std::string_view text, Cidr& out);
  bool contains(const std::array<uint8_t, 16>& addr) const;
};

// Client address as 16 bytes (IPv4-mapped for IPv4), see Cidr.
std::array<uint8_t, 16> address_bytes(std::string_view ip);

uint32_t method_bit(std::string_view method);  // unknown methods share one bit

struct RouteRule {
  std::string id;
  std::vector<std::string> hosts;  // lower-case; "*.example.com" wildcards; empty = any host
  std::vector<std::string> uris;   // "/exact", "/prefix/*", "/user/:id"
  uint32_t methods = 0;            // bit set; 0 = any method
  std::vector<std::string> method_names;
  std::vector<Cidr> remote_addrs;  // empty = any client
  std::vector<std::string> remote_addr_texts;
  std::shared_ptr<const VarsExpr> vars;  // null: no `vars` condition
  int priority = 0;
  size_t order = 0;  // source position: the last tie-breaker
  bool enabled = true;
};

struct MatchInput {
  std::string_view method;
  std::string_view host;  // as sent; port and case are normalised by the index
  std::string_view path;
  std::array<uint8_t, 16> remote{};
  bool has_remote = false;
  const VarSource* vars = nullptr;  // for routes with `vars`; none: such routes do not match
};

// Host without port or trailing dot, lower-cased into `buf` when needed.
std::string_view normalize_host(std::string_view host, char* buf, size_t buf_size);

}  // namespace portico::router
