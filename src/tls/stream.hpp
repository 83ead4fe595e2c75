// TLS on a client's TCP socket (OpenSSL, kept out of this header): the handshake that picks
// the certificate by the client's server name, and reads and writes.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/asio.hpp"

namespace portico {
class Deadline;
}

namespace portico::tls {

class CertificateTable;
struct ClientIdentity;
class Stream;
struct StreamDelete {
  void operator()(Stream* s) const;
};
using StreamPtr = std::unique_ptr<Stream, StreamDelete>;

// Why a handshake failed, for the portico_tls_handshakes_total{result} counter.
enum class HandshakeResult {
  Ok,
  NoServerName,
  UnknownServerName,
  PlainHttp,
  Timeout,
  Closed,
  Failed,
  ClientCertificate  // a certificate was required and the client sent none or a bad one
};
const char* result_name(HandshakeResult r);

struct ClientVerification;

// What a client showed, on connections whose certificate asks for one (`client` in ssls).
struct ClientCertificate {
  bool verified = false;    // a certificate that chains to the CA within the depth
  std::string verify;       // $ssl_client_verify: SUCCESS, FAILED:<reason> or NONE
  std::string subject;      // $ssl_client_s_dn (RFC 2253)
  std::string issuer;       // $ssl_client_i_dn
  std::string serial;       // $ssl_client_serial (hex)
  std::string fingerprint;  // $ssl_client_fingerprint (SHA-1, hex)
  std::shared_ptr<const ClientVerification> policy;  // what it was checked against
  std::string name;  // the name whose certificate served: the SNI, or fallback_sni without one
};

struct Handshake {
  StreamPtr stream;  // null unless result is Ok
  HandshakeResult result = HandshakeResult::Failed;
  std::string server_name;                    // what the client asked for (SNI), lower case
  std::string detail;                         // OpenSSL's reason, for the debug log
  std::unique_ptr<ClientCertificate> client;  // set when the certificate asked for one
};

// Runs the server side of the handshake on `socket` within `timeout` seconds (`d` arms it),
// serving the certificate `certificates` holds for the client's server name; the table must
// outlive the call. `first_bytes`: what the server already read from the socket (at least one
// byte); a client whose first byte is not a TLS handshake record speaks plain HTTP and is
// answered with a 400 that says so.
// `fallback_sni` (may be empty): the name whose certificate serves clients that send none.
// `answer_plain_http` false (stream listeners): a client that is not TLS is just closed.
Task<Handshake> accept(Socket& socket, std::string_view first_bytes,
                       const CertificateTable& certificates, std::string_view fallback_sni,
                       Deadline& d, double timeout, bool answer_plain_http = true);
// The client side, to an upstream. SNI is `server_name` unless it is empty or an IP address;
// with `verify` the certificate must chain to a trusted CA (the system's; the SSL_CERT_FILE and
// SSL_CERT_DIR environment variables override) and name `server_name` (or, without a name,
// the address `ip`).
struct Connected {
  StreamPtr stream;  // null on failure
  std::string error;
  bool timed_out = false;
};
// `identity`: the certificate to show an upstream that asks for one (null: none).
Task<Connected> connect(Socket& socket, const std::string& server_name, const std::string& ip,
                        bool verify, Deadline& d, double timeout,
                        const ClientIdentity* identity = nullptr);
// Points the stream at the socket it moved into (an upstream connection in and out of a pool);
// null while it sits in a pool (nothing may use it there).
void rebind(Stream& s, Socket* socket);
// Bytes OpenSSL read ahead and holds (a record behind the response, a close_notify): such a
// connection must not go back to a keep-alive pool.
bool holds_input(const Stream& s);

// Counts a handshake that ended before accept() (the client closed or stayed silent).
void count_handshake(HandshakeResult r);

// A TCP close without TLS's close_notify reads as eof, like a clean one (HTTP frames its
// messages; browsers and curl close that way). One read and one write may be in progress at a
// time (the WebSocket relay and the bridge read and write a client concurrently).
Task<IoResult> read_some(Stream& s, asio::mutable_buffer b);
Task<IoResult> write_all(Stream& s, asio::const_buffer b);
// Sends close_notify and reads until the client's (as long as the caller's deadline allows).
// Nothing after a failed read or write.
Task<> shutdown(Stream& s);
const std::string& server_name(const Stream& s);
// Marks the stream failed: no close_notify (see ByteStream::abandon).
void abandon(Stream& s);
// Frees OpenSSL's record buffers while the connection idles (they come back with the next
// record; a buffer still holding bytes is kept).
void release_buffers(Stream& s);

// Handshakes by result since start (all workers).
uint64_t handshake_count(HandshakeResult r);

}  // namespace portico::tls
