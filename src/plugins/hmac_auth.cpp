// hmac-auth (APISIX 3.11+ priority 2530, rewrite): the client signs the request with a secret
// it shares with the gateway (HTTP Signatures: `Authorization: Signature keyId="...",
// algorithm="hmac-sha256",headers="@request-target date",signature="..."`); the consumer is the
// key's. For server-to-server APIs, where a bearer key would travel in every request.
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <ctime>

#include "core/base64.hpp"
#include "core/deadline.hpp"
#include "core/log.hpp"
#include "plugins/consumers.hpp"
#include "plugins/context.hpp"
#include "plugins/plugin.hpp"

namespace portico::plugins {
namespace {

constexpr std::string_view kRefused = "client request can't be validated";

struct SharedSecret final : Credential {
  std::string secret;
};

struct SignatureFields {
  std::string key_id, algorithm, signature;
  std::vector<std::string> headers;
  bool has_headers = false;
};

// `Signature keyId="..",algorithm="..",headers="..",signature=".."`: fields in any order,
// unknown ones ignored (APISIX's reading).
std::optional<SignatureFields> parse_signature(std::string_view auth) {
  if (!auth.starts_with("Signature")) return std::nullopt;
  auth.remove_prefix(9);
  SignatureFields f;
  while (!auth.empty()) {
    size_t comma = auth.find(',');
    std::string_view field = auth.substr(0, comma);
    auth = comma == std::string_view::npos ? std::string_view() : auth.substr(comma + 1);
    while (!field.empty() && (field.front() == ' ' || field.front() == '\t'))
      field.remove_prefix(1);
    size_t eq = field.find("=\"");
    if (eq == std::string_view::npos) continue;
    std::string_view key = field.substr(0, eq);
    std::string_view value = field.substr(eq + 2);
    size_t close = value.find('"');
    if (close == std::string_view::npos) continue;
    value = value.substr(0, close);
    if (key == "keyId") {
      f.key_id = value;
    } else if (key == "algorithm") {
      f.algorithm = value;
    } else if (key == "signature") {
      f.signature = value;
    } else if (key == "headers") {
      f.has_headers = true;
      f.headers.clear();
      while (!value.empty()) {
        size_t space = value.find(' ');
        if (space != 0) f.headers.emplace_back(value.substr(0, space));
        if (space == std::string_view::npos) break;
        value.remove_prefix(space + 1);
      }
    }
  }
  return f;
}

// An IMF-fixdate (RFC 9110 5.6.7: "Sun, 06 Nov 1994 08:49:37 GMT") as seconds since the epoch.
std::optional<int64_t> http_date(std::string_view text) {
  std::string s(text);
  std::tm tm{};
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end != '\0') return std::nullopt;
  return static_cast<int64_t>(timegm(&tm));
}

const EVP_MD* digest_named(std::string_view algorithm) {
  if (algorithm == "hmac-sha1") return EVP_sha1();
  if (algorithm == "hmac-sha256") return EVP_sha256();
  if (algorithm == "hmac-sha512") return EVP_sha512();
  return nullptr;
}

class HmacAuth final : public Plugin {
 public:
  std::vector<std::string> allowed{"hmac-sha1", "hmac-sha256", "hmac-sha512"};
  int64_t clock_skew = 300;
  std::vector<std::string> signed_headers{"date"};
  bool validate_body = false;
  bool hide_credentials = false;

  Step rewrite(Context& ctx) const override {
    std::string_view auth = ctx.header("authorization");
    if (auth.empty()) return refuse_with(ctx, "missing Authorization header");
    std::optional<SignatureFields> f = parse_signature(auth);
    if (!f) return refuse_with(ctx, "Authorization header does not start with 'Signature'");
    if (std::string why = check(ctx, *f); !why.empty()) {
      log::warn(std::string(kRefused) + ": " + why);
      ctx.respond_message(401, kRefused);
      return Step::Respond;
    }
    if (hide_credentials)
      ctx.upstream.headers.push_back({HeaderEdit::Op::Remove, "Authorization", ""});
    // Without a body there is no body phase: the digest is the empty body's.
    if (validate_body && !ctx.req->has_body()) return body(ctx, {});
    return Step::Continue;
  }

  // The body's digest (`Digest: SHA-256=<base64>`), once the body is read.
  size_t body_limit() const override { return validate_body ? kMaxBody : 0; }
  Step body(Context& ctx, std::string_view body) const override {
    if (!validate_body) return Step::Continue;
    if (ctx.req->content_length > static_cast<int64_t>(body.size())) {
      ctx.respond_message(413, "the body is too large to check its digest (1 MiB at most)");
      return Step::Respond;
    }
    unsigned char sum[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), sum);
    std::string expected =
        "SHA-256=" + base64_encode(std::string_view(reinterpret_cast<char*>(sum), sizeof sum));
    if (ctx.header("digest") == expected) return Step::Continue;
    log::warn(std::string(kRefused) + ": Invalid digest");
    ctx.respond_message(401, kRefused);
    return Step::Respond;
  }

 private:
  static constexpr size_t kMaxBody = 1024 * 1024;

  static Step refuse_with(Context& ctx, std::string_view why) {
    ctx.respond_message(401, std::string(kRefused) + ": " + std::string(why));
    return Step::Respond;
  }

  // Empty when the request is signed as it must be; else why not (logged, not answered).
  std::string check(Context& ctx, const SignatureFields& f) const {
    if (f.key_id.empty() || f.signature.empty()) return "keyId or signature missing";
    if (f.algorithm.empty()) return "algorithm missing";
    ConsumerTable::Found found =
        ctx.consumers ? ctx.consumers->find("hmac-auth", f.key_id) : ConsumerTable::Found{};
    if (!found.consumer) return "Invalid key_id";
    if (std::find(allowed.begin(), allowed.end(), f.algorithm) == allowed.end())
      return "Invalid algorithm";
    auto is_signed = [&](std::string_view name) {
      return std::any_of(f.headers.begin(), f.headers.end(),
                         [&](const std::string& h) { return http::iequals(h, name); });
    };
    // The time checked is the signed one when there is one: an unsigned fresh Date beside a
    // signed old X-Date must not make a captured request new again.
    std::string_view date_name = is_signed("date")             ? "date"
                                 : is_signed("x-date")         ? "x-date"
                                 : !ctx.header("date").empty() ? "date"
                                                               : "x-date";
    std::string_view date = ctx.header(date_name);
    if (date.empty()) return "Date header missing. failed to validate clock skew";
    std::optional<int64_t> when = http_date(date);
    if (!when) return "Invalid GMT format time";
    if (std::abs(wall_now_ms() / 1000 - *when) > clock_skew) return "Clock skew exceeded";
    if (!signed_headers.empty() && !f.has_headers) return "headers missing";
    for (const std::string& h : signed_headers) {
      if (!is_signed(h)) return "expected header \"" + h + "\" missing in signing";
      if (ctx.header(h).empty()) return "expected header \"" + h + "\" missing in request";
    }
    if (validate_body && !is_signed("digest")) return "the Digest header is not signed";
    // A signed header sent twice would be half signed: the second line goes upstream unseen.
    for (const std::string& h : f.headers) {
      int lines = 0;
      for (const auto& rh : ctx.req->headers) lines += http::iequals(rh.name, h);
      if (lines > 1) return "header \"" + h + "\" is sent more than once";
    }
    // keyId, then "@request-target" as "METHOD target" and each signed header present as
    // "name: value", one per line.
    std::string text = f.key_id + "\n";
    for (const std::string& h : f.headers) {
      if (h == "@request-target") {
        text.append(ctx.req->method).append(" ").append(ctx.req->target) += "\n";
        continue;
      }
      std::string_view value = ctx.header(h);
      if (!value.empty()) text.append(h).append(": ").append(value) += "\n";
    }
    const auto* secret = static_cast<const SharedSecret*>(found.credential);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(digest_named(f.algorithm), secret->secret.data(), static_cast<int>(secret->secret.size()),
         reinterpret_cast<const unsigned char*>(text.data()), text.size(), mac, &mac_len);
    std::optional<std::string> given = base64_decode(f.signature, Base64Alphabet::Standard);
    if (!given || given->size() != mac_len || CRYPTO_memcmp(given->data(), mac, mac_len) != 0)
      return "Invalid signature";
    ctx.consumer = found.consumer;
    return {};
  }
};

std::shared_ptr<const Plugin> create(const json& conf, const Scope&, const std::string& path,
                                     Errors& errors) {
  auto p = std::make_shared<HmacAuth>();
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  if (r.has("allowed_algorithms")) {
    p->allowed = r.string_list("allowed_algorithms");
    if (p->allowed.empty()) r.error("allowed_algorithms", "must list at least one algorithm");
    for (const std::string& a : p->allowed)
      if (!digest_named(a))
        r.error("allowed_algorithms",
                "\"" + a + "\": must be hmac-sha1, hmac-sha256 or hmac-sha512");
  }
  p->clock_skew = r.integer_or("clock_skew", 300, 1, 86400 * 365);
  if (r.has("signed_headers")) p->signed_headers = r.string_list("signed_headers");
  for (const std::string& h : p->signed_headers)
    if (h.empty() || h.size() > 50) r.error("signed_headers", "names must be 1..50 characters");
  p->validate_body = r.boolean_or("validate_request_body", false);
  p->hide_credentials = r.boolean_or("hide_credentials", false);
  r.finish();
  if (errors.size() != before) return nullptr;
  return p;
}

std::shared_ptr<const Credential> consumer_credential(const json& conf, const std::string& path,
                                                      Errors& errors) {
  config::ObjectReader r(conf, path, errors);
  size_t before = errors.size();
  std::string key_id = r.string_or("key_id", "");
  std::string secret = r.string_or("secret_key", "");
  if (key_id.empty() || key_id.size() > 256) r.error("key_id", "is required (1..256 characters)");
  if (secret.empty() || secret.size() > 256)
    r.error("secret_key", "is required (1..256 characters)");
  r.finish();
  if (errors.size() != before) return nullptr;
  auto c = std::make_shared<SharedSecret>();
  c->lookup_key = key_id;
  c->secret = secret;
  return c;
}

}  // namespace

const PluginType& hmac_auth_plugin() {
  static const PluginType type{"hmac-auth", 2530, &create, &consumer_credential};
  return type;
}

}  // namespace portico::plugins
