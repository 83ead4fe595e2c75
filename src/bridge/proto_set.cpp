#include "bridge/proto_set.hpp"

#include <google/protobuf/compiler/parser.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

namespace portico::bridge {
namespace {

namespace pb = google::protobuf;

// The first error the tokenizer, parser or descriptor builder reports, with its position.
class FirstError : public pb::io::ErrorCollector, public pb::DescriptorPool::ErrorCollector {
 public:
  std::string message;

  void AddError(int line, pb::io::ColumnNumber column, const std::string& text) override {
    if (message.empty())
      message = "line " + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + text;
  }
  void AddError(const std::string& /*filename*/, const std::string& element_name,
                const pb::Message* /*descriptor*/, ErrorLocation /*location*/,
                const std::string& text) override {
    if (message.empty()) message = element_name.empty() ? text : element_name + ": " + text;
  }
};

constexpr std::string_view kWellKnownPrefix = "google/protobuf/";

}  // namespace

ProtoSet::ProtoSet() = default;
ProtoSet::~ProtoSet() = default;

std::shared_ptr<const ProtoSet> ProtoSet::compile(std::string_view content, std::string& error) {
  pb::io::ArrayInputStream input(content.data(), static_cast<int>(content.size()));
  FirstError errors;
  pb::io::Tokenizer tokenizer(&input, &errors);
  pb::compiler::Parser parser;
  parser.RecordErrorsTo(&errors);
  pb::FileDescriptorProto file;
  if (!parser.Parse(&tokenizer, &file) || !errors.message.empty()) {
    error = errors.message.empty() ? "not a valid .proto file" : errors.message;
    return nullptr;
  }
  for (const std::string& dep : file.dependency()) {
    // The well-known types are linked into libprotobuf; the generated pool below provides them.
    if (dep.compare(0, kWellKnownPrefix.size(), kWellKnownPrefix) != 0 ||
        !pb::DescriptorPool::generated_pool()->FindFileByName(dep)) {
      error = "import \"" + dep +
              "\": only Google's well-known types can be imported (upload one self-contained "
              ".proto file)";
      return nullptr;
    }
  }
  file.set_name("portico_protos_object.proto");
  std::shared_ptr<ProtoSet> set(new ProtoSet());
  set->pool_ = std::make_unique<pb::DescriptorPool>(pb::DescriptorPool::generated_pool());
  if (!set->pool_->BuildFileCollectingErrors(file, &errors)) {
    error = errors.message.empty() ? "the .proto file does not build" : errors.message;
    return nullptr;
  }
  set->factory_ = std::make_unique<pb::DynamicMessageFactory>(set->pool_.get());
  set->package_ = file.package();
  return set;
}

const pb::Descriptor* ProtoSet::message(std::string_view name) const {
  if (!name.empty() && name.front() == '.') name.remove_prefix(1);
  const pb::Descriptor* d = pool_->FindMessageTypeByName(std::string(name));
  if (!d && !package_.empty()) d = pool_->FindMessageTypeByName(package_ + "." + std::string(name));
  return d;
}

const pb::Message* ProtoSet::prototype(const pb::Descriptor* type) const {
  return factory_->GetPrototype(type);
}

}  // namespace portico::bridge
