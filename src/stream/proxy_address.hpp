// A socket endpoint as the PROXY protocol builders take it (proxy_protocol.hpp stays free of
// sockets): for the headers sent to backends by the stream proxy and tlv-bridge.
#pragma once

#include "core/asio.hpp"
#include "stream/proxy_protocol.hpp"

namespace portico::stream {

inline ProxyAddress proxy_address(const Endpoint& ep) {
  auto a = ep.address();
  if (a.is_v4()) return ProxyAddress::v4(a.to_v4().to_bytes(), ep.port());
  return ProxyAddress::v6(a.to_v6().to_bytes(), ep.port());
}

}  // namespace portico::stream
