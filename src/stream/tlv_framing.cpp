#include "stream/tlv_framing.hpp"

#include <array>
#include <string_view>

namespace portico::stream {

namespace {

using config::ObjectReader;
using nlohmann::json;

constexpr int64_t kMaxHeaderSize = TlvFraming::kMaxHeaderSize;
constexpr int64_t kMaxBodyLimit = int64_t{1} << 30;  // 1 GiB: beyond that it is not a message

struct NamedField {
  std::string_view name;
  TlvField TlvFraming::*member;
  bool wide;  // may be 8 bytes (user ids)
};

constexpr std::array<NamedField, 7> kHeaderFields{{
    {"version", &TlvFraming::version, false},
    {"flags", &TlvFraming::flags, false},
    {"cmd", &TlvFraming::cmd, false},
    {"seq", &TlvFraming::seq, false},
    {"status", &TlvFraming::status, false},
    {"from", &TlvFraming::from, true},
    {"to", &TlvFraming::to, true},
}};

// "big" | "little" -> little_endian; nullopt (error recorded) otherwise.
std::optional<bool> read_byte_order(ObjectReader& r, bool fallback_little) {
  auto s = r.string("byte_order");
  if (!s) return fallback_little;
  if (*s == "big") return false;
  if (*s == "little") return true;
  r.error("byte_order", "must be \"big\" or \"little\"");
  return std::nullopt;
}

// A marker byte 0..255, or "none".
int read_marker(ObjectReader& r, std::string_view key, int fallback) {
  const json* v = r.raw(key);
  if (!v) return fallback;
  if (v->is_string() && v->get<std::string>() == "none") return TlvFraming::kNoMarker;
  if (v->is_number_integer()) {
    int64_t n = v->get<int64_t>();
    if (n >= 0 && n <= 255) return static_cast<int>(n);
  }
  r.error(key, "must be a byte value 0..255 or \"none\"");
  return fallback;
}

bool valid_width(int64_t w, bool wide) { return w == 1 || w == 2 || w == 4 || (wide && w == 8); }

// {"offset": N, "width": W, "byte_order": ...}; "none" makes the field absent.
TlvField read_field(ObjectReader& parent, std::string_view key, TlvField fallback, bool wide,
                    bool default_little) {
  const json* v = parent.raw(key);
  if (!v) return fallback;
  if (v->is_string() && v->get<std::string>() == "none") return TlvField{};
  ObjectReader r(*v, parent.child_path(key), parent.errors());
  if (!r.valid()) return fallback;
  TlvField f;
  auto offset = r.integer("offset", 0, kMaxHeaderSize - 1);
  auto width = r.integer("width", 1, 8);
  if (!r.has("offset")) r.error("offset", "is required");
  if (!r.has("width")) r.error("width", "is required");
  if (width && !valid_width(*width, wide))
    r.error("width", wide ? "must be 1, 2, 4 or 8" : "must be 1, 2 or 4");
  f.little_endian = read_byte_order(r, default_little).value_or(default_little);
  r.finish();
  if (!offset || !width || !valid_width(*width, wide)) return fallback;
  f.offset = static_cast<uint16_t>(*offset);
  f.width = static_cast<uint8_t>(*width);
  return f;
}

void check_inside_header(config::Errors& errors, const std::string& field_path, TlvField f,
                         uint16_t header_size) {
  if (!f.present() || f.offset + f.width <= header_size) return;
  errors.add(field_path, "lies outside the header (offset " + std::to_string(f.offset) +
                             " + width " + std::to_string(f.width) + " > header_size " +
                             std::to_string(header_size) + ")");
}

}  // namespace

TlvFraming parse_tlv_framing(const json& value, const std::string& path, config::Errors& errors) {
  TlvFraming f;
  ObjectReader r(value, path, errors);
  if (!r.valid()) return f;

  f.start_marker = read_marker(r, "start_marker", f.start_marker);
  f.end_marker = read_marker(r, "end_marker", f.end_marker);
  f.header_size =
      static_cast<uint16_t>(r.integer_or("header_size", f.header_size, 1, kMaxHeaderSize));
  bool little = read_byte_order(r, false).value_or(false);
  f.max_body = static_cast<uint32_t>(r.size_or("max_body", f.max_body, 0, kMaxBodyLimit));

  // The default layout takes the route's byte order too.
  for (const auto& nf : kHeaderFields) (f.*nf.member).little_endian = little;
  f.length.little_endian = little;

  if (const json* lv = r.raw("length")) {
    ObjectReader lr(*lv, r.child_path("length"), errors);
    if (lr.valid()) {
      auto offset = lr.integer("offset", 0, kMaxHeaderSize - 1);
      auto width = lr.integer("width", 1, 4);
      if (width && !valid_width(*width, false)) lr.error("width", "must be 1, 2 or 4");
      if (offset) f.length.offset = static_cast<uint16_t>(*offset);
      if (width && valid_width(*width, false)) f.length.width = static_cast<uint8_t>(*width);
      f.length.little_endian = read_byte_order(lr, little).value_or(little);
      f.length_includes_header = lr.boolean_or("includes_header", false);
      f.length_includes_markers = lr.boolean_or("includes_markers", false);
      lr.finish();
    }
  }

  std::string fields_path = r.child_path("fields");
  if (const json* fv = r.raw("fields")) {
    ObjectReader fr(*fv, fields_path, errors);
    if (fr.valid()) {
      for (const auto& nf : kHeaderFields)
        f.*nf.member = read_field(fr, nf.name, TlvField{}, nf.wide, little);
      fr.finish();
    }
  }
  r.finish();

  check_inside_header(errors, r.child_path("length"), f.length, f.header_size);
  for (const auto& nf : kHeaderFields)
    check_inside_header(errors, fields_path + "." + std::string(nf.name), f.*nf.member,
                        f.header_size);
  return f;
}

nlohmann::json tlv_framing_to_json(const TlvFraming& f) {
  auto marker = [](int m) { return m == TlvFraming::kNoMarker ? json("none") : json(m); };
  auto order = [](bool little) { return little ? "little" : "big"; };
  json fields = json::object();
  for (const auto& nf : kHeaderFields) {
    const TlvField& field = f.*nf.member;
    fields[std::string(nf.name)] = field.present()
                                       ? json{{"offset", field.offset},
                                              {"width", field.width},
                                              {"byte_order", order(field.little_endian)}}
                                       : json("none");
  }
  return json{{"start_marker", marker(f.start_marker)},
              {"end_marker", marker(f.end_marker)},
              {"header_size", f.header_size},
              {"length",
               {{"offset", f.length.offset},
                {"width", f.length.width},
                {"byte_order", order(f.length.little_endian)},
                {"includes_header", f.length_includes_header},
                {"includes_markers", f.length_includes_markers}}},
              {"fields", std::move(fields)},
              {"max_body", f.max_body}};
}

}  // namespace portico::stream
