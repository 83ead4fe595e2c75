// The WAF's decoding before matching: what an attacker may wrap a payload in (percent-encoding,
// repeated; `+`; %uXXXX; JSON string escapes; overlong UTF-8; NUL bytes) is undone in one pass,
// streaming, so a body can be decoded chunk by chunk with escapes split across chunks.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace portico::plugins::waf {

enum class Decoding : uint8_t {
  Url,       // percent-decoding (also %uXXXX), repeated: paths, headers
  Form,      // Url plus `+` as space in the first round: query strings, cookies, form bodies
  Json,      // JSON string escapes (\uXXXX, \/, \n...), then as Url: JSON bodies
  JsonForm,  // JSON string escapes, then as Form: a JSON body sent as a form (read both ways)
  Raw,       // only overlong UTF-8 folding and NUL removal: other bodies (multipart, text)
};

// Rounds of percent-decoding: catches single, double and triple encoding (%25252e).
inline constexpr int kPercentRounds = 3;

// A pipeline of small state machines: [JSON unescape] -> (percent-decode -> fold overlong UTF-8
// and drop NULs) x kPercentRounds. A byte that no stage treats specially (the vast majority)
// skips the pipeline: runs of them are found with SIMD and copied whole, and input without any
// such byte is returned as is, with no copy at all. Case is left alone: patterns are compiled
// HS_FLAG_CASELESS, which costs nothing at scan time.
class Normalizer {
 public:
  explicit Normalizer(Decoding decoding = Decoding::Url) { reset(decoding); }

  void reset(Decoding decoding);

  // True when nothing in `in` needs decoding (decode() would return `in` itself): checks the
  // bytes without setting up a Normalizer's stages, the common case for paths and queries.
  static bool is_clean(std::string_view in, Decoding decoding);
  Decoding decoding() const { return decoding_; }

  // Decodes a whole value. Returns `in` itself when nothing in it needs decoding, else the
  // decoded bytes written into `out` (cleared first).
  std::string_view decode(std::string_view in, std::string& out);

  // Streaming: decodes the next chunk. Bytes of an escape left unfinished at the end are held
  // back (a few bytes, inside this object) and completed by the next chunk or by finish().
  // Returns `in` itself when it needs no decoding and nothing is held, else `out`.
  std::string_view feed(std::string_view in, std::string& out);
  // Releases whatever is held, decoded as far as it goes; appends to `out` (not cleared).
  void finish(std::string& out);

 private:
  enum class Kind : uint8_t { JsonUnescape, Percent, PercentPlus, Fold };
  struct Stage {
    Kind kind;
    uint8_t state = 0;     // 0: idle; otherwise inside an escape (meaning depends on kind)
    uint8_t held_len = 0;  // raw bytes of the escape so far, replayed if it turns out invalid
    uint8_t need = 0;      // Fold: continuation bytes still expected
    uint32_t value = 0;    // code point or byte being assembled
    std::array<uint8_t, 8> held{};
  };
  static constexpr int kMaxStages = 1 + 2 * kPercentRounds;

  static std::array<uint8_t, 4> specials_of(Decoding decoding);
  void feed_into(std::string_view in, std::string& out);
  void push(int stage, uint8_t c, std::string& out);
  void push_run(int stage, std::string_view run, std::string& out);
  void flush_held(int stage, std::string& out);
  void emit_code_point(int stage, uint32_t cp, std::string& out);
  void step_json(int stage, uint8_t c, std::string& out);
  void step_percent(int stage, uint8_t c, std::string& out);
  void step_fold(int stage, uint8_t c, std::string& out);
  void idle(Stage& s) {
    if (s.state != 0) --busy_;
    s.state = 0;
    s.held_len = 0;
  }
  void enter(Stage& s, uint8_t state) {
    if (s.state == 0) ++busy_;
    s.state = state;
  }

  Decoding decoding_ = Decoding::Url;
  int stage_count_ = 0;
  int busy_ = 0;  // stages inside an escape; 0 lets clean runs go straight to the output
  std::array<Stage, kMaxStages> stages_{};
  std::array<uint8_t, 4> specials_{};  // bytes that start an escape, besides 0xC0/C1/E0/F0
};

}  // namespace portico::plugins::waf
