#include "bridge/tlv_envelope.hpp"

#include <google/protobuf/message.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>

#include "bridge/proto_json.hpp"
#include "core/base64.hpp"
#include "core/json_depth.hpp"

namespace portico::bridge {
namespace {

using json = nlohmann::json;
namespace pb = google::protobuf;

uint64_t field_max(const stream::TlvField& f) {
  return f.width >= 8 ? UINT64_MAX : (uint64_t{1} << (8 * f.width)) - 1;
}

// An envelope number: absent = 0; must fit the framing's field (a missing field must stay 0).
bool read_field(const json& env, const char* key, const stream::TlvField& field, uint64_t& out,
                std::string& error) {
  auto it = env.find(key);
  out = 0;
  if (it == env.end() || it->is_null()) return true;
  uint64_t max = field.present() ? field_max(field) : 0;
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0)) {
    error = std::string(key) + ": expected an unsigned integer";
    return false;
  }
  out = it->get<uint64_t>();
  if (out > max) {
    error = std::string(key) + (field.present() ? ": must be at most " + std::to_string(max)
                                                : ": this framing has no such header field");
    return false;
  }
  return true;
}

}  // namespace

bool CmdTypes::bind(const CmdTypeNames& names, ProtoSetPtr protos, std::string& error) {
  types_.clear();
  for (const auto& [cmd, name] : names) {
    const pb::Descriptor* d = protos->message(name);
    if (!d) {
      error = "message type \"" + name + "\" (cmd " + std::to_string(cmd) + ") is not in the proto";
      return false;
    }
    types_.emplace_back(cmd, protos->prototype(d));
  }
  std::sort(types_.begin(), types_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  protos_ = std::move(protos);
  return true;
}

const pb::Message* CmdTypes::find(uint32_t cmd) const {
  auto it = std::lower_bound(types_.begin(), types_.end(), cmd,
                             [](const auto& e, uint32_t c) { return e.first < c; });
  return it != types_.end() && it->first == cmd ? it->second : nullptr;
}

bool envelope_to_tlv(std::string_view text, const stream::TlvFraming& framing,
                     const CmdTypes& types, std::string& out, EnvelopeError& error) {
  // The envelope and `data` around the message's own nesting.
  if (json_too_deep(text, kMaxJsonDepth + 2)) {
    error.message = "nested too deeply (more than " + std::to_string(kMaxJsonDepth) + " levels)";
    return false;
  }
  json env = json::parse(text, nullptr, false);
  if (env.is_discarded() || !env.is_object()) {
    error.message = "expected a JSON object {\"cmd\": ..., \"id\": ..., \"data\": {...}}";
    return false;
  }
  uint64_t id = 0, cmd = 0, from = 0, to = 0, status = 0;
  if (!read_field(env, "id", framing.seq, id, error.message)) return false;
  error.id = static_cast<uint32_t>(id);
  if (!env.contains("cmd") || env["cmd"].is_null()) {
    error.message = "cmd: is required";
    return false;
  }
  if (!read_field(env, "cmd", framing.cmd, cmd, error.message)) return false;
  error.cmd = static_cast<uint32_t>(cmd);
  // Checked once id and cmd are known, so the refusal still answers the client's request.
  for (const auto& [key, value] : env.items())
    if (key != "id" && key != "cmd" && key != "from" && key != "to" && key != "status" &&
        key != "data" && key != "body") {
      error.message = key + ": unknown field (expected id, cmd, from, to, status, data, body)";
      return false;
    }
  if (!read_field(env, "from", framing.from, from, error.message) ||
      !read_field(env, "to", framing.to, to, error.message) ||
      !read_field(env, "status", framing.status, status, error.message))
    return false;

  std::string body;
  auto data = env.find("data");
  auto raw = env.find("body");
  bool has_data = data != env.end() && !data->is_null();
  bool has_raw = raw != env.end() && !raw->is_null();
  if (has_data && has_raw) {
    error.message = "give either data or body, not both";
    return false;
  }
  if (has_data) {
    const pb::Message* prototype = types.find(error.cmd);
    if (!prototype) {
      error.message = "data: no message type is configured for cmd " + std::to_string(cmd) +
                      " (send the protobuf body as base64 in \"body\")";
      return false;
    }
    std::unique_ptr<pb::Message> message(prototype->New());
    if (!json_to_message(*data, *message, "data", error.message)) return false;
    if (!message->SerializeToString(&body)) {
      error.message = "data: cannot be encoded as " + prototype->GetDescriptor()->full_name();
      return false;
    }
  } else if (has_raw) {
    auto decoded = raw->is_string() ? base64_decode(raw->get<std::string>()) : std::nullopt;
    if (!decoded) {
      error.message = "body: expected base64";
      return false;
    }
    body = std::move(*decoded);
  }
  if (body.size() > framing.max_body) {
    error.message = "the body is " + std::to_string(body.size()) + " bytes, over max_body " +
                    std::to_string(framing.max_body);
    return false;
  }
  stream::TlvHeader h;
  h.cmd = error.cmd;
  h.seq = error.id;
  h.status = static_cast<uint32_t>(status);
  h.from = from;
  h.to = to;
  if (!stream::append_tlv(framing, h, stream::as_bytes(body), out)) {
    error.message = "the body does not fit the framing's length field";
    return false;
  }
  return true;
}

std::string tlv_to_envelope(const stream::TlvFrame& frame, const CmdTypes& types) {
  const stream::TlvHeader& h = frame.header;
  json env = {{"id", h.seq}, {"cmd", h.cmd}, {"from", h.from}, {"to", h.to}, {"status", h.status}};
  bool converted = false;
  if (const pb::Message* prototype = types.find(h.cmd)) {
    std::unique_ptr<pb::Message> message(prototype->New());
    if (!message->ParseFromArray(frame.body.data(), static_cast<int>(frame.body.size()))) {
      env["error"] = "the body is not a valid " + prototype->GetDescriptor()->full_name();
    } else if (auto data = message_to_json(*message)) {
      env["data"] = std::move(*data);
      converted = true;
    } else {
      env["error"] = "the body nests deeper than " + std::to_string(kMaxJsonDepth) +
                     " levels: sent as it came";
    }
  }
  if (!converted) env["body"] = base64_encode(stream::as_chars(frame.body));
  return env.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_envelope(const EnvelopeError& error, uint32_t status) {
  json env = {{"id", error.id},
              {"cmd", error.cmd == 0 ? 0 : error.cmd + 1},
              {"status", status},
              {"error", error.message}};
  return env.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace portico::bridge
