// What a `tlv` stream route does with each frame (its `protocol.conf`): framing, timeouts, local
// heartbeat answers, message rate limits, command allow/deny lists and command sub-routes.
// Parsed once per config change into an immutable object every connection of the route shares.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/field_reader.hpp"
#include "config/objects.hpp"
#include "stream/tlv_framing.hpp"

namespace portico::stream {

// Command values and inclusive ranges ("0x4000-0x4fff"), sorted and merged.
class CmdSet {
 public:
  struct Range {
    uint32_t first;
    uint32_t last;
  };
  bool empty() const { return ranges_.empty(); }
  bool contains(uint32_t cmd) const;
  void add(uint32_t first, uint32_t last);  // keeps the set sorted and merged
  const std::vector<Range>& ranges() const { return ranges_; }

 private:
  std::vector<Range> ranges_;
};

// A command value: a number or a "0x..." string (nullopt when neither or over 32 bits).
std::optional<uint32_t> read_cmd(const config::json& value);

// A list of numbers, "0x4001" strings and "first-last" ranges. Errors name the item.
CmdSet parse_cmd_set(const config::json& value, const std::string& path, config::Errors& errors);

// The leaky bucket of limit-req: `rate` frames per second drain the excess, `burst` frames of
// excess are tolerated. 0 = no limit. Units: 1000 = one frame (per second for the rate).
struct FrameRate {
  int64_t rate_milli = 0;
  int64_t burst_milli = 0;
  bool enabled() const { return rate_milli > 0; }
};

// What happens to a frame refused at the edge: an answer (cmd + 1, the same seq, `status`) or
// nothing.
struct Refusal {
  bool reply = true;
  uint32_t status = 0;
};

// frames whose cmd is in `cmds` go to `upstream` (inline) or the upstream named `upstream_id`;
// hash_on_to: a chash upstream picks its node by the frame's `to` user id.
struct TlvSubRouteSpec {
  CmdSet cmds;
  std::shared_ptr<const config::Upstream> upstream;
  std::string upstream_id;
  bool hash_on_to = false;
};

struct TlvProtocolConfig {
  TlvFraming framing;
  double idle_timeout = 180;  // seconds without a byte from the client: closed
  double stall_timeout = 30;  // seconds a frame may stay incomplete: closed
  uint32_t heartbeat_cmd = 0x9001;
  bool heartbeat_local = false;  // answer heartbeat_cmd with heartbeat_cmd + 1 at the edge
  FrameRate per_connection;
  FrameRate per_user;  // keyed by the frame's `from` (frames with from = 0 are not counted)
  Refusal rate_refusal{true, 429};
  CmdSet allow;  // empty: every cmd not denied
  CmdSet deny;
  Refusal command_refusal{true, 403};
  std::vector<TlvSubRouteSpec> routes;
  bool send_proxy_protocol = false;
  // Commands named anywhere above (and their replies, cmd + 1): the ones metrics label.
  std::vector<uint32_t> named_cmds;
};

// Reads `protocol.conf` of a tlv stream route (`value` may be null: all defaults).
std::shared_ptr<const TlvProtocolConfig> parse_tlv_protocol(const config::json* value,
                                                            const std::string& path,
                                                            config::Errors& errors);

}  // namespace portico::stream
