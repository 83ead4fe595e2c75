// The demo's protobuf bodies (conf/im_demo.proto), encoded and decoded by hand: a varint and
// length-delimited wire-format helper is all these five messages need, so the demo needs no
// protoc. Unknown fields are skipped, as protobuf requires.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace im_demo {

enum Result : uint32_t {
  kOk = 0,
  kBadToken = 1,
  kNotLoggedIn = 2,
  kReceiverOffline = 3,
  kBadRequest = 4,
  kUnknownCommand = 5,
};

enum Cmd : uint32_t {
  kLogin = 0x1001,
  kLoginReply = 0x1002,
  kChat = 0x4001,
  kReceipt = 0x4002,
  kHeartbeat = 0x9001,
  kHeartbeatReply = 0x9002,
};

class ProtoWriter {
 public:
  void varint(uint32_t field, uint64_t v) {
    if (v == 0) return;  // proto3: default values are not written
    key(field, 0);
    raw_varint(v);
  }
  void string(uint32_t field, std::string_view s) {
    if (s.empty()) return;
    key(field, 2);
    raw_varint(s.size());
    out_.append(s);
  }
  const std::string& data() const { return out_; }

 private:
  void key(uint32_t field, uint32_t wire_type) { raw_varint((uint64_t{field} << 3) | wire_type); }
  void raw_varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

// Walks the fields of one message. next() returns false at the end or on malformed input
// (then ok() is false).
class ProtoReader {
 public:
  explicit ProtoReader(std::string_view in) : in_(in) {}
  bool next() {
    while (!in_.empty()) {
      uint64_t k;
      if (!raw_varint(k)) return fail();
      field_ = static_cast<uint32_t>(k >> 3);
      switch (k & 7) {
        case 0:
          if (!raw_varint(number_)) return fail();
          is_bytes_ = false;
          return true;
        case 2: {
          uint64_t n;
          if (!raw_varint(n) || n > in_.size()) return fail();
          bytes_ = in_.substr(0, n);
          in_.remove_prefix(n);
          is_bytes_ = true;
          return true;
        }
        case 1:  // fixed64: skipped
          if (in_.size() < 8) return fail();
          in_.remove_prefix(8);
          break;
        case 5:  // fixed32: skipped
          if (in_.size() < 4) return fail();
          in_.remove_prefix(4);
          break;
        default:
          return fail();
      }
    }
    return false;
  }
  bool ok() const { return ok_; }
  uint32_t field() const { return field_; }
  // The current field's value when it has that wire type, else the fallback.
  uint64_t number() const { return is_bytes_ ? 0 : number_; }
  std::string_view bytes() const { return is_bytes_ ? bytes_ : std::string_view(); }

 private:
  bool fail() {
    ok_ = false;
    in_ = {};
    return false;
  }
  bool raw_varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && !in_.empty(); shift += 7) {
      auto b = static_cast<uint8_t>(in_.front());
      in_.remove_prefix(1);
      v |= uint64_t{b & 0x7Fu} << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  std::string_view in_;
  std::string_view bytes_;
  uint64_t number_ = 0;
  uint32_t field_ = 0;
  bool is_bytes_ = false;
  bool ok_ = true;
};

struct LoginRequest {
  uint64_t uid = 0;
  std::string token, device;
};
struct LoginReply {
  uint32_t result = kOk;
  uint64_t uid = 0;
  std::string server, seen_addr;
};
struct ChatMessage {
  uint64_t from = 0, to = 0;
  std::string text, client_msg_id;
  int64_t sent_at = 0;
  uint64_t server_msg_id = 0;
};
struct Receipt {
  uint32_t result = kOk;
  std::string client_msg_id;
  uint64_t server_msg_id = 0;
  std::string server;
};
struct Heartbeat {
  int64_t sent_at = 0;
  std::string server;
};

inline std::optional<LoginRequest> parse_login(std::string_view body) {
  LoginRequest m;
  ProtoReader r(body);
  while (r.next()) {
    if (r.field() == 1) m.uid = r.number();
    if (r.field() == 2) m.token = r.bytes();
    if (r.field() == 3) m.device = r.bytes();
  }
  return r.ok() ? std::optional(m) : std::nullopt;
}

inline std::optional<ChatMessage> parse_chat(std::string_view body) {
  ChatMessage m;
  ProtoReader r(body);
  while (r.next()) {
    switch (r.field()) {
      case 1:
        m.from = r.number();
        break;
      case 2:
        m.to = r.number();
        break;
      case 3:
        m.text = r.bytes();
        break;
      case 4:
        m.client_msg_id = r.bytes();
        break;
      case 5:
        m.sent_at = static_cast<int64_t>(r.number());
        break;
      case 6:
        m.server_msg_id = r.number();
        break;
    }
  }
  return r.ok() ? std::optional(m) : std::nullopt;
}

inline std::optional<Heartbeat> parse_heartbeat(std::string_view body) {
  Heartbeat m;
  ProtoReader r(body);
  while (r.next()) {
    if (r.field() == 1) m.sent_at = static_cast<int64_t>(r.number());
    if (r.field() == 2) m.server = r.bytes();
  }
  return r.ok() ? std::optional(m) : std::nullopt;
}

inline std::string encode(const LoginReply& m) {
  ProtoWriter w;
  w.varint(1, m.result);
  w.varint(2, m.uid);
  w.string(3, m.server);
  w.string(4, m.seen_addr);
  return w.data();
}

inline std::string encode(const ChatMessage& m) {
  ProtoWriter w;
  w.varint(1, m.from);
  w.varint(2, m.to);
  w.string(3, m.text);
  w.string(4, m.client_msg_id);
  w.varint(5, static_cast<uint64_t>(m.sent_at));  // int64: negative values take 10 bytes
  w.varint(6, m.server_msg_id);
  return w.data();
}

inline std::string encode(const Receipt& m) {
  ProtoWriter w;
  w.varint(1, m.result);
  w.string(2, m.client_msg_id);
  w.varint(3, m.server_msg_id);
  w.string(4, m.server);
  return w.data();
}

inline std::string encode(const Heartbeat& m) {
  ProtoWriter w;
  w.varint(1, static_cast<uint64_t>(m.sent_at));
  w.string(2, m.server);
  return w.data();
}

}  // namespace im_demo
