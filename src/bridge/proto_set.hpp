// A `protos` object compiled into protobuf descriptors: the message types the bridges convert
// between TLV bodies and JSON. Compiled once when the object arrives (Admin API, etcd or the
// routes file), shared read-only by every worker afterwards.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace google::protobuf {
class Descriptor;
class DescriptorPool;
class DynamicMessageFactory;
class Message;
}  // namespace google::protobuf

namespace portico::bridge {

class ProtoSet {
 public:
  ~ProtoSet();

  // Compiles one .proto file (proto2 or proto3). It may import Google's well-known types
  // ("google/protobuf/timestamp.proto", ...) and nothing else. On failure returns null with
  // `error` saying where ("line 4:10: ...").
  static std::shared_ptr<const ProtoSet> compile(std::string_view content, std::string& error);

  // A message type by full name ("pkg.Msg"), or by a name relative to the file's package.
  const google::protobuf::Descriptor* message(std::string_view name) const;
  // The immutable default instance of `type` (from this set), to create messages with New().
  // Thread-safe: the factory locks while it builds a prototype, which happens once per type.
  const google::protobuf::Message* prototype(const google::protobuf::Descriptor* type) const;

 private:
  ProtoSet();
  std::unique_ptr<google::protobuf::DescriptorPool> pool_;
  std::unique_ptr<google::protobuf::DynamicMessageFactory> factory_;
  std::string package_;
};

using ProtoSetPtr = std::shared_ptr<const ProtoSet>;
// Compiled `protos` objects by id, as a snapshot holds them.
using ProtoTable = std::map<std::string, ProtoSetPtr, std::less<>>;

}  // namespace portico::bridge
