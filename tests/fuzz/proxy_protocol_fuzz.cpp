// libFuzzer target: the PROXY protocol parser must never crash, read out of bounds or wait
// forever, whatever bytes arrive; and it must agree with itself as bytes trickle in (the HTTP
// listener re-parses its growing buffer after every read and relies on that): once a prefix is
// Done, every longer input is Done with the same header; once a prefix is an Error, every longer
// input is one too. Parsed addresses must survive a rebuild with the v1 and v2 builders.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "stream/proxy_protocol.hpp"

using namespace portico::stream;

namespace {

void check_round_trip(const ProxyEndpoints& e) {
  for (const std::string& built : {build_proxy_v1(e), build_proxy_v2(e)}) {
    ProxyParseResult r = parse_proxy_header(built);
    if (r.status != ProxyParseStatus::Done || r.header.length != built.size() ||
        !r.header.endpoints || !(*r.header.endpoints == e))
      __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ProxyParseLimits limits;
  limits.max_v2_length = 512 + (size ? data[0] : 0);  // vary the limit a little

  ProxyParseStatus previous = ProxyParseStatus::NeedMore;
  ProxyHeader done;
  for (size_t n = 0; n <= size; ++n) {
    std::string prefix(in.substr(0, n));  // its own allocation, so ASan sees over-reads
    ProxyParseResult r = parse_proxy_header(prefix, limits);
    if (previous == ProxyParseStatus::Error && r.status != ProxyParseStatus::Error)
      __builtin_trap();
    if (previous == ProxyParseStatus::Done &&
        (r.status != ProxyParseStatus::Done || r.header.length != done.length ||
         r.header.endpoints != done.endpoints))
      __builtin_trap();
    if (r.status == ProxyParseStatus::Error && r.error.empty()) __builtin_trap();
    if (r.status == ProxyParseStatus::NeedMore && n >= limits.max_v2_length) __builtin_trap();
    if (r.status == ProxyParseStatus::Done) {
      const ProxyHeader& h = r.header;
      if (h.length == 0 || h.length > n || h.tlv_offset + h.tlv_length > h.length ||
          (h.version == 1 && h.length > kProxyV1MaxLength) ||
          (h.version == 2 && h.length > limits.max_v2_length))
        __builtin_trap();
      if (previous != ProxyParseStatus::Done) {
        done = h;
        for (int type = 0; type < 256; type += 17) {
          auto value = find_proxy_tlv(prefix, h, static_cast<uint8_t>(type));
          if (value && (value->data() < prefix.data() + h.tlv_offset ||
                        value->data() + value->size() > prefix.data() + h.length))
            __builtin_trap();
        }
        if (h.endpoints) check_round_trip(*h.endpoints);
      }
    }
    previous = r.status;
  }
  return 0;
}
