// The php-injection rule set against two corpora (corpus/attacks.txt, corpus/benign.txt): every
// attack is blocked by the expected rule wherever it is put in a request, however it is encoded;
// no benign request is blocked.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/hex.hpp"
#include "plugins/waf/scanner.hpp"

using namespace portico::plugins::waf;

namespace {

struct Request {
  std::string path = "/";
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string content_type;
  std::string body;
  size_t chunk = 0;  // > 0: the body is streamed in chunks of this size
};

// What the gateway would send the plugin: id of the blocking rule, "" when the request passes.
std::string verdict(const Policy& policy, const Request& req) {
  Scanner scanner(policy);
  scanner.scan_uri(req.path);
  scanner.scan_query(req.query);
  for (const auto& [name, value] : req.headers) scanner.scan_header(name, value);
  if (!req.body.empty()) {
    if (req.chunk == 0) {
      scanner.scan_body(req.content_type, req.body);
    } else {
      scanner.begin_body(req.content_type);
      for (size_t at = 0; at < req.body.size(); at += req.chunk)
        scanner.feed_body(std::string_view(req.body).substr(at, req.chunk));
      scanner.end_body();
    }
  }
  EXPECT_FALSE(scanner.failed());
  return scanner.blocked() ? scanner.blocking_rule()->id : "";
}

std::string hex_byte(unsigned char c) {
  return {'%', portico::hex::kUpperDigits[c >> 4], portico::hex::kUpperDigits[c & 15]};
}

bool unreserved(unsigned char c) { return std::isalnum(c) || c == '-' || c == '.' || c == '_'; }

std::string percent_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) out += unreserved(c) ? std::string(1, c) : hex_byte(c);
  return out;
}

std::string form_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) out += c == ' ' ? "+" : unreserved(c) ? std::string(1, c) : hex_byte(c);
  return out;
}

// Every non-alphanumeric byte as a two-byte overlong UTF-8 sequence, percent-encoded.
std::string overlong_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c))
      out += static_cast<char>(c);
    else
      out += hex_byte(0xC0 | (c >> 6)) + hex_byte(0x80 | (c & 0x3F));
  }
  return out;
}

std::string json_unicode_escape(std::string_view s) {
  std::string out = R"({"comment":")";
  char buf[8];
  for (unsigned char c : s) {
    snprintf(buf, sizeof buf, "\\u%04x", c);
    out += buf;
  }
  return out + "\"}";
}

std::string json_body(std::string_view s) {
  return nlohmann::json{{"id", 7}, {"comment", std::string(s)}}.dump();
}

Request with_header(std::string name, std::string value) {
  Request r;
  r.path = "/api/profile";
  r.headers = {{"Host", "example.com"}, {std::move(name), std::move(value)}};
  return r;
}

Request with_body(std::string content_type, std::string body, size_t chunk = 0) {
  Request r;
  r.path = "/api/comments";
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  r.chunk = chunk;
  return r;
}

// Every place, and every encoding, a payload can come in.
std::vector<std::pair<std::string, Request>> placements(const std::string& p) {
  auto in_query = [](std::string q) {
    Request r;
    r.path = "/search";
    r.query = "page=1&q=" + std::move(q);
    return r;
  };
  Request in_path;
  in_path.path = "/api/" + percent_encode(p);
  const std::string nul = p.substr(0, 1) + "%00" + percent_encode(p.substr(1));
  return {
      {"path", in_path},
      {"query", in_query(form_encode(p))},
      {"query double-encoded", in_query(percent_encode(percent_encode(p)))},
      {"query with NUL", in_query(nul)},
      {"query overlong UTF-8", in_query(overlong_encode(p))},
      {"User-Agent", with_header("User-Agent", p)},
      {"Referer", with_header("referer", "https://example.com/?q=" + percent_encode(p))},
      {"cookie", with_header("Cookie", "session=abc; c=" + percent_encode(p))},
      {"form body", with_body("application/x-www-form-urlencoded", "a=1&c=" + form_encode(p))},
      {"form body, 1-byte chunks",
       with_body("application/x-www-form-urlencoded", "a=1&c=" + form_encode(p), 1)},
      {"JSON body", with_body("application/json", json_body(p))},
      {"JSON body, \\u-escaped", with_body("application/json", json_unicode_escape(p))},
      {"JSON body, \\u-escaped, 3-byte chunks",
       with_body("application/json; charset=utf-8", json_unicode_escape(p), 3)},
      {"JSON body sent as text/plain", with_body("text/plain", json_unicode_escape(p))},
      {"JSON body, 7-byte chunks", with_body("application/json", json_body(p), 7)},
  };
}

std::vector<std::pair<std::string, std::string>> read_corpus(const std::string& name) {
  const auto file =
      std::filesystem::path(PORTICO_SOURCE_DIR) / "tests/unit/plugins/waf/corpus" / name;
  std::ifstream in(file);
  EXPECT_TRUE(in) << "cannot read " << file;
  std::vector<std::pair<std::string, std::string>> lines;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    EXPECT_NE(tab, std::string::npos) << line;
    std::string value = line.substr(tab + 1);
    for (size_t at; (at = value.find("{LF}")) != std::string::npos;) value.replace(at, 4, "\n");
    for (size_t at; (at = value.find("{CR}")) != std::string::npos;) value.replace(at, 4, "\r");
    lines.emplace_back(line.substr(0, tab), std::move(value));
  }
  return lines;
}

std::shared_ptr<const Policy> php_policy() {
  portico::config::Errors errors;
  auto policy = Policy::compile(nlohmann::json::parse(R"({"rulesets": ["php-injection"]})"),
                                "plugins.waf", errors);
  EXPECT_TRUE(errors.empty()) << errors.to_string();
  return policy;
}

}  // namespace

TEST(WafPhpInjectionCorpus, EveryAttackIsBlockedByItsRuleWhereverItIs) {
  auto policy = php_policy();
  ASSERT_TRUE(policy);
  const auto attacks = read_corpus("attacks.txt");
  ASSERT_GE(attacks.size(), 80u);
  int failures = 0;
  for (const auto& [expected, payload] : attacks) {
    for (const auto& [where, request] : placements(payload)) {
      const std::string got = verdict(*policy, request);
      const bool ok =
          !got.empty() && ("," + expected + ",").find("," + got + ",") != std::string::npos;
      if (!ok && ++failures <= 40)
        ADD_FAILURE() << "payload [" << payload << "] in " << where << ": expected " << expected
                      << ", got " << (got.empty() ? "not blocked" : got);
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(WafPhpInjectionCorpus, NoBenignRequestIsBlocked) {
  auto policy = php_policy();
  ASSERT_TRUE(policy);
  const auto benign = read_corpus("benign.txt");
  ASSERT_GE(benign.size(), 60u);
  int checked = 0;
  auto check = [&](const std::string& where, const std::string& value, const Request& request) {
    ++checked;
    const std::string got = verdict(*policy, request);
    EXPECT_EQ(got, "") << "[" << value << "] in " << where << " blocked";
  };
  for (const auto& [kind, value] : benign) {
    if (kind == "text") {
      for (const auto& [where, request] : placements(value)) check(where, value, request);
    } else if (kind == "uri") {
      Request r;
      const size_t q = value.find('?');
      r.path = value.substr(0, q);
      r.query = q == std::string::npos ? "" : value.substr(q + 1);
      check("uri", value, r);
    } else if (kind == "ua") {
      check("User-Agent", value, with_header("User-Agent", value));
    } else if (kind == "cookie") {
      check("cookie", value, with_header("Cookie", value));
    } else if (kind == "form") {
      check("form body", value, with_body("application/x-www-form-urlencoded", value));
    } else if (kind == "json") {
      check("JSON body", value, with_body("application/json", value));
      check("JSON body, 5-byte chunks", value, with_body("application/json", value, 5));
    } else {
      ADD_FAILURE() << "unknown kind " << kind;
    }
  }
  EXPECT_GE(checked, 500);
  for (size_t i = 0; i < policy->rules().size(); ++i)
    EXPECT_EQ(policy->matches(i), 0u) << policy->rules()[i].id;
}

TEST(WafPhpInjectionCorpus, TheSetHasAboutFiftyFiveRulesEachCoveredByTheCorpus) {
  auto policy = php_policy();
  ASSERT_TRUE(policy);
  EXPECT_GE(policy->rules().size(), 50u);
  EXPECT_LE(policy->rules().size(), 60u);
  std::string corpus_ids;
  for (const auto& [ids, payload] : read_corpus("attacks.txt")) corpus_ids += "," + ids + ",";
  for (const auto& rule : policy->rules())
    EXPECT_NE(corpus_ids.find("," + rule.id + ","), std::string::npos)
        << rule.id << " has no attack in the corpus";
}
