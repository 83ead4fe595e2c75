#include "plugins/waf/normalizer.hpp"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace portico::plugins::waf {

namespace {

int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Lead bytes of the overlong UTF-8 forms that can encode ASCII (C0/C1 xx, E0 80-81 xx,
// F0 80 80-81 xx). Other lead bytes start valid characters and need no work.
bool is_overlong_lead(uint8_t c) { return (c & 0xFE) == 0xC0 || c == 0xE0 || c == 0xF0; }

// Index of the first byte some stage must look at, or n.
size_t next_special(const uint8_t* p, size_t n, const std::array<uint8_t, 4>& sp) {
  size_t i = 0;
#ifdef __SSE2__
  const __m128i s0 = _mm_set1_epi8(static_cast<char>(sp[0]));
  const __m128i s1 = _mm_set1_epi8(static_cast<char>(sp[1]));
  const __m128i s2 = _mm_set1_epi8(static_cast<char>(sp[2]));
  const __m128i s3 = _mm_set1_epi8(static_cast<char>(sp[3]));
  const __m128i mask_fe = _mm_set1_epi8(static_cast<char>(0xFE));
  const __m128i lead_c0 = _mm_set1_epi8(static_cast<char>(0xC0));
  const __m128i lead_e0 = _mm_set1_epi8(static_cast<char>(0xE0));
  const __m128i lead_f0 = _mm_set1_epi8(static_cast<char>(0xF0));
  // Bit k set: byte at+k is special.
  auto special_bits = [&](size_t at) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + at));
    __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, s0), _mm_cmpeq_epi8(v, s1)),
                               _mm_or_si128(_mm_cmpeq_epi8(v, s2), _mm_cmpeq_epi8(v, s3)));
    if (_mm_movemask_epi8(v) != 0) {  // some byte >= 0x80: look for overlong leads too
      hit = _mm_or_si128(hit, _mm_cmpeq_epi8(_mm_and_si128(v, mask_fe), lead_c0));
      hit = _mm_or_si128(hit, _mm_or_si128(_mm_cmpeq_epi8(v, lead_e0), _mm_cmpeq_epi8(v, lead_f0)));
    }
    return _mm_movemask_epi8(hit);
  };
  for (; i + 16 <= n; i += 16)
    if (int bits = special_bits(i)) return i + __builtin_ctz(bits);
  // The last partial block: one more load, ending at the last byte. The bytes it shares with
  // the blocks before are known clean, so its first set bit is past them (a byte-by-byte tail
  // cost more than the whole vector loop on a typical path or query).
  if (i < n && n >= 16) {
    const size_t at = n - 16;
    const int bits = special_bits(at);
    return bits ? at + __builtin_ctz(bits) : n;
  }
#endif
  for (; i < n; ++i) {
    const uint8_t c = p[i];
    if (c == sp[0] || c == sp[1] || c == sp[2] || c == sp[3] || is_overlong_lead(c)) return i;
  }
  return n;
}

}  // namespace

void Normalizer::reset(Decoding decoding) {
  decoding_ = decoding;
  busy_ = 0;
  stage_count_ = 0;
  auto add = [&](Kind kind) { stages_[stage_count_++] = Stage{.kind = kind}; };
  specials_ = specials_of(decoding);
  if (decoding == Decoding::Raw) {
    add(Kind::Fold);
    return;
  }
  const bool form = decoding == Decoding::Form || decoding == Decoding::JsonForm;
  if (decoding == Decoding::Json || decoding == Decoding::JsonForm) add(Kind::JsonUnescape);
  for (int round = 0; round < kPercentRounds; ++round) {
    // `+` means space only to the first decoder; a `+` made by decoding %2B is a plus.
    add(round == 0 && form ? Kind::PercentPlus : Kind::Percent);
    add(Kind::Fold);
  }
}

std::array<uint8_t, 4> Normalizer::specials_of(Decoding decoding) {
  // NUL fills the unused slots: it is special anyway (dropped by Fold).
  switch (decoding) {
    case Decoding::Raw:
      return {0, 0, 0, 0};
    case Decoding::Url:
      return {'%', 0, 0, 0};
    case Decoding::Form:
      return {'%', '+', 0, 0};
    case Decoding::Json:
      return {'%', '\\', 0, 0};
    case Decoding::JsonForm:
      return {'%', '\\', '+', 0};
  }
  return {'%', '\\', '+', 0};
}

bool Normalizer::is_clean(std::string_view in, Decoding decoding) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(in.data());
  return next_special(bytes, in.size(), specials_of(decoding)) == in.size();
}

std::string_view Normalizer::decode(std::string_view in, std::string& out) {
  // Starts idle (a whole value), so `in` comes back only when it is clean and nothing is held.
  std::string_view view = feed(in, out);
  if (busy_ == 0) return view;
  finish(out);
  return out;
}

std::string_view Normalizer::feed(std::string_view in, std::string& out) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(in.data());
  if (busy_ == 0 && next_special(bytes, in.size(), specials_) == in.size()) return in;
  out.clear();
  feed_into(in, out);
  return out;
}

void Normalizer::finish(std::string& out) {
  // Stage order matters: what stage s releases may complete or start an escape in stage s+1.
  for (int s = 0; s < stage_count_; ++s) flush_held(s, out);
}

void Normalizer::feed_into(std::string_view in, std::string& out) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(in.data());
  size_t i = 0;
  const size_t n = in.size();
  while (i < n) {
    const size_t j = i + next_special(bytes + i, n - i, specials_);
    if (j > i) push_run(0, in.substr(i, j - i), out);
    if (j == n) break;
    push(0, bytes[j], out);
    i = j + 1;
  }
}

// `run` holds no byte special to any stage, so an idle stage passes it on untouched.
void Normalizer::push_run(int s, std::string_view run, std::string& out) {
  while (!run.empty() && stages_[s].state != 0) {
    push(s, static_cast<uint8_t>(run.front()), out);
    run.remove_prefix(1);
  }
  if (run.empty()) return;
  if (busy_ == 0 || s + 1 == stage_count_)
    out.append(run);
  else
    push_run(s + 1, run, out);
}

void Normalizer::push(int s, uint8_t c, std::string& out) {
  if (s == stage_count_) {
    out.push_back(static_cast<char>(c));
    return;
  }
  switch (stages_[s].kind) {
    case Kind::JsonUnescape:
      step_json(s, c, out);
      break;
    case Kind::Percent:
    case Kind::PercentPlus:
      step_percent(s, c, out);
      break;
    case Kind::Fold:
      step_fold(s, c, out);
      break;
  }
}

void Normalizer::flush_held(int s, std::string& out) {
  Stage& st = stages_[s];
  const auto held = st.held;
  const int len = st.held_len;
  idle(st);
  for (int i = 0; i < len; ++i) push(s + 1, held[i], out);
}

void Normalizer::emit_code_point(int s, uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    push(s + 1, static_cast<uint8_t>(cp), out);
  } else if (cp < 0x800) {
    push(s + 1, static_cast<uint8_t>(0xC0 | (cp >> 6)), out);
    push(s + 1, static_cast<uint8_t>(0x80 | (cp & 0x3F)), out);
  } else {
    push(s + 1, static_cast<uint8_t>(0xE0 | (cp >> 12)), out);
    push(s + 1, static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F)), out);
    push(s + 1, static_cast<uint8_t>(0x80 | (cp & 0x3F)), out);
  }
}

// States: 1 after '\', 2..5 expecting the 1st..4th hex digit of \uXXXX.
void Normalizer::step_json(int s, uint8_t c, std::string& out) {
  Stage& st = stages_[s];
  if (st.state == 0) {
    if (c != '\\') return push(s + 1, c, out);
    enter(st, 1);
    st.held[0] = c;
    st.held_len = 1;
    return;
  }
  if (st.state == 1) {
    uint8_t plain = 0;
    switch (c) {
      case '"':
      case '\\':
      case '/':
        plain = c;
        break;
      case 'b':
        plain = '\b';
        break;
      case 'f':
        plain = '\f';
        break;
      case 'n':
        plain = '\n';
        break;
      case 'r':
        plain = '\r';
        break;
      case 't':
        plain = '\t';
        break;
      case 'u':
        st.held[st.held_len++] = c;
        st.state = 2;
        st.value = 0;
        return;
      default:
        break;
    }
    if (plain != 0) {
      idle(st);
      return push(s + 1, plain, out);
    }
  } else if (int h = hex_value(c); h >= 0) {
    st.value = st.value * 16 + h;
    st.held[st.held_len++] = c;
    if (st.state++ < 5) return;
    const uint32_t cp = st.value;
    idle(st);
    return emit_code_point(s, cp, out);
  }
  // Not a valid escape: its bytes go on as they came, and `c` is looked at afresh.
  flush_held(s, out);
  push(s, c, out);
}

// States: 1 after '%', 2 after '%' and one hex digit, 3..6 expecting the digits of %uXXXX.
void Normalizer::step_percent(int s, uint8_t c, std::string& out) {
  Stage& st = stages_[s];
  const int h = hex_value(c);
  switch (st.state) {
    case 0:
      if (c == '%') {
        enter(st, 1);
        st.held[0] = c;
        st.held_len = 1;
        return;
      }
      return push(s + 1, c == '+' && st.kind == Kind::PercentPlus ? ' ' : c, out);
    case 1:
      if (h >= 0 || c == 'u' || c == 'U') {
        st.held[st.held_len++] = c;
        st.state = h >= 0 ? 2 : 3;
        st.value = h >= 0 ? h : 0;
        return;
      }
      break;
    case 2:
      if (h >= 0) {
        const auto byte = static_cast<uint8_t>(st.value * 16 + h);
        idle(st);
        return push(s + 1, byte, out);
      }
      break;
    default:  // 3..6
      if (h >= 0) {
        st.value = st.value * 16 + h;
        st.held[st.held_len++] = c;
        if (st.state++ < 6) return;
        const uint32_t cp = st.value;
        idle(st);
        return emit_code_point(s, cp, out);
      }
      break;
  }
  flush_held(s, out);
  push(s, c, out);
}

// Folds overlong UTF-8 encodings of ASCII (%c0%af is '/') and drops NUL bytes, including the
// overlong NUL C0 80. A sequence that turns out not to be an overlong ASCII form passes on as
// it came, so valid UTF-8 (emoji start with F0) is never changed.
void Normalizer::step_fold(int s, uint8_t c, std::string& out) {
  Stage& st = stages_[s];
  if (st.state == 0) {
    if (c == 0) return;
    if (!is_overlong_lead(c)) return push(s + 1, c, out);
    enter(st, 1);
    st.held[0] = c;
    st.held_len = 1;
    st.need = (c & 0xFE) == 0xC0 ? 1 : c == 0xE0 ? 2 : 3;
    st.value = (c & 0xFE) == 0xC0 ? (c & 0x1F) : 0;
    return;
  }
  if ((c & 0xC0) == 0x80) {
    st.value = (st.value << 6) | (c & 0x3F);
    st.held[st.held_len++] = c;
    --st.need;
    if (st.need == 0) {
      const auto ascii = static_cast<uint8_t>(st.value);
      idle(st);
      if (ascii != 0) push(s + 1, ascii, out);
    } else if ((st.value << (6 * st.need)) >= 0x80) {
      flush_held(s, out);  // a real character, not an overlong ASCII form
    }
    return;
  }
  flush_held(s, out);
  push(s, c, out);
}

}  // namespace portico::plugins::waf
