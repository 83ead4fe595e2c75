#include "plugins/waf/scanner.hpp"

#include <string>
#include <vector>

namespace portico::plugins::waf {

namespace {

// Decoded text of the value being scanned. Per thread, reused: after the first requests it has
// the capacity it needs and decoding allocates nothing. Only used inside one synchronous call.
thread_local std::string decode_buffer;

// The batched head (see Scanner::begin_head): decoded values joined, and where each one ends.
struct HeadPart {
  size_t end;  // offset just past the value's separator
  Target target;
};
thread_local std::string head_text;
thread_local std::vector<HeadPart> head_parts;

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// '{' or '[' first: JSON. 0: blank so far, can't tell yet. Anything else: not JSON.
char first_meaningful(std::string_view s) {
  for (char c : s)
    if (!is_blank(c)) return c;
  return 0;
}

bool looks_like_json(char first) { return first == '{' || first == '['; }

// The first character that means something, past blanks and a UTF-8 byte order mark (which a
// JSON parser skips too).
char json_start(std::string_view s) {
  if (s.starts_with("\xEF\xBB\xBF")) s.remove_prefix(3);
  return first_meaningful(s);
}

}  // namespace

Decoding body_decoding(std::string_view content_type, std::string_view body_start) {
  // What the body looks like counts beside what it says it is: backends that parse JSON whatever
  // the type (the tlv-bridge) read escapes a form decoding leaves alone (curl -d sends JSON as
  // a form), and a byte order mark does not stop a JSON parser. A form that looks like JSON is
  // read both ways, for backends that trust the type.
  const bool json_like = looks_like_json(json_start(body_start));
  std::string_view media = trim(content_type.substr(0, content_type.find(';')));
  if (iequals(media, "application/x-www-form-urlencoded"))
    return json_like ? Decoding::JsonForm : Decoding::Form;
  if (json_like) return Decoding::Json;
  if (iequals(media, "application/json") ||
      (media.size() >= 5 && iequals(media.substr(media.size() - 5), "+json")))
    return Decoding::Json;
  return Decoding::Url;
}

Scanner::~Scanner() {
  if (stream_) close_stream(false);
}

hs_scratch_t* Scanner::scratch() {
  hs_scratch_t* s = thread_scratch(*policy_.scratch_);
  if (!s) failed_ = true;
  return s;
}

int Scanner::on_match(unsigned id, unsigned long long, unsigned long long to, unsigned,
                      void* context) {
  auto& self = *static_cast<Scanner*>(context);
  const Rule& rule = self.policy_.rules_[id];
  if (self.batched_) self.current_ = self.target_at(to);
  if ((rule.targets & static_cast<uint8_t>(self.current_)) == 0) return 0;
  if (rule.action == Action::Block) {
    self.blocked_ = true;
    self.block_ = Hit{id, self.current_};
    self.policy_.count_match(id);
    return 1;  // stop: the verdict is made
  }
  for (size_t i = 0; i < self.logged_count_; ++i)
    if (self.logged_[i].rule == id) return 0;
  self.policy_.count_match(id);
  if (self.logged_count_ < kMaxLogged) self.logged_[self.logged_count_++] = Hit{id, self.current_};
  return 0;
}

bool Scanner::scan_uri(std::string_view raw_path) {
  return scan_value(raw_path, Decoding::Url, Target::Uri);
}

bool Scanner::scan_query(std::string_view raw_query) {
  return scan_value(raw_query, Decoding::Form, Target::Args);
}

bool Scanner::scan_header(std::string_view name, std::string_view value) {
  if (iequals(name, "cookie") && !scan_value(value, Decoding::Form, Target::Cookies)) return false;
  if (policy_.scans(Target::Headers) && policy_.scans_header(name))
    return scan_value(value, Decoding::Url, Target::Headers);
  return !blocked_ && !failed_;
}

bool Scanner::scan_body(std::string_view content_type, std::string_view body) {
  if (!policy_.scans_body()) return !blocked_ && !failed_;
  body = body.substr(0, policy_.max_body());
  return scan_value(body, body_decoding(content_type, body), Target::Body);
}

bool Scanner::scan_value(std::string_view raw, Decoding decoding, Target target) {
  if (blocked_ || failed_) return false;
  if (raw.empty() || !policy_.scans(target)) return true;
  std::string_view text =
      Normalizer::is_clean(raw, decoding) ? raw : Normalizer(decoding).decode(raw, decode_buffer);
  if (!batching_) return scan_decoded(text, target);
  if (!text.empty()) {
    head_text.append(text);
    head_text.push_back('\n');
    head_parts.push_back({head_text.size(), target});
  }
  return true;
}

Target Scanner::target_at(unsigned long long end) const {
  for (const HeadPart& p : head_parts)
    if (end <= p.end) return p.target;
  return head_parts.empty() ? Target::Uri : head_parts.back().target;
}

void Scanner::begin_head() {
  batching_ = true;
  head_text.clear();
  head_parts.clear();
}

bool Scanner::end_head() {
  batching_ = false;
  if (blocked_ || failed_) return false;
  batched_ = true;
  bool ok = scan_decoded(head_text, Target::Uri);
  batched_ = false;
  return ok;
}

bool Scanner::scan_decoded(std::string_view text, Target target) {
  if (text.empty()) return true;
  hs_scratch_t* s = scratch();
  if (!s) return false;
  current_ = target;
  const hs_error_t rc = hs_scan(policy_.block_db_, text.data(), static_cast<unsigned>(text.size()),
                                0, s, on_match, this);
  if (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED) failed_ = true;
  return !blocked_ && !failed_;
}

void Scanner::begin_body(std::string_view content_type) {
  if (body_state_ != BodyState::None) return;
  if (!policy_.scans_body() || blocked_ || failed_) {
    body_state_ = BodyState::Done;
    return;
  }
  const Decoding decoding = body_decoding(content_type, {});
  sniff_json_ = decoding == Decoding::Url;
  body_decoder_.reset(decoding);
  body_state_ = BodyState::Started;
}

bool Scanner::feed_body(std::string_view chunk) {
  if (blocked_ || failed_) return false;
  if (body_state_ != BodyState::Started && body_state_ != BodyState::Open) return true;
  chunk = chunk.substr(0, policy_.max_body() - body_seen_);
  body_seen_ += chunk.size();
  if (chunk.empty()) return true;
  if (sniff_json_) {
    // Blank bytes mean the same to both decodings, so switching later loses nothing.
    const char first = json_start(chunk);
    if (first != 0) {
      sniff_json_ = false;
      if (looks_like_json(first)) body_decoder_.reset(Decoding::Json);
    }
  }
  if (body_state_ == BodyState::Started) {
    if (hs_open_stream(policy_.stream_db_, 0, &stream_) != HS_SUCCESS) {
      failed_ = true;
      return false;
    }
    body_state_ = BodyState::Open;
  }
  if (!scan_stream(body_decoder_.feed(chunk, decode_buffer))) return false;
  if (body_seen_ >= policy_.max_body()) return end_body();
  return true;
}

bool Scanner::end_body() {
  if (body_state_ == BodyState::Open) {
    decode_buffer.clear();
    body_decoder_.finish(decode_buffer);
    if (scan_stream(decode_buffer)) close_stream(true);  // matches anchored at the end (\b, $)
  }
  if (body_state_ != BodyState::None) body_state_ = BodyState::Done;
  return !blocked_ && !failed_;
}

bool Scanner::scan_stream(std::string_view text) {
  if (text.empty()) return true;
  hs_scratch_t* s = scratch();
  if (!s) return false;
  current_ = Target::Body;
  const hs_error_t rc = hs_scan_stream(stream_, text.data(), static_cast<unsigned>(text.size()), 0,
                                       s, on_match, this);
  if (rc == HS_SUCCESS) return true;
  if (rc != HS_SCAN_TERMINATED) failed_ = true;
  close_stream(false);
  body_state_ = BodyState::Done;
  return false;
}

void Scanner::close_stream(bool report) {
  hs_scratch_t* s = report ? scratch() : nullptr;
  current_ = Target::Body;
  hs_close_stream(stream_, s, s ? on_match : nullptr, this);
  stream_ = nullptr;
}

}  // namespace portico::plugins::waf
