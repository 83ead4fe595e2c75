#include "http/message_heads.hpp"

#include "http/responses.hpp"

namespace portico::http {
namespace {

constexpr std::string_view kCrlf = "\r\n";

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += kCrlf;
}

void append_number(std::string& out, uint64_t n) {
  char buf[24];
  char* p = buf + sizeof(buf);
  do {
    *--p = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n);
  out.append(p, static_cast<size_t>(buf + sizeof(buf) - p));
}

// Headers the gateway sets itself; what the client sent for them is dropped.
enum class Replaced { No, Drop, ForwardedFor };

Replaced replaced_request_header(std::string_view n) {
  switch (n.size()) {
    case 4:
      return iequals(n, "host") ? Replaced::Drop : Replaced::No;
    case 6:
      return iequals(n, "expect") ? Replaced::Drop : Replaced::No;
    case 9:
      return iequals(n, "x-real-ip") ? Replaced::Drop : Replaced::No;
    case 14:
      return iequals(n, "content-length") ? Replaced::Drop : Replaced::No;
    case 15:
      return iequals(n, "x-forwarded-for") ? Replaced::ForwardedFor : Replaced::No;
    case 16:
      return iequals(n, "x-forwarded-host") || iequals(n, "x-forwarded-port") ? Replaced::Drop
                                                                              : Replaced::No;
    case 17:
      return iequals(n, "x-forwarded-proto") ? Replaced::Drop : Replaced::No;
    default:
      return Replaced::No;
  }
}

// Whether an edit replaces or removes the header `name` (so the original is not sent).
bool edited(const std::vector<plugins::HeaderEdit>* edits, std::string_view name) {
  if (!edits) return false;
  for (const auto& e : *edits)
    if (e.op != plugins::HeaderEdit::Op::Add && iequals(e.name, name)) return true;
  return false;
}

// Edits apply in order: a later set or remove of the same name replaces an earlier set or add
// (two plugins setting one header, a consumer's proxy-rewrite over the route's, send one value).
bool superseded(const std::vector<plugins::HeaderEdit>& edits, size_t i) {
  for (size_t j = i + 1; j < edits.size(); ++j)
    if (edits[j].op != plugins::HeaderEdit::Op::Add && iequals(edits[j].name, edits[i].name))
      return true;
  return false;
}

// A value holding CR, LF or NUL (a variable that holds the decoded path, say) would split the
// head into two: such an edit is left out.
bool fits_one_line(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

void append_edits(std::string& out, const std::vector<plugins::HeaderEdit>* edits) {
  if (!edits) return;
  for (size_t i = 0; i < edits->size(); ++i) {
    const auto& e = (*edits)[i];
    if (e.op != plugins::HeaderEdit::Op::Remove && !superseded(*edits, i) && fits_one_line(e.value))
      append_header(out, e.name, e.value);
  }
}

}  // namespace

void append_header_edits(std::string& out, const std::vector<plugins::HeaderEdit>& edits,
                         size_t from) {
  for (size_t i = from; i < edits.size(); ++i)
    if (edits[i].op != plugins::HeaderEdit::Op::Remove && fits_one_line(edits[i].value))
      append_header(out, edits[i].name, edits[i].value);
}

void build_upstream_head(std::string& out, const RequestHead& r, const ClientFacts& client,
                         const upstream::NodeTarget& node, const config::Upstream& spec,
                         bool websocket, const plugins::RequestEdits* edits) {
  const std::vector<plugins::HeaderEdit>* header_edits =
      edits && !edits->headers.empty() ? &edits->headers : nullptr;
  out.clear();
  out += edits && edits->method ? std::string_view(*edits->method) : r.method;
  out += ' ';
  out += edits && edits->target ? std::string_view(*edits->target) : r.target;
  out += " HTTP/1.1\r\n";
  std::string_view host = r.host;
  if (spec.pass_host == config::PassHost::Node || host.empty()) host = node.host_header;
  if (spec.pass_host == config::PassHost::Rewrite) host = spec.upstream_host;
  if (edits && edits->host) host = *edits->host;
  append_header(out, "Host", host);

  std::string_view upgrade;
  bool has_chain = false;
  for (const Header& h : r.headers) {
    if (is_hop_by_hop(h.name, r.connection)) {
      if (websocket && iequals(h.name, "upgrade")) upgrade = h.value;
      continue;
    }
    switch (replaced_request_header(h.name)) {
      case Replaced::No:
        if (!edited(header_edits, h.name)) append_header(out, h.name, h.value);
        break;
      case Replaced::Drop:
        break;
      case Replaced::ForwardedFor:
        has_chain = true;
        break;
    }
  }
  // X-Forwarded-For: every value the client sent, in order, then the client itself.
  out += "X-Forwarded-For: ";
  if (has_chain) {
    for (const Header& h : r.headers) {
      if (h.name.size() == 15 && iequals(h.name, "x-forwarded-for")) {
        out += h.value;
        out += ", ";
      }
    }
  }
  out += client.peer_ip.empty() ? client.remote_ip : client.peer_ip;
  out += kCrlf;
  append_header(out, "X-Real-IP", client.remote_ip);
  append_header(out, "X-Forwarded-Proto", client.https ? "https" : "http");
  append_header(out, "X-Forwarded-Host", r.host);
  out += "X-Forwarded-Port: ";
  append_number(out, client.local_port);
  out += kCrlf;
  append_edits(out, header_edits);
  if (r.chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  } else if (r.content_length >= 0) {
    out += "Content-Length: ";
    append_number(out, static_cast<uint64_t>(r.content_length));
    out += kCrlf;
  }
  if (websocket) {
    out += "Connection: upgrade\r\n";
    append_header(out, "Upgrade", upgrade.empty() ? std::string_view("websocket") : upgrade);
  }
  out += kCrlf;
}

void build_response_head(std::string& out, const ResponseHead& r, OutFraming framing,
                         bool keep_alive, bool client_http10,
                         const std::vector<plugins::HeaderEdit>* edits, int status) {
  if (edits && edits->empty()) edits = nullptr;
  out.clear();
  out += "HTTP/1.1 ";
  if (status && status != r.status) {
    append_number(out, static_cast<uint64_t>(status));
    out += ' ';
    out += status_reason(status);
  } else {
    append_number(out, static_cast<uint64_t>(r.status));
    out += ' ';
    out += r.reason.empty() ? std::string_view(status_reason(r.status)) : r.reason;
  }
  out += kCrlf;
  for (const Header& h : r.headers) {
    if (is_hop_by_hop(h.name, r.connection)) continue;
    if (h.name.size() == 14 && iequals(h.name, "content-length")) continue;
    if (edited(edits, h.name)) continue;
    append_header(out, h.name, h.value);
  }
  append_edits(out, edits);
  if (framing == OutFraming::Length || (framing == OutFraming::None && r.content_length >= 0)) {
    out += "Content-Length: ";
    append_number(out, static_cast<uint64_t>(r.content_length));
    out += kCrlf;
  } else if (framing == OutFraming::Chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  if (!keep_alive)
    out += "Connection: close\r\n";
  else if (client_http10)
    out += "Connection: keep-alive\r\n";
  out += kCrlf;
}

void build_upgrade_head(std::string& out, const ResponseHead& r) {
  out.clear();
  out += "HTTP/1.1 101 Switching Protocols\r\n";
  for (const Header& h : r.headers) {
    // A 101 has no body (RFC 9110 15.2): a length or chunked framing from the upstream would
    // make a client read the tunnel's first bytes as one.
    if (iequals(h.name, "connection") || iequals(h.name, "upgrade") ||
        iequals(h.name, "content-length") || iequals(h.name, "transfer-encoding"))
      continue;
    append_header(out, h.name, h.value);
  }
  out += "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n";
}

void build_local_response(std::string& out, int status, std::string_view content_type,
                          std::string_view body, const std::vector<plugins::HeaderEdit>& edits,
                          bool keep_alive, bool head_request) {
  // These answers end at their head (RFC 9112 6.3): body bytes would be read as the next
  // response on a kept-alive connection. HEAD still learns the length the body would have.
  const bool bodiless_status = status < 200 || status == 204 || status == 304;
  out.clear();
  out += "HTTP/1.1 ";
  append_number(out, static_cast<uint64_t>(status));
  out += ' ';
  out += status_reason(status);
  out += kCrlf;
  if (!content_type.empty() && !edited(&edits, "content-type"))
    append_header(out, "Content-Type", content_type);
  append_edits(out, &edits);
  if (!bodiless_status) {
    out += "Content-Length: ";
    append_number(out, body.size());
    out += kCrlf;
  }
  if (!keep_alive) out += "Connection: close\r\n";
  out += kCrlf;
  if (!head_request && !bodiless_status) out += body;
}

}  // namespace portico::http
