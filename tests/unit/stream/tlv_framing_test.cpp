#include "stream/tlv_framing.hpp"

#include <gtest/gtest.h>

namespace portico::stream {
namespace {

using nlohmann::json;

TlvFraming parse_ok(const json& j) {
  config::Errors errors;
  TlvFraming f = parse_tlv_framing(j, "framing", errors);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  return f;
}

std::string parse_errors(const json& j) {
  config::Errors errors;
  parse_tlv_framing(j, "stream_routes[0].protocol.conf.framing", errors);
  return errors.to_string();
}

TEST(TlvFraming, DefaultIsTheLayoutOfTlvMd) {
  TlvFraming f;
  EXPECT_EQ(f.start_marker, 0x09);
  EXPECT_EQ(f.end_marker, 0x0A);
  EXPECT_EQ(f.header_size, 20);
  EXPECT_EQ(f.prefix_size(), 21u);
  EXPECT_EQ(f.suffix_size(), 1u);
  EXPECT_EQ(f.length, (TlvField{16, 4, false}));
  EXPECT_EQ(f.version, (TlvField{0, 1, false}));
  EXPECT_EQ(f.flags, (TlvField{1, 1, false}));
  EXPECT_EQ(f.cmd, (TlvField{2, 2, false}));
  EXPECT_EQ(f.seq, (TlvField{4, 2, false}));
  EXPECT_EQ(f.status, (TlvField{6, 2, false}));
  EXPECT_EQ(f.from, (TlvField{8, 4, false}));
  EXPECT_EQ(f.to, (TlvField{12, 4, false}));
  EXPECT_EQ(f.length_overhead(), 0u);
  EXPECT_EQ(f.max_body, 1024u * 1024u);
}

TEST(TlvFraming, EmptyObjectGivesTheDefault) { EXPECT_EQ(parse_ok(json::object()), TlvFraming{}); }

TEST(TlvFraming, CustomLayoutWithoutMarkersLittleEndian) {
  TlvFraming f = parse_ok(json::parse(R"({
    "start_marker": "none", "end_marker": "none", "header_size": 8, "byte_order": "little",
    "length": {"offset": 4, "width": 4, "includes_header": true},
    "fields": {"cmd": {"offset": 0, "width": 2}, "seq": {"offset": 2, "width": 2, "byte_order": "big"}},
    "max_body": "64k"})"));
  EXPECT_FALSE(f.has_start_marker());
  EXPECT_FALSE(f.has_end_marker());
  EXPECT_EQ(f.prefix_size(), 8u);
  EXPECT_EQ(f.length, (TlvField{4, 4, true}));
  EXPECT_TRUE(f.length_includes_header);
  EXPECT_EQ(f.length_overhead(), 8u);
  EXPECT_EQ(f.cmd, (TlvField{0, 2, true}));
  EXPECT_EQ(f.seq, (TlvField{2, 2, false}));
  // `fields` replaces the default layout: what it does not name is absent.
  EXPECT_FALSE(f.version.present());
  EXPECT_FALSE(f.from.present());
  EXPECT_FALSE(f.status.present());
  EXPECT_EQ(f.max_body, 64u * 1024u);
}

TEST(TlvFraming, LengthCountingMarkersAddsBothMarkerBytes) {
  TlvFraming f = parse_ok(json{
      {"length",
       {{"offset", 16}, {"width", 4}, {"includes_markers", true}, {"includes_header", true}}}});
  EXPECT_EQ(f.length_overhead(), 22u);
  TlvFraming only_start =
      parse_ok(json{{"end_marker", "none"},
                    {"length", {{"offset", 16}, {"width", 4}, {"includes_markers", true}}}});
  EXPECT_EQ(only_start.length_overhead(), 1u);
}

TEST(TlvFraming, MarkersCanBeOtherBytes) {
  TlvFraming f = parse_ok(json{{"start_marker", 0x7E}, {"end_marker", 0}});
  EXPECT_EQ(f.start_marker, 0x7E);
  EXPECT_EQ(f.end_marker, 0);
  EXPECT_TRUE(f.has_end_marker());
}

TEST(TlvFraming, FieldMarkedNoneIsAbsent) {
  TlvFraming f =
      parse_ok(json{{"fields", {{"cmd", {{"offset", 2}, {"width", 2}}}, {"to", "none"}}}});
  EXPECT_FALSE(f.to.present());
  EXPECT_TRUE(f.cmd.present());
}

TEST(TlvFraming, UserIdsMayBeEightBytes) {
  TlvFraming f = parse_ok(
      json{{"header_size", 24},
           {"length", {{"offset", 0}, {"width", 4}}},
           {"fields",
            {{"from", {{"offset", 8}, {"width", 8}}}, {"to", {{"offset", 16}, {"width", 8}}}}}});
  EXPECT_EQ(f.from, (TlvField{8, 8, false}));
  EXPECT_EQ(f.to, (TlvField{16, 8, false}));
}

TEST(TlvFraming, ErrorsNameTheirField) {
  const std::string p = "stream_routes[0].protocol.conf.framing";
  EXPECT_EQ(parse_errors(json{{"start_marker", 256}}),
            p + ".start_marker: must be a byte value 0..255 or \"none\"\n");
  EXPECT_EQ(parse_errors(json{{"end_marker", "nope"}}),
            p + ".end_marker: must be a byte value 0..255 or \"none\"\n");
  EXPECT_EQ(parse_errors(json{{"length", {{"offset", 16}, {"width", 3}}}}),
            p + ".length.width: must be 1, 2 or 4\n");
  EXPECT_EQ(parse_errors(json{{"fields", {{"cmd", {{"offset", 0}, {"width", 8}}}}}}),
            p + ".fields.cmd.width: must be 1, 2 or 4\n");
  EXPECT_EQ(parse_errors(json{{"fields", {{"seq", {{"width", 2}}}}}}),
            p + ".fields.seq.offset: is required\n");
  EXPECT_EQ(parse_errors(json{{"byte_order", "middle"}}),
            p + ".byte_order: must be \"big\" or \"little\"\n");
  EXPECT_EQ(parse_errors(json{{"bogus", 1}}), p + ".bogus: unknown field\n");
  EXPECT_EQ(parse_errors(json{{"length", {{"offset", 16}, {"width", 4}, {"counts", 1}}}}),
            p + ".length.counts: unknown field\n");
  EXPECT_EQ(parse_errors(json{{"header_size", 0}}), p + ".header_size: must be 1..1024\n");
  EXPECT_EQ(parse_errors(json{{"max_body", "2g"}}), p + ".max_body: must be 0..1073741824 bytes\n");
  EXPECT_EQ(parse_errors(json("x")), p + ": must be an object\n");
}

TEST(TlvFraming, FieldOutsideTheHeaderIsAnError) {
  const std::string p = "stream_routes[0].protocol.conf.framing";
  EXPECT_EQ(parse_errors(json{{"header_size", 8},
                              {"length", {{"offset", 4}, {"width", 4}}},
                              {"fields", {{"cmd", {{"offset", 6}, {"width", 4}}}}}}),
            p + ".fields.cmd: lies outside the header (offset 6 + width 4 > header_size 8)\n");
  EXPECT_EQ(parse_errors(json{{"header_size", 8},
                              {"length", {{"offset", 6}, {"width", 4}}},
                              {"fields", json::object()}}),
            p + ".length: lies outside the header (offset 6 + width 4 > header_size 8)\n");
  // A smaller header with the default layout names every default field that no longer fits.
  std::string errors =
      parse_errors(json{{"header_size", 12}, {"length", {{"offset", 0}, {"width", 4}}}});
  EXPECT_NE(errors.find(p + ".fields.to: lies outside the header"), std::string::npos) << errors;
  EXPECT_EQ(errors.find(".fields.from:"), std::string::npos) << errors;
}

TEST(TlvFraming, JsonFormRoundTrips) {
  TlvFraming custom = parse_ok(json::parse(R"({
    "start_marker": 126, "end_marker": "none", "header_size": 10,
    "length": {"offset": 0, "width": 2, "byte_order": "little", "includes_markers": true},
    "fields": {"cmd": {"offset": 2, "width": 4}, "to": {"offset": 6, "width": 4}},
    "max_body": 4096})"));
  EXPECT_EQ(parse_ok(tlv_framing_to_json(custom)), custom);
  EXPECT_EQ(parse_ok(tlv_framing_to_json(TlvFraming{})), TlvFraming{});
}

}  // namespace
}  // namespace portico::stream
