#include "bridge/tlv_envelope.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "proto_test_util.hpp"

namespace portico::bridge {
namespace {

using json = nlohmann::json;

class TlvEnvelope : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(
        types.bind({{0x1001, "Inner"}, {0x1002, "test.im.Everything"}}, test_protos(), error))
        << error;
  }
  // Encodes the envelope and decodes the frame it became.
  stream::TlvFrame encode(const std::string& text) {
    out.clear();
    EnvelopeError error;
    EXPECT_TRUE(envelope_to_tlv(text, framing, types, out, error)) << error.message;
    auto r = stream::TlvDecoder(framing).decode(out);
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.frame.bytes.size(), out.size());
    return r.frame;
  }
  EnvelopeError refuse(const std::string& text) {
    out.clear();
    EnvelopeError error;
    EXPECT_FALSE(envelope_to_tlv(text, framing, types, out, error)) << text;
    EXPECT_TRUE(out.empty());
    return error;
  }
  stream::TlvFraming framing;
  CmdTypes types;
  std::string out;
};

TEST_F(TlvEnvelope, BindReportsAMissingType) {
  CmdTypes t;
  std::string error;
  EXPECT_FALSE(t.bind({{7, "NoSuchType"}}, test_protos(), error));
  EXPECT_NE(error.find("NoSuchType"), std::string::npos) << error;
}

TEST_F(TlvEnvelope, EnvelopeBecomesAFrameWithEveryHeaderField) {
  stream::TlvFrame f =
      encode(R"({"id": 7, "cmd": 4097, "from": 11, "to": 22, "status": 3, "data": {"name": "n"}})");
  EXPECT_EQ(f.header.cmd, 0x1001u);
  EXPECT_EQ(f.header.seq, 7u);
  EXPECT_EQ(f.header.from, 11u);
  EXPECT_EQ(f.header.to, 22u);
  EXPECT_EQ(f.header.status, 3u);
  EXPECT_EQ(f.header.version, 1u);
  EXPECT_EQ(stream::as_chars(f.body), std::string("\x0a\x01n", 3));
}

TEST_F(TlvEnvelope, RawBodyTravelsAsBase64) {
  stream::TlvFrame f = encode(R"({"cmd": 36865, "body": "AAH/"})");
  EXPECT_EQ(stream::as_chars(f.body), std::string("\x00\x01\xff", 3));
  json back = json::parse(tlv_to_envelope(f, types));
  EXPECT_EQ(back["body"], "AAH/");  // no type for 0x9001: raw again
  EXPECT_FALSE(back.contains("data"));
}

TEST_F(TlvEnvelope, FrameBecomesAnEnvelopeWithData) {
  stream::TlvFrame f =
      encode(R"({"id": 9, "cmd": 4098, "to": 5, "data": {"u64": "18446744073709551615"}})");
  json env = json::parse(tlv_to_envelope(f, types));
  EXPECT_EQ(env["id"], 9);
  EXPECT_EQ(env["cmd"], 4098);
  EXPECT_EQ(env["to"], 5);
  EXPECT_EQ(env["from"], 0);
  EXPECT_EQ(env["status"], 0);
  EXPECT_EQ(env["data"]["u64"], "18446744073709551615");
  EXPECT_EQ(env["data"]["color"], "RED");
}

TEST_F(TlvEnvelope, ABodyThatIsNotItsTypeComesAsRawWithAnError) {
  std::string frame;
  stream::TlvHeader h;
  h.cmd = 0x1001;
  ASSERT_TRUE(
      stream::append_tlv(framing, h, stream::as_bytes(std::string("\xff\xff\xff", 3)), frame));
  auto r = stream::TlvDecoder(framing).decode(frame);
  ASSERT_TRUE(r.ok());
  json env = json::parse(tlv_to_envelope(r.frame, types));
  EXPECT_EQ(env["body"], "////");
  EXPECT_NE(env["error"].get<std::string>().find("test.im.Inner"), std::string::npos);
}

TEST_F(TlvEnvelope, Refusals) {
  EXPECT_NE(refuse("not json").message.find("JSON object"), std::string::npos);
  EXPECT_NE(refuse("[1]").message.find("JSON object"), std::string::npos);
  EXPECT_EQ(refuse(R"({"id": 1})").message, "cmd: is required");
  EXPECT_EQ(refuse(R"({"cmd": 1, "extra": 2})").message,
            "extra: unknown field (expected id, cmd, from, to, status, data, body)");
  EnvelopeError unknown = refuse(R"({"id": 2, "cmd": 7, "extra": 1})");
  EXPECT_EQ(unknown.id, 2u);  // the answer still names the request
  EXPECT_EQ(unknown.cmd, 7u);
  EXPECT_EQ(refuse(R"({"cmd": -1})").message, "cmd: expected an unsigned integer");
  EXPECT_EQ(refuse(R"({"cmd": 70000})").message, "cmd: must be at most 65535");
  EXPECT_EQ(refuse(R"({"cmd": 1, "id": 65536})").message, "id: must be at most 65535");
  EXPECT_EQ(refuse(R"({"cmd": 1, "from": 4294967296})").message,
            "from: must be at most 4294967295");
  EXPECT_EQ(refuse(R"({"cmd": 1, "body": "***"})").message, "body: expected base64");
  EXPECT_EQ(refuse(R"({"cmd": 1, "data": {}, "body": ""})").message,
            "give either data or body, not both");
  EnvelopeError e = refuse(R"({"id": 4, "cmd": 5, "data": {}})");
  EXPECT_NE(e.message.find("no message type is configured for cmd 5"), std::string::npos);
  EXPECT_EQ(e.id, 4u);
  EXPECT_EQ(e.cmd, 5u);
  e = refuse(R"({"id": 3, "cmd": 4097, "data": {"name": 1}})");
  EXPECT_EQ(e.message, "data.name: expected a string, got 1");
  json answer = json::parse(error_envelope(e, 400));
  EXPECT_EQ(answer["cmd"], 4098);
  EXPECT_EQ(answer["id"], 3);
  EXPECT_EQ(answer["status"], 400);
  EXPECT_EQ(answer["error"], "data.name: expected a string, got 1");
}

TEST_F(TlvEnvelope, BodiesOverMaxBodyAreRefused) {
  framing.max_body = 4;
  EXPECT_NE(refuse(R"({"cmd": 1, "body": "AAAAAAAA"})").message.find("over max_body 4"),
            std::string::npos);
}

TEST_F(TlvEnvelope, FieldsTheFramingLacksMustStayZero) {
  framing.from = {};  // a protocol without a sender field
  EXPECT_EQ(refuse(R"({"cmd": 1, "from": 3})").message,
            "from: this framing has no such header field");
  encode(R"({"cmd": 1, "from": 0})");
}

TEST_F(TlvEnvelope, DeepNestingIsRefusedBeforeParsing) {
  std::string deep = "{\"cmd\": 4097, \"data\": {\"name\": " + std::string(100000, '[') + "1" +
                     std::string(100000, ']') + "}}";
  EXPECT_NE(refuse(deep).message.find("nested too deeply"), std::string::npos);
  // brackets inside strings do not count
  stream::TlvFrame f =
      encode("{\"cmd\": 4097, \"data\": {\"name\": \"" + std::string(500, '[') + "\"}}");
  EXPECT_EQ(f.body.size(), 503u);
}

TEST_F(TlvEnvelope, ANullCmdIsMissing) {
  EXPECT_EQ(refuse(R"({"cmd": null})").message, "cmd: is required");
}

}  // namespace
}  // namespace portico::bridge
