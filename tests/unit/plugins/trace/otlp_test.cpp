// The OTLP messages as libprotobuf reads them (its own wire parser, no schema): every field at
// its number with its wire type and value.
#include "plugins/trace/otlp.hpp"

#include <google/protobuf/unknown_field_set.h>
#include <gtest/gtest.h>

#include <cstring>

namespace portico::plugins::trace::otlp {
namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

using FieldSet = std::unique_ptr<UnknownFieldSet>;  // (not copyable)

FieldSet parse(const std::string& bytes) {
  auto set = std::make_unique<UnknownFieldSet>();
  EXPECT_TRUE(set->ParseFromString(bytes));
  return set;
}

const UnknownField* find(const FieldSet& set, int number, int nth = 0) {
  for (int i = 0; i < set->field_count(); ++i)
    if (set->field(i).number() == number && nth-- == 0) return &set->field(i);
  return nullptr;
}

// The AnyValue of a KeyValue, parsed.
FieldSet value_of(const UnknownField& kv) {
  FieldSet pair = parse(kv.length_delimited());
  return parse(find(pair, 2)->length_delimited());  // (a copy: `pair` may go)
}

// Field numbers written out (trace.proto), not taken from the code under test.
constexpr int kSpanTraceId = 1, kSpanName = 5, kSpanKind = 6, kSpanStart = 7, kSpanAttributes = 9,
              kSpanStatus = 15;

TEST(Otlp, CleanTextIsUtf8AndCutAtACharacter) {
  EXPECT_EQ(clean_text("plain"), "plain");
  EXPECT_EQ(clean_text("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(clean_text("a\xff"
                       "b"),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(clean_text("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");                  // overlong '/'
  EXPECT_EQ(clean_text("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate
  EXPECT_EQ(clean_text("\xf0\x9f\x98\x80!"), "\xf0\x9f\x98\x80!");
  EXPECT_EQ(clean_text("ab\xc3\xa9", 3), "ab");  // not half a character
  EXPECT_EQ(clean_text(std::string(10000, 'x')).size(), kMaxText);
}

TEST(Otlp, AttributesCarryEachValueTypeAtItsField) {
  ProtobufWriter span;
  add_attribute(span, kAttributes, "http.method", std::string_view("GET"));
  add_attribute(span, kAttributes, "http.status_code", int64_t{-2});
  add_attribute(span, kAttributes, "ratio", 0.5);
  add_attribute(span, kAttributes, "canary", true);
  FieldSet set = parse(span.bytes());
  ASSERT_EQ(set->field_count(), 4);
  FieldSet key = parse(find(set, kSpanAttributes, 0)->length_delimited());
  EXPECT_EQ(find(key, 1)->length_delimited(), "http.method");
  EXPECT_EQ(find(value_of(*find(set, kSpanAttributes, 0)), 1)->length_delimited(), "GET");
  FieldSet int_value = value_of(*find(set, kSpanAttributes, 1));
  const UnknownField* i = find(int_value, 3);
  ASSERT_EQ(i->type(), UnknownField::TYPE_VARINT);
  EXPECT_EQ(static_cast<int64_t>(i->varint()), -2);  // int64: two's complement, ten bytes
  FieldSet double_value = value_of(*find(set, kSpanAttributes, 2));
  const UnknownField* d = find(double_value, 4);
  ASSERT_EQ(d->type(), UnknownField::TYPE_FIXED64);
  double back;
  uint64_t bits = d->fixed64();
  std::memcpy(&back, &bits, sizeof back);
  EXPECT_EQ(back, 0.5);
  EXPECT_EQ(find(value_of(*find(set, kSpanAttributes, 3)), 2)->varint(), 1u);
}

TEST(Otlp, SpanFieldsTimesAndStatus) {
  ProtobufWriter span;
  span.bytes_field(kTraceId, std::string(16, '\x11'));
  span.varint_field(kKind, kServer);
  span.fixed64_field(kStartTime, 1700000000123456789ull);
  add_status(span, kStatusError, "upstream response status: 502");
  FieldSet set = parse(span.bytes());
  EXPECT_EQ(find(set, kSpanTraceId)->length_delimited(), std::string(16, '\x11'));
  EXPECT_EQ(find(set, kSpanKind)->varint(), 2u);
  ASSERT_EQ(find(set, kSpanStart)->type(), UnknownField::TYPE_FIXED64);
  EXPECT_EQ(find(set, kSpanStart)->fixed64(), 1700000000123456789ull);
  FieldSet status = parse(find(set, kSpanStatus)->length_delimited());
  EXPECT_EQ(find(status, 2)->length_delimited(), "upstream response status: 502");
  EXPECT_EQ(find(status, 3)->varint(), 2u);
}

TEST(Otlp, AnExportRequestNestsResourceScopeAndSpans) {
  std::string resource = encode_resource({{"service.name", std::string("edge")}, {"n", 3.0}});
  std::string request = export_request(resource, "portico",
                                       {"\x2a\x01"
                                        "a",
                                        "\x2a\x01"
                                        "b"});
  FieldSet top = parse(request);
  ASSERT_EQ(top->field_count(), 1);
  FieldSet resource_spans = parse(find(top, 1)->length_delimited());
  EXPECT_EQ(find(resource_spans, 1)->length_delimited(), resource);
  FieldSet scope_spans = parse(find(resource_spans, 2)->length_delimited());
  FieldSet scope = parse(find(scope_spans, 1)->length_delimited());
  EXPECT_EQ(find(scope, 1)->length_delimited(), "portico");
  FieldSet first = parse(find(scope_spans, 2, 0)->length_delimited());
  EXPECT_EQ(find(first, kSpanName)->length_delimited(), "a");
  FieldSet second = parse(find(scope_spans, 2, 1)->length_delimited());
  EXPECT_EQ(find(second, kSpanName)->length_delimited(), "b");
  EXPECT_FALSE(find(scope_spans, 2, 2));
  FieldSet res = parse(resource);
  EXPECT_EQ(res->field_count(), 2);
}

}  // namespace
}  // namespace portico::plugins::trace::otlp
