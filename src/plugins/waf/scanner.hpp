// One request's WAF scan: the head targets (path, query, chosen headers, cookies) and the body,
// whole or in chunks as it streams, each decoded (normalizer.hpp) and matched against the
// policy's Vectorscan database in one pass. The answer: the first blocking rule that matched,
// and the log-only rules that did.
#pragma once

#include <hs/hs.h>

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "plugins/waf/normalizer.hpp"
#include "plugins/waf/policy.hpp"

namespace portico::plugins::waf {

struct Hit {
  uint32_t rule = 0;  // index into Policy::rules()
  Target target = Target::Uri;
};

// How a body is decoded: form-urlencoded as a form, application/json and */*+json as JSON,
// anything else percent-decoded, unless its first non-blank byte is '{' or '[': then as JSON
// too, since apps json_decode(php://input) whatever the Content-Type says.
Decoding body_decoding(std::string_view content_type, std::string_view body_start);

// Lives for one request (or one phase of it) on the worker thread that made it; the policy must
// outlive it. Allocates nothing, except Vectorscan's stream state when a body is fed in chunks.
// Every scan call returns false once the request is blocked; later calls then do nothing.
class Scanner {
 public:
  explicit Scanner(const Policy& policy) : policy_(policy) {}
  ~Scanner();
  Scanner(const Scanner&) = delete;
  Scanner& operator=(const Scanner&) = delete;

  // The head. `raw_path` and `raw_query` as received (the query without '?'); decoding is ours.
  bool scan_uri(std::string_view raw_path);
  bool scan_query(std::string_view raw_query);
  // Any request header: Cookie is scanned as target `cookies`, names in the policy's `headers`
  // as target `headers`, the rest ignored. Call it for every header, in order.
  bool scan_header(std::string_view name, std::string_view value);

  // Batching the head: between begin_head() and end_head(), scan_uri/scan_query/scan_header only
  // decode and collect; end_head() scans everything in one Vectorscan call (a call costs about
  // a thousand instructions however short the value, so one per value was most of the cost).
  // Values are joined with '\n' and a match counts for the target its last byte falls in.
  void begin_head();
  bool end_head();

  // The body in one piece (at most max_body() bytes are looked at).
  bool scan_body(std::string_view content_type, std::string_view body);
  // Or streamed: begin, feed chunks as they arrive (each byte decoded and scanned once, nothing
  // kept but a few bytes of an unfinished escape), end. Bytes past max_body() are ignored;
  // end_body() is implied when the limit is reached.
  void begin_body(std::string_view content_type);
  bool feed_body(std::string_view chunk);
  bool end_body();

  bool blocked() const { return blocked_; }
  // The rule that blocked (nullptr if none) and where it matched.
  const Rule* blocking_rule() const { return blocked_ ? &policy_.rules()[block_.rule] : nullptr; }
  Target blocking_target() const { return block_.target; }
  // Log-only rules that matched, each once, in match order (at most kMaxLogged are kept; every
  // match is counted in Policy::matches regardless).
  static constexpr size_t kMaxLogged = 8;
  std::span<const Hit> logged() const { return {logged_.data(), logged_count_}; }
  // A Vectorscan error (out of memory): the request could not be scanned. Fail closed.
  bool failed() const { return failed_; }

 private:
  static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                      void* self);
  bool scan_value(std::string_view raw, Decoding decoding, Target target);
  Target target_at(unsigned long long end) const;
  bool scan_decoded(std::string_view text, Target target);
  bool scan_stream(std::string_view text);
  void close_stream(bool report);
  hs_scratch_t* scratch();

  const Policy& policy_;
  Target current_ = Target::Uri;
  bool batching_ = false;
  bool batched_ = false;  // the scan in progress is the batched head
  bool blocked_ = false;
  bool failed_ = false;
  Hit block_;
  std::array<Hit, kMaxLogged> logged_{};
  size_t logged_count_ = 0;

  // Streamed body.
  enum class BodyState : uint8_t { None, Started, Open, Done };
  BodyState body_state_ = BodyState::None;
  bool sniff_json_ = false;  // not JSON by its type: look at the first non-blank byte
  size_t body_seen_ = 0;
  hs_stream_t* stream_ = nullptr;
  Normalizer body_decoder_;
};

}  // namespace portico::plugins::waf
