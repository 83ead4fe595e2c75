#include "plugins/waf/normalizer.hpp"

#include <gtest/gtest.h>

using portico::plugins::waf::Decoding;
using portico::plugins::waf::Normalizer;

namespace {

std::string decode(std::string_view in, Decoding decoding = Decoding::Url) {
  Normalizer n(decoding);
  std::string out;
  return std::string(n.decode(in, out));
}

// The same input fed in pieces of `piece` bytes must decode exactly as in one go.
std::string decode_in_pieces(std::string_view in, Decoding decoding, size_t piece) {
  Normalizer n(decoding);
  std::string out, all;
  for (size_t at = 0; at < in.size(); at += piece) all += n.feed(in.substr(at, piece), out);
  out.clear();
  n.finish(out);
  return all + out;
}

}  // namespace

TEST(WafNormalizer, CleanInputComesBackWithoutACopy) {
  Normalizer n(Decoding::Json);
  std::string out;
  std::string_view in = R"({"user":"alice","text":"hello world"})";
  EXPECT_EQ(n.decode(in, out).data(), in.data());
  EXPECT_TRUE(out.empty());
}

TEST(WafNormalizer, PercentDecodingIsRepeated) {
  EXPECT_EQ(decode("%3C%3Fphp"), "<?php");
  EXPECT_EQ(decode("%253C%253Fphp"), "<?php");  // double
  EXPECT_EQ(decode("%25253Cx"), "<x");          // triple
  EXPECT_EQ(decode("%2525253Cx"), "%3Cx");      // a fourth round is not done
  EXPECT_EQ(decode("%%33%43"), "<");            // hex digits encoded themselves
  EXPECT_EQ(decode("%u0073ystem"), "system");   // IIS %u
  EXPECT_EQ(decode("%u00e9"), "\xc3\xa9");      // non-ASCII %u becomes UTF-8
}

TEST(WafNormalizer, InvalidEscapesStayAsTheyCame) {
  EXPECT_EQ(decode("50% off"), "50% off");
  EXPECT_EQ(decode("100%"), "100%");
  EXPECT_EQ(decode("%zz%4"), "%zz%4");
  EXPECT_EQ(decode("%u12"), "%u12");
  EXPECT_EQ(decode("%%41"), "%A");
}

TEST(WafNormalizer, PlusIsSpaceOnlyInForms) {
  EXPECT_EQ(decode("a+b%2Bc", Decoding::Form), "a b+c");
  EXPECT_EQ(decode("a+b", Decoding::Url), "a+b");
  EXPECT_EQ(decode("a+b", Decoding::Json), "a+b");
}

TEST(WafNormalizer, NulBytesAreDropped) {
  EXPECT_EQ(decode("sys%00tem"), "system");
  EXPECT_EQ(decode(std::string_view("sys\0tem", 7)), "system");
  EXPECT_EQ(decode("sys%2500tem"), "system");   // NUL double-encoded
  EXPECT_EQ(decode("sys%c0%80tem"), "system");  // overlong NUL
}

TEST(WafNormalizer, OverlongUtf8FoldsToAscii) {
  EXPECT_EQ(decode("..%c0%af..%c0%afetc"), "../../etc");
  EXPECT_EQ(decode("%c1%9c"), "\\");
  EXPECT_EQ(decode("%e0%80%bc"), "<");     // 3-byte overlong '<'
  EXPECT_EQ(decode("%f0%80%80%bc"), "<");  // 4-byte overlong '<'
  EXPECT_EQ(decode("%25c0%25af"), "/");    // double-encoded overlong
}

TEST(WafNormalizer, ValidUtf8IsUntouched) {
  const std::string text = "caf\xc3\xa9 \xe0\xa4\x85 \xf0\x9f\x98\x80 \xe4\xbd\xa0\xe5\xa5\xbd";
  EXPECT_EQ(decode(text), text);
  EXPECT_EQ(decode("%f0%9f%98%80"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(decode("\xc0"), "\xc0");  // truncated: released as is
  EXPECT_EQ(decode("\xc0x"), "\xc0x");
}

TEST(WafNormalizer, JsonEscapesAreDecoded) {
  EXPECT_EQ(decode(R"J({"a":"\u0073ystem(\u0027id\u0027)"})J", Decoding::Json),
            R"J({"a":"system('id')"})J");
  EXPECT_EQ(decode(R"(\/\"\\\n\t)", Decoding::Json), "/\"\\\n\t");
  EXPECT_EQ(decode(R"(\u003c?php)", Decoding::Json), "<?php");
  EXPECT_EQ(decode(R"(\u0025\u0033C)", Decoding::Json), "<");  // JSON-escaped percent escape
  EXPECT_EQ(decode(R"(a\u0000b)", Decoding::Json), "ab");
  EXPECT_EQ(decode(R"(\x \u12G)", Decoding::Json), R"(\x \u12G)");
  EXPECT_EQ(decode(R"(\u00e9)", Decoding::Json), "\xc3\xa9");
}

TEST(WafNormalizer, StreamedPiecesDecodeLikeTheWhole) {
  const std::string inputs[] = {
      "x=%253Cphp%25%33%43+%u0073ys%00tem%c0%af%e0%80%bc..%f0%9f%98%80 50% %",
      R"J({"t":"\u0073ystem(\u0027i\/d\u0027) %2541 \"q\" \u00e9 \"})J",
  };
  for (const auto& input : inputs) {
    for (Decoding d : {Decoding::Url, Decoding::Form, Decoding::Json, Decoding::Raw}) {
      const std::string whole = decode(input, d);
      for (size_t piece = 1; piece <= 7; ++piece)
        EXPECT_EQ(decode_in_pieces(input, d, piece), whole) << "piece " << piece;
    }
  }
}

TEST(WafNormalizer, LongCleanRunsAroundEscapesSurviveTheFastPath) {
  std::string run(100, 'a');
  EXPECT_EQ(decode(run + "%41" + run + "\xc0\xaf" + run), run + "A" + run + "/" + run);
}

TEST(WafNormalizer, RawOnlyFoldsAndDropsNul) {
  EXPECT_EQ(decode(std::string_view("%41\0\xc0\xaf", 6), Decoding::Raw), "%41/");
}

// The vector search reads 16 bytes at a time and ends on an overlapping block: an escape, a
// '+' or an overlong lead must be found at every position of every length, and is_clean() must
// agree with decode().
TEST(WafNormalizer, EverySpecialIsFoundAtEveryPositionAndLength) {
  struct Case {
    std::string_view special;
    Decoding decoding;
    std::string_view decoded;
  };
  const Case cases[] = {{"%41", Decoding::Url, "A"},
                        {"+", Decoding::Form, " "},
                        {"\\n", Decoding::Json, "\n"},
                        {"\xc0\xaf", Decoding::Url, "/"},
                        {std::string_view("\0", 1), Decoding::Raw, ""}};
  for (const Case& c : cases) {
    for (size_t len = 0; len <= 40; ++len) {
      const std::string clean(len, 'a');
      EXPECT_TRUE(Normalizer::is_clean(clean, c.decoding));
      for (size_t at = 0; at <= len; ++at) {
        const std::string in = clean.substr(0, at) + std::string(c.special) + clean.substr(at);
        SCOPED_TRACE("length " + std::to_string(in.size()) + ", special at " + std::to_string(at));
        EXPECT_FALSE(Normalizer::is_clean(in, c.decoding));
        EXPECT_EQ(decode(in, c.decoding),
                  clean.substr(0, at) + std::string(c.decoded) + clean.substr(at));
      }
    }
  }
}
