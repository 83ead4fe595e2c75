// The `waf` plugin's compiled config: built-in rule sets plus user rules, compiled once into
// Vectorscan databases (one block-mode database of every rule, one streaming database of the
// body rules), immutable and shared by every worker. Scanning is in scanner.hpp.
#pragma once

#include <hs/hs.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/field_reader.hpp"
#include "plugins/waf/thread_scratch.hpp"

namespace portico::plugins::waf {

// Where in a request a rule looks. Bits, so a rule can name several.
enum class Target : uint8_t { Uri = 1, Args = 2, Headers = 4, Cookies = 8, Body = 16 };
inline constexpr uint8_t kAllTargets = 31;
std::string_view target_name(Target target);  // "uri", "args", "headers", "cookies", "body"

enum class Action : uint8_t { Block, Log };

struct Rule {
  std::string id;
  std::string pattern;
  uint8_t targets = kAllTargets;  // Target bits
  Action action = Action::Block;  // already `log` for every rule when the policy's mode is log
  bool caseless = true;
  int config_index = -1;  // position in the config's `rules`; -1: from a built-in set
  // Built-in rules: more patterns reported as this rule. Vectorscan compiles an alternation of
  // unrelated forms as one automaton, many times slower than the forms apart.
  std::vector<std::string> more_patterns;
};

class Policy {
 public:
  // Defaults, documented in docs/waf.md.
  static constexpr int64_t kDefaultMaxBody = 64 * 1024;
  static constexpr int64_t kMaxMaxBody = 16 * 1024 * 1024;

  // Validates `conf` (errors named under `path`, e.g. `plugins.waf.rules[2].pattern: ...`) and
  // compiles it; nullptr when there were errors. Identical configs share one compiled policy
  // (Vectorscan compiles take milliseconds; a thousand routes with the same WAF take one).
  // Config-compile time only (takes a process-wide lock).
  static std::shared_ptr<const Policy> compile(const config::json& conf, const std::string& path,
                                               config::Errors& errors);

  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;
  ~Policy();

  const std::vector<Rule>& rules() const { return rules_; }
  // Bytes of a request body scanned (0: none). Bytes past it are not looked at.
  size_t max_body() const { return max_body_; }
  // Whether the plugin should read the body at all: max_body > 0 and some rule targets it.
  bool scans_body() const { return stream_db_ != nullptr; }
  // `oversize_body: reject` (the default): a body that scans_body() would not see whole is
  // refused, since the bytes past max_body could carry anything (a JSON body padded with
  // blanks). `pass`: its first max_body bytes are scanned and the rest goes through.
  bool rejects_oversize_body() const { return reject_oversize_ && scans_body(); }
  // `mode: log`: nothing is refused; matches are only logged and counted.
  bool log_only() const { return log_only_; }
  // Whether some rule looks at `target` (callers may skip the work for a target nobody scans).
  bool scans(Target target) const { return (targets_ & static_cast<uint8_t>(target)) != 0; }
  // Whether a header of this name is scanned as target `headers` (case-insensitive).
  bool scans_header(std::string_view name) const;

  // Requests each rule matched (blocked or logged) since this policy was compiled, all
  // workers together; index as in rules().
  uint64_t matches(size_t rule_index) const {
    return counters_[rule_index].load(std::memory_order_relaxed);
  }

 private:
  friend class Scanner;
  Policy() = default;
  void count_match(uint32_t rule_index) const {
    counters_[rule_index].fetch_add(1, std::memory_order_relaxed);
  }

  std::vector<Rule> rules_;
  std::vector<std::string> headers_;  // lower case
  size_t max_body_ = kDefaultMaxBody;
  bool reject_oversize_ = true;
  bool log_only_ = false;
  uint8_t targets_ = 0;
  hs_database_t* block_db_ = nullptr;   // every rule; head targets and whole bodies
  hs_database_t* stream_db_ = nullptr;  // body rules; bodies fed in chunks. Null: no body scan
  std::shared_ptr<const ScratchPrototype> scratch_;
  // Mutable through const: counting is the one thing a shared, compiled policy changes.
  std::unique_ptr<std::atomic<uint64_t>[]> counters_;
};

}  // namespace portico::plugins::waf
