#include "http/http_parser.hpp"

#include <array>
#include <cstring>

namespace portico::http {
namespace {

// tchar per RFC 9110 5.6.2
constexpr std::array<bool, 256> make_tchar_table() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto kTchar = make_tchar_table();

// field-vchar, SP, HTAB and obs-text; no other control characters (NUL, CR, LF, DEL...)
constexpr std::array<bool, 256> make_value_table() {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x7f; ++c) t[c] = true;
  for (int c = 0x80; c < 0x100; ++c) t[c] = true;
  t['\t'] = true;
  return t;
}
constexpr auto kValueChar = make_value_table();

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Reads the next line starting at `pos`. Returns false when no LF is buffered yet. A line may end
// in CRLF or a bare LF (as nginx accepts); a CR anywhere else is an error flagged via `bad_cr`.
bool next_line(std::string_view buf, size_t& pos, std::string_view& line, bool& bad_cr) {
  const void* lf = std::memchr(buf.data() + pos, '\n', buf.size() - pos);
  if (!lf) return false;
  size_t end = static_cast<const char*>(lf) - buf.data();
  size_t content_end = end;
  if (content_end > pos && buf[content_end - 1] == '\r') --content_end;
  line = buf.substr(pos, content_end - pos);
  bad_cr = line.find('\r') != std::string_view::npos;
  pos = end + 1;
  return true;
}

// Parses a Content-Length value: digits, or a list of identical digit strings ("5, 5").
bool parse_content_length(std::string_view v, int64_t& out) {
  int64_t first = -1;
  while (true) {
    size_t comma = v.find(',');
    std::string_view item = trim(v.substr(0, comma));
    if (item.empty() || item.size() > 18) return false;
    int64_t n = 0;
    for (char c : item) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + (c - '0');
    }
    if (first >= 0 && n != first) return false;
    first = n;
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  out = first;
  return true;
}

struct HeaderFacts {
  int64_t content_length = -1;
  bool saw_content_length = false;
  int te_chunked = 0;  // count of "chunked" codings seen
  bool te_other = false;
  bool te_chunked_not_last = false;
  bool saw_te = false;
  std::string_view connection;
  int connection_lines = 0;
  std::string_view host;
  int host_count = 0;
  std::string_view expect;
  bool upgrade_websocket = false;
};

// Parses header lines from `pos` up to and including the empty line. Shared by requests and
// responses; returns Incomplete, Done, or an Error with a 400-class reason.
ParseResult parse_fields(std::string_view buf, size_t& pos, size_t max_headers,
                         std::vector<Header>& headers, HeaderFacts& f) {
  std::string_view line;
  bool bad_cr = false;
  while (next_line(buf, pos, line, bad_cr)) {
    if (bad_cr) return ParseResult::error(400, "bare CR in header");
    if (line.empty()) return ParseResult::done();
    if (line.front() == ' ' || line.front() == '\t')
      return ParseResult::error(400, "obsolete line folding");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return ParseResult::error(400, "invalid header line");
    std::string_view name = line.substr(0, colon);
    for (char c : name)
      if (!kTchar[static_cast<unsigned char>(c)])
        return ParseResult::error(400, "invalid header name");
    std::string_view value = trim(line.substr(colon + 1));
    for (char c : value)
      if (!kValueChar[static_cast<unsigned char>(c)])
        return ParseResult::error(400, "invalid character in header value");
    if (headers.size() >= max_headers) return ParseResult::error(431, "too many headers");
    headers.push_back({name, value});

    switch (lower(name[0])) {
      case 'c':
        if (iequals(name, "content-length")) {
          int64_t n;
          if (!parse_content_length(value, n))
            return ParseResult::error(400, "invalid Content-Length");
          if (f.saw_content_length && n != f.content_length)
            return ParseResult::error(400, "conflicting Content-Length");
          f.saw_content_length = true;
          f.content_length = n;
        } else if (iequals(name, "connection")) {
          f.connection = value;  // several lines: see parse_request / parse_response
          ++f.connection_lines;
        }
        break;
      case 't':
        if (iequals(name, "transfer-encoding")) {
          f.saw_te = true;
          std::string_view v = value;
          while (!v.empty()) {
            size_t comma = v.find(',');
            std::string_view coding = trim(v.substr(0, comma));
            if (!coding.empty()) {
              if (f.te_chunked > 0) f.te_chunked_not_last = true;
              if (iequals(coding, "chunked"))
                ++f.te_chunked;
              else
                f.te_other = true;
            }
            if (comma == std::string_view::npos) break;
            v.remove_prefix(comma + 1);
          }
        }
        break;
      case 'h':
        if (iequals(name, "host")) {
          f.host = value;
          ++f.host_count;
        }
        break;
      case 'e':
        if (iequals(name, "expect")) f.expect = value;
        break;
      case 'u':
        if (iequals(name, "upgrade") && has_token(value, "websocket")) f.upgrade_websocket = true;
        break;
      default:
        break;
    }
  }
  return ParseResult::incomplete();
}

// HTTP/1.1 keeps the connection unless told "close"; HTTP/1.0 only when told "keep-alive".
bool keeps_alive(int minor_version, std::string_view connection) {
  return minor_version == 1 ? !has_token(connection, "close") : has_token(connection, "keep-alive");
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool is_hop_by_hop(std::string_view name, std::string_view connection_value) {
  static constexpr std::string_view kFixed[] = {
      "connection", "keep-alive",        "proxy-connection", "te",
      "trailer",    "transfer-encoding", "upgrade",          "proxy-authenticate"};
  for (auto h : kFixed)
    if (iequals(name, h)) return true;
  return !connection_value.empty() && has_token(connection_value, name);
}

ParseResult parse_request(std::string_view buf, const RequestLimits& limits, RequestHead& out) {
  out.headers.clear();
  size_t pos = 0;
  // RFC 9112 2.2: ignore at least one empty line before the request line.
  while (pos < buf.size() && pos < 8 && (buf[pos] == '\r' || buf[pos] == '\n')) ++pos;

  std::string_view line;
  bool bad_cr = false;
  size_t line_start = pos;
  if (!next_line(buf, pos, line, bad_cr)) {
    if (buf.size() - line_start > limits.max_uri) return ParseResult::error(414, "URI too long");
    if (buf.size() >= limits.max_head)
      return ParseResult::error(431, "request header fields too large");
    return ParseResult::incomplete();
  }
  if (line.size() > limits.max_uri) return ParseResult::error(414, "URI too long");
  if (bad_cr) return ParseResult::error(400, "bare CR in request line");

  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0)
    return ParseResult::error(400, "invalid request line");
  out.method = line.substr(0, sp1);
  for (char c : out.method)
    if (!kTchar[static_cast<unsigned char>(c)]) return ParseResult::error(400, "invalid method");
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1)
    return ParseResult::error(400, "invalid request line");
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (char c : target) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return ParseResult::error(400, "invalid character in URI");
  }
  std::string_view version = line.substr(sp2 + 1);
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
    return ParseResult::error(400, "invalid HTTP version");
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
    return ParseResult::error(505, "HTTP version not supported");
  out.minor_version = version[7] - '0';
  if (out.method == "CONNECT") return ParseResult::error(405, "CONNECT not allowed");

  std::string_view authority;
  if (target.front() == '/') {
    out.target = target;
  } else if (target == "*" && out.method == "OPTIONS") {
    out.target = target;
  } else {
    // absolute-form: scheme "://" authority [path]
    size_t scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) return ParseResult::error(400, "invalid URI");
    std::string_view scheme = target.substr(0, scheme_end);
    if (!iequals(scheme, "http") && !iequals(scheme, "https"))
      return ParseResult::error(400, "invalid URI scheme");
    std::string_view rest = target.substr(scheme_end + 3);
    size_t slash = rest.find_first_of("/?");
    authority = rest.substr(0, slash);
    if (authority.empty() || authority.find('@') != std::string_view::npos)
      return ParseResult::error(400, "invalid URI authority");
    out.target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (out.target.front() == '?') return ParseResult::error(400, "invalid URI");
  }
  size_t q = out.target.find('?');
  out.path = out.target.substr(0, q);
  out.query = q == std::string_view::npos ? std::string_view{} : out.target.substr(q + 1);

  HeaderFacts f;
  ParseResult r = parse_fields(buf, pos, limits.max_headers, out.headers, f);
  if (r.status == ParseStatus::Incomplete) {
    if (buf.size() >= limits.max_head)
      return ParseResult::error(431, "request header fields too large");
    return r;
  }
  if (r.status == ParseStatus::Error) return r;
  if (pos > limits.max_head) return ParseResult::error(431, "request header fields too large");
  out.head_size = pos;

  if (f.host_count > 1) return ParseResult::error(400, "duplicate Host");
  out.host = authority.empty() ? f.host : authority;
  if (out.minor_version == 1 && f.host_count == 0 && authority.empty())
    return ParseResult::error(400, "missing Host");
  for (char c : out.host)
    if (c == ' ' || c == '\t' || c == '/' || c == '\\' || c == '@')
      return ParseResult::error(400, "invalid Host");

  if (f.saw_te) {
    if (f.saw_content_length)
      return ParseResult::error(400, "both Content-Length and Transfer-Encoding");
    if (out.minor_version == 0) return ParseResult::error(400, "Transfer-Encoding in HTTP/1.0");
    if (f.te_other) return ParseResult::error(501, "unsupported Transfer-Encoding");
    if (f.te_chunked != 1 || f.te_chunked_not_last)
      return ParseResult::error(400, "invalid Transfer-Encoding");
    out.chunked = true;
    out.content_length = -1;
  } else {
    out.chunked = false;
    out.content_length = f.content_length;
  }

  // One value is read for keep-alive, the upgrade and the hop-by-hop names; with several lines
  // a `close` or a private header named on another line would be missed.
  if (f.connection_lines > 1) return ParseResult::error(400, "several Connection headers");
  out.connection = f.connection;
  out.keep_alive = keeps_alive(out.minor_version, f.connection);
  out.upgrade_websocket = f.upgrade_websocket && has_token(f.connection, "upgrade");
  out.expect_continue = false;
  if (!f.expect.empty()) {
    if (!iequals(f.expect, "100-continue")) return ParseResult::error(417, "unsupported Expect");
    out.expect_continue = out.minor_version == 1;
  }
  return r;
}

ParseResult parse_response(std::string_view buf, size_t max_head, ResponseHead& out) {
  out.headers.clear();
  size_t pos = 0;
  std::string_view line;
  bool bad_cr = false;
  if (!next_line(buf, pos, line, bad_cr)) {
    if (buf.size() >= max_head) return ParseResult::error(502, "upstream head too large");
    return ParseResult::incomplete();
  }
  // "HTTP/1.x SSS[ reason]"
  if (bad_cr || line.size() < 12 || line.substr(0, 7) != "HTTP/1." ||
      (line[7] != '0' && line[7] != '1') || line[8] != ' ')
    return ParseResult::error(502, "invalid upstream status line");
  int status = 0;
  for (int i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return ParseResult::error(502, "invalid upstream status");
    status = status * 10 + (line[i] - '0');
  }
  if (status < 100 || (line.size() > 12 && line[12] != ' '))
    return ParseResult::error(502, "invalid upstream status");
  out.status = status;
  out.minor_version = line[7] - '0';
  out.reason = line.size() > 13 ? line.substr(13) : std::string_view{};

  HeaderFacts f;
  ParseResult r = parse_fields(buf, pos, 1024, out.headers, f);
  if (r.status == ParseStatus::Incomplete) {
    if (buf.size() >= max_head) return ParseResult::error(502, "upstream head too large");
    return r;
  }
  if (r.status == ParseStatus::Error) return ParseResult::error(502, r.reason);
  out.head_size = pos;
  if (f.saw_te) {
    if (f.saw_content_length || f.te_other || f.te_chunked != 1 || f.te_chunked_not_last)
      return ParseResult::error(502, "ambiguous upstream framing");
    out.chunked = true;
    out.content_length = -1;
  } else {
    out.chunked = false;
    out.content_length = f.content_length;
  }
  out.connection = f.connection;
  // Several Connection lines (one value is read): the upstream connection is not kept, in case
  // another line said close.
  out.keep_alive = f.connection_lines <= 1 && keeps_alive(out.minor_version, f.connection);
  return r;
}

}  // namespace portico::http
