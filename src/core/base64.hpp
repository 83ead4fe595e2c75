// Base64 (RFC 4648) for etcd's JSON gateway (standard, padded), JWTs (URL alphabet, no padding)
// and plugin configs (response-rewrite's body_base64, jwt-auth's base64_secret).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace portico {

enum class Base64Alphabet { Standard, Url, Either };  // Either: decoding only

// Standard is padded with '='; Url is not (JWS).
std::string base64_encode(std::string_view in, Base64Alphabet alphabet = Base64Alphabet::Standard);
// Padding is optional, but when present it must end the text and complete the last group of
// four. Null for a character outside the alphabet or a lone last character (truncated input).
std::optional<std::string> base64_decode(std::string_view in,
                                         Base64Alphabet alphabet = Base64Alphabet::Either);

}  // namespace portico
