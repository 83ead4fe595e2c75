#include "bridge/proto_json.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>

#include <charconv>
#include <cmath>
#include <limits>

#include "core/base64.hpp"

namespace portico::bridge {
namespace {

namespace pb = google::protobuf;
using FD = pb::FieldDescriptor;
using json = nlohmann::json;

// Integers beyond 2^53 lose precision in JavaScript: they travel as strings.
constexpr int64_t kMaxSafeInteger = (int64_t{1} << 53);

json int64_json(int64_t v) {
  if (v >= -kMaxSafeInteger && v <= kMaxSafeInteger) return v;
  return std::to_string(v);
}
json uint64_json(uint64_t v) {
  if (v <= static_cast<uint64_t>(kMaxSafeInteger)) return v;
  return std::to_string(v);
}
json double_json(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return v;
}

json enum_json(const pb::EnumValueDescriptor* value) { return value->name(); }

json to_json(const pb::Message& m, int depth);

json scalar_json(const pb::Message& m, const FD* f, const pb::Reflection* r, int depth) {
  switch (f->cpp_type()) {
    case FD::CPPTYPE_INT32:
      return r->GetInt32(m, f);
    case FD::CPPTYPE_UINT32:
      return r->GetUInt32(m, f);
    case FD::CPPTYPE_INT64:
      return int64_json(r->GetInt64(m, f));
    case FD::CPPTYPE_UINT64:
      return uint64_json(r->GetUInt64(m, f));
    case FD::CPPTYPE_FLOAT:
      return double_json(r->GetFloat(m, f));
    case FD::CPPTYPE_DOUBLE:
      return double_json(r->GetDouble(m, f));
    case FD::CPPTYPE_BOOL:
      return r->GetBool(m, f);
    case FD::CPPTYPE_ENUM: {
      int n = r->GetEnumValue(m, f);
      const pb::EnumValueDescriptor* v = f->enum_type()->FindValueByNumber(n);
      return v ? enum_json(v) : json(n);  // an open enum may hold an unnamed value
    }
    case FD::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& s = r->GetStringReference(m, f, &scratch);
      if (f->type() == FD::TYPE_BYTES) return base64_encode(s);
      return json(s);
    }
    case FD::CPPTYPE_MESSAGE:
      return to_json(r->GetMessage(m, f), depth + 1);
  }
  return nullptr;
}

json repeated_item_json(const pb::Message& m, const FD* f, const pb::Reflection* r, int i,
                        int depth) {
  switch (f->cpp_type()) {
    case FD::CPPTYPE_INT32:
      return r->GetRepeatedInt32(m, f, i);
    case FD::CPPTYPE_UINT32:
      return r->GetRepeatedUInt32(m, f, i);
    case FD::CPPTYPE_INT64:
      return int64_json(r->GetRepeatedInt64(m, f, i));
    case FD::CPPTYPE_UINT64:
      return uint64_json(r->GetRepeatedUInt64(m, f, i));
    case FD::CPPTYPE_FLOAT:
      return double_json(r->GetRepeatedFloat(m, f, i));
    case FD::CPPTYPE_DOUBLE:
      return double_json(r->GetRepeatedDouble(m, f, i));
    case FD::CPPTYPE_BOOL:
      return r->GetRepeatedBool(m, f, i);
    case FD::CPPTYPE_ENUM: {
      int n = r->GetRepeatedEnumValue(m, f, i);
      const pb::EnumValueDescriptor* v = f->enum_type()->FindValueByNumber(n);
      return v ? enum_json(v) : json(n);
    }
    case FD::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& s = r->GetRepeatedStringReference(m, f, i, &scratch);
      if (f->type() == FD::TYPE_BYTES) return base64_encode(s);
      return json(s);
    }
    case FD::CPPTYPE_MESSAGE:
      return to_json(r->GetRepeatedMessage(m, f, i), depth + 1);
  }
  return nullptr;
}

// A map entry's key as a JSON object key.
std::string map_key(const json& key) {
  return key.is_string() ? key.get<std::string>() : key.dump();
}

// Set when a message nested past kMaxJsonDepth was cut short (protobuf parses up to 100
// levels): message_to_json then reports a failure instead of an object missing its depths.
thread_local bool t_too_deep = false;

json to_json(const pb::Message& m, int depth) {
  json out = json::object();
  if (depth > kMaxJsonDepth) {
    t_too_deep = true;
    return out;
  }
  const pb::Descriptor* d = m.GetDescriptor();
  const pb::Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FD* f = d->field(i);
    if (f->is_map()) {
      json obj = json::object();
      const FD* key = f->message_type()->map_key();
      const FD* value = f->message_type()->map_value();
      for (int k = 0, n = r->FieldSize(m, f); k < n; ++k) {
        const pb::Message& entry = r->GetRepeatedMessage(m, f, k);
        const pb::Reflection* er = entry.GetReflection();
        obj[map_key(scalar_json(entry, key, er, depth))] = scalar_json(entry, value, er, depth);
      }
      out[f->name()] = std::move(obj);
    } else if (f->is_repeated()) {
      json arr = json::array();
      for (int k = 0, n = r->FieldSize(m, f); k < n; ++k)
        arr.push_back(repeated_item_json(m, f, r, k, depth));
      out[f->name()] = std::move(arr);
    } else if (f->has_presence()) {  // messages, oneof members, proto2 and `optional` scalars
      if (r->HasField(m, f)) out[f->name()] = scalar_json(m, f, r, depth);
    } else {
      out[f->name()] = scalar_json(m, f, r, depth);
    }
  }
  return out;
}

// ---- JSON -> message -----------------------------------------------------------------------

class Reader {
 public:
  explicit Reader(std::string& error) : error_(error) {}

  bool message(const json& v, pb::Message& m, const std::string& path, int depth) {
    if (depth > kMaxJsonDepth) return fail(path, "nested too deeply");
    if (!v.is_object()) return fail(path, "expected an object, got " + shown(v));
    const pb::Descriptor* d = m.GetDescriptor();
    const pb::Reflection* r = m.GetReflection();
    for (const auto& [key, item] : v.items()) {
      const FD* f = find_field(d, key);
      std::string fpath = path + "." + key;
      if (!f) return fail(fpath, "unknown field of " + d->full_name());
      if (item.is_null()) continue;
      if (const pb::OneofDescriptor* o = f->real_containing_oneof()) {
        const FD* set = r->GetOneofFieldDescriptor(m, o);
        if (set && set != f)
          return fail(fpath, "only one field of oneof " + o->name() + " may be set (" +
                                 set->name() + " is)");
      }
      if (f->is_map()) {
        if (!map(item, m, f, fpath, depth)) return false;
      } else if (f->is_repeated()) {
        if (!item.is_array()) return fail(fpath, "expected an array, got " + shown(item));
        for (size_t i = 0; i < item.size(); ++i)
          if (!set_value(item[i], m, f, fpath + "[" + std::to_string(i) + "]", depth, true))
            return false;
      } else if (!set_value(item, m, f, fpath, depth, false)) {
        return false;
      }
    }
    return true;
  }

 private:
  static const FD* find_field(const pb::Descriptor* d, const std::string& key) {
    if (const FD* f = d->FindFieldByName(key)) return f;
    for (int i = 0; i < d->field_count(); ++i)
      if (d->field(i)->json_name() == key) return d->field(i);
    return nullptr;
  }

  // A value for an error message. Containers are named, not serialised: dumping recurses once
  // per nesting level, and the value comes from a client.
  // A value for an error message. Containers are named, not serialised: dumping recurses once
  // per nesting level, and the value comes from a client.
  static std::string shown(const json& v) {
    if (v.is_object()) return v.empty() ? "{}" : "an object";
    if (v.is_array()) return v.empty() ? "[]" : "an array";
    std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return s;
  }

  bool fail(const std::string& path, const std::string& what) {
    error_ = path + ": " + what;
    return false;
  }

  bool map(const json& v, pb::Message& m, const FD* f, const std::string& path, int depth) {
    if (!v.is_object()) return fail(path, "expected an object, got " + shown(v));
    const pb::Reflection* r = m.GetReflection();
    const FD* key_field = f->message_type()->map_key();
    const FD* value_field = f->message_type()->map_value();
    for (const auto& [key, item] : v.items()) {
      std::string kpath = path + "." + key;
      pb::Message* entry = r->AddMessage(&m, f);
      json key_json = key;
      if (key_field->cpp_type() == FD::CPPTYPE_BOOL) {
        if (key != "true" && key != "false") return fail(kpath, "map key must be true or false");
        key_json = key == "true";
      }
      if (!set_value(key_json, *entry, key_field, kpath, depth, false)) return false;
      if (!item.is_null() && !set_value(item, *entry, value_field, kpath, depth, false))
        return false;
    }
    return true;
  }

  // An integer from a JSON integer, an integral float, or a decimal string.
  template <class T>
  bool integer(const json& v, T& out) {
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
      out = static_cast<T>(u);
      return true;
    }
    if (v.is_number_integer()) {
      int64_t i = v.get<int64_t>();
      if constexpr (std::is_unsigned_v<T>) {
        if (i < 0 || static_cast<uint64_t>(i) > std::numeric_limits<T>::max()) return false;
      } else {
        if (i < std::numeric_limits<T>::min() || i > std::numeric_limits<T>::max()) return false;
      }
      out = static_cast<T>(i);
      return true;
    }
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (d != std::floor(d) || d < static_cast<double>(std::numeric_limits<T>::min()) ||
          d >= static_cast<double>(std::numeric_limits<T>::max()) + 1.0)
        return false;
      out = static_cast<T>(d);
      return true;
    }
    if (v.is_string()) {
      const std::string& s = v.get_ref<const std::string&>();
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
      return ec == std::errc() && end == s.data() + s.size() && !s.empty();
    }
    return false;
  }

  bool real(const json& v, double& out) {
    if (v.is_number()) {
      out = v.get<double>();
      return true;
    }
    if (v == "NaN")
      out = std::numeric_limits<double>::quiet_NaN();
    else if (v == "Infinity")
      out = std::numeric_limits<double>::infinity();
    else if (v == "-Infinity")
      out = -std::numeric_limits<double>::infinity();
    else
      return false;
    return true;
  }

  bool set_value(const json& v, pb::Message& m, const FD* f, const std::string& path, int depth,
                 bool add) {
    const pb::Reflection* r = m.GetReflection();
    switch (f->cpp_type()) {
      case FD::CPPTYPE_INT32: {
        int32_t x;
        if (!integer(v, x)) return fail(path, "expected a 32-bit integer, got " + shown(v));
        add ? r->AddInt32(&m, f, x) : r->SetInt32(&m, f, x);
        return true;
      }
      case FD::CPPTYPE_UINT32: {
        uint32_t x;
        if (!integer(v, x))
          return fail(path, "expected an unsigned 32-bit integer, got " + shown(v));
        add ? r->AddUInt32(&m, f, x) : r->SetUInt32(&m, f, x);
        return true;
      }
      case FD::CPPTYPE_INT64: {
        int64_t x;
        if (!integer(v, x)) return fail(path, "expected a 64-bit integer, got " + shown(v));
        add ? r->AddInt64(&m, f, x) : r->SetInt64(&m, f, x);
        return true;
      }
      case FD::CPPTYPE_UINT64: {
        uint64_t x;
        if (!integer(v, x))
          return fail(path, "expected an unsigned 64-bit integer, got " + shown(v));
        add ? r->AddUInt64(&m, f, x) : r->SetUInt64(&m, f, x);
        return true;
      }
      case FD::CPPTYPE_FLOAT:
      case FD::CPPTYPE_DOUBLE: {
        double x;
        if (!real(v, x)) return fail(path, "expected a number, got " + shown(v));
        if (f->cpp_type() == FD::CPPTYPE_DOUBLE) {
          add ? r->AddDouble(&m, f, x) : r->SetDouble(&m, f, x);
          return true;
        }
        if (std::isfinite(x) && std::fabs(x) > std::numeric_limits<float>::max())
          return fail(path, "out of range for a float: " + shown(v));
        add ? r->AddFloat(&m, f, static_cast<float>(x)) : r->SetFloat(&m, f, static_cast<float>(x));
        return true;
      }
      case FD::CPPTYPE_BOOL:
        if (!v.is_boolean()) return fail(path, "expected true or false, got " + shown(v));
        add ? r->AddBool(&m, f, v.get<bool>()) : r->SetBool(&m, f, v.get<bool>());
        return true;
      case FD::CPPTYPE_ENUM: {
        const pb::EnumDescriptor* e = f->enum_type();
        int n = 0;
        if (v.is_string()) {
          const pb::EnumValueDescriptor* ev = e->FindValueByName(v.get<std::string>());
          if (!ev) return fail(path, "unknown value " + shown(v) + " of enum " + e->full_name());
          n = ev->number();
        } else if (!integer(v, n)) {
          return fail(path,
                      "expected a name or number of enum " + e->full_name() + ", got " + shown(v));
        } else if (e->file()->syntax() == pb::FileDescriptor::SYNTAX_PROTO2 &&
                   !e->FindValueByNumber(n)) {  // proto2 enums are closed
          return fail(path, "unknown value " + shown(v) + " of enum " + e->full_name());
        }
        add ? r->AddEnumValue(&m, f, n) : r->SetEnumValue(&m, f, n);
        return true;
      }
      case FD::CPPTYPE_STRING: {
        if (!v.is_string()) return fail(path, "expected a string, got " + shown(v));
        std::string s = v.get<std::string>();
        if (f->type() == FD::TYPE_BYTES) {
          auto decoded = base64_decode(s);
          if (!decoded) return fail(path, "expected base64, got " + shown(v));
          s = std::move(*decoded);
        }
        add ? r->AddString(&m, f, std::move(s)) : r->SetString(&m, f, std::move(s));
        return true;
      }
      case FD::CPPTYPE_MESSAGE: {
        pb::Message* sub = add ? r->AddMessage(&m, f) : r->MutableMessage(&m, f);
        return message(v, *sub, path, depth + 1);
      }
    }
    return fail(path, "unsupported field type");
  }

  std::string& error_;
};

}  // namespace

std::optional<json> message_to_json(const pb::Message& message) {
  t_too_deep = false;
  json out = to_json(message, 0);
  if (t_too_deep) return std::nullopt;
  return out;
}

bool json_to_message(const json& value, pb::Message& message, const std::string& path,
                     std::string& error) {
  Reader reader(error);
  return reader.message(value, message, path, 0);
}

}  // namespace portico::bridge
