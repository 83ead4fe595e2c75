#include "tls/stream.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "core/deadline.hpp"
#include "tls/server_certificates.hpp"

namespace portico::tls {

// What the ClientHello callback needs and learns, reached through the SSL's ex_data (its app
// data slot belongs to Asio, which deletes it as a verify callback).
struct HelloState {
  const CertificateTable* certificates = nullptr;
  std::string_view fallback_sni;
  std::string server_name;
  HandshakeResult refused = HandshakeResult::Ok;
  std::shared_ptr<const ClientVerification> client;  // the chosen certificate's `client`
};

// OpenSSL on a TCP socket (a client's, or an upstream connection), driven from the worker's event
// loop: every TLS call is tried at once and, when it needs the socket, waits for readiness and
// tries again (nginx's way). OpenSSL reads and writes the socket itself through a BIO of ours, so
// no byte is copied between buffers on the way, and an idle connection holds no record buffer
// (SSL_MODE_RELEASE_BUFFERS): Asio's TLS stream keeps four 17 KiB buffers per connection.
// A readiness wait cannot miss data: each worker runs one thread (no epoll_wait between our
// EAGAIN and queueing the wait), and Asio (1.81) re-arms the descriptor with EPOLL_CTL_MOD when
// a wait is queued, which reports readiness that is already there.
class Stream {
 public:
  Stream(Socket& s, SSL* ssl) : socket(&s), ssl(ssl) {}
  ~Stream() { SSL_free(ssl); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  Socket* socket;  // moves with the connection (upstream keep-alive pools): see rebind()
  SSL* const ssl;
  HelloState hello;
  // What the server read before it knew the connection was TLS (the first read, which tells TLS
  // from plain HTTP; bytes behind a PROXY header): OpenSSL reads these first.
  std::string replay;
  size_t replayed = 0;
  bool failed = false;     // a fatal TLS or socket error: no close_notify may follow
  bool write_cut = false;  // the last write did not finish: no close_notify after it either
  bool eof = false;        // recv() returned 0 (BIO_CTRL_EOF: a TCP end is an end)
  bool closing = false;    // shutdown() began: a read still pending stops at its next wake-up
};

void StreamDelete::operator()(Stream* s) const { delete s; }

namespace {

std::array<std::atomic<uint64_t>, 8> handshake_counts{};

int hello_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// ---- the socket BIO ------------------------------------------------------------------------

Stream* stream_of(BIO* b) { return static_cast<Stream*>(BIO_get_data(b)); }

int bio_read(BIO* b, char* out, int len) {
  Stream& s = *stream_of(b);
  BIO_clear_retry_flags(b);
  if (s.replayed < s.replay.size()) {
    size_t n = std::min(static_cast<size_t>(len), s.replay.size() - s.replayed);
    std::memcpy(out, s.replay.data() + s.replayed, n);
    s.replayed += n;
    if (s.replayed == s.replay.size()) std::string().swap(s.replay), s.replayed = 0;
    return static_cast<int>(n);
  }
  if (!s.socket) return -1;  // pooled: nothing may read
  ssize_t n = ::recv(s.socket->native_handle(), out, static_cast<size_t>(len), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(b);
  if (n == 0) s.eof = true;
  return static_cast<int>(n);
}

int bio_write(BIO* b, const char* in, int len) {
  Stream& s = *stream_of(b);
  BIO_clear_retry_flags(b);
  if (!s.socket) return -1;  // pooled: nothing may write
  ssize_t n = ::send(s.socket->native_handle(), in, static_cast<size_t>(len), MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_write(b);
  return static_cast<int>(n);
}

// FLUSH: nothing is buffered here. EOF: whether recv() saw the peer's FIN, which OpenSSL asks
// to treat a TCP end as the end of the stream (SSL_OP_IGNORE_UNEXPECTED_EOF).
long bio_ctrl(BIO* b, int cmd, long, void*) {
  if (cmd == BIO_CTRL_FLUSH) return 1;
  if (cmd == BIO_CTRL_EOF) return stream_of(b)->eof ? 1 : 0;
  return 0;
}

int bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

BIO_METHOD* socket_bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "portico socket");
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;
  }();
  return method;
}

// ---- driving OpenSSL ----------------------------------------------------------------------

// After an OpenSSL call returned `r`: the readiness to wait for, or the error it ended with
// (end of stream: eof; the stream is marked failed on anything else).
struct Outcome {
  bool wait = false;
  Socket::wait_type on = Socket::wait_read;
  error_code error;
  const char* reason = nullptr;  // OpenSSL's, for a protocol error
};

Outcome outcome(Stream& s, int r) {
  Outcome o;
  int saved_errno = errno;
  switch (SSL_get_error(s.ssl, r)) {
    case SSL_ERROR_WANT_READ:
      o.wait = true;
      break;
    case SSL_ERROR_WANT_WRITE:
      o.wait = true;
      o.on = Socket::wait_write;
      break;
    case SSL_ERROR_ZERO_RETURN:  // close_notify, or a TCP end (SSL_OP_IGNORE_UNEXPECTED_EOF)
      o.error = asio::error::eof;
      break;
    case SSL_ERROR_SYSCALL:
      o.error = saved_errno ? error_code(saved_errno, boost::system::system_category())
                            : error_code(asio::error::eof);
      s.failed = true;
      break;
    default:
      o.error = make_error_code(boost::system::errc::protocol_error);
      o.reason = ERR_reason_error_string(ERR_peek_error());
      s.failed = true;
  }
  ERR_clear_error();
  return o;
}

// Waits for what `o` asks; false (with `ec`) when the wait was cancelled or failed.
Task<error_code> wait_for(Stream& s, const Outcome& o) {
  auto [ec] = co_await s.socket->async_wait(o.on, await_ec);
  co_return ec;
}

// Runs SSL_do_handshake to its end; `reason` gets OpenSSL's for a protocol error.
Task<error_code> handshake(Stream& s, std::string& reason) {
  while (true) {
    ERR_clear_error();
    int r = SSL_do_handshake(s.ssl);
    if (r == 1) co_return error_code();
    Outcome o = outcome(s, r);
    if (!o.wait) {
      if (o.reason) reason = o.reason;
      co_return o.error;
    }
    if (error_code ec = co_await wait_for(s, o)) co_return ec;
  }
}

// A stream over `socket` with the socket BIO; owns `ssl`.
StreamPtr make_stream(Socket& socket, SSL* ssl) {
  StreamPtr stream(new Stream(socket, ssl));
  BIO* bio = BIO_new(socket_bio_method());
  BIO_set_data(bio, stream.get());
  SSL_set_bio(ssl, bio, bio);
  return stream;
}

// The first host_name of the server_name extension (RFC 6066 section 3), lower case; empty
// when there is none or it is malformed.
std::string requested_name(SSL* ssl) {
  const unsigned char* p = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1 || len < 2) return {};
  size_t list = (size_t{p[0]} << 8) | p[1];
  if (list + 2 > len) return {};
  for (size_t i = 2; i + 3 <= 2 + list;) {
    unsigned type = p[i];
    size_t n = (size_t{p[i + 1]} << 8) | p[i + 2];
    i += 3;
    if (i + n > 2 + list) return {};
    if (type == TLSEXT_NAMETYPE_host_name) {
      // Lower case; bytes no host name has become '?' (the name then matches no certificate,
      // and it is safe to log).
      std::string name(reinterpret_cast<const char*>(p + i), std::min<size_t>(n, 255));
      for (char& c : name) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
          c = '?';
      }
      // "example.com." is the same name (RFC 6066 says clients leave the dot out; some don't).
      if (!name.empty() && name.back() == '.') name.pop_back();
      return name;
    }
    i += n;
  }
  return {};
}

// Runs before the protocol version is chosen, so the certificate's ssl_protocols apply; the
// context switch brings its certificates (OpenSSL then picks RSA or ECDSA by what the client
// supports).
int on_client_hello(SSL* ssl, int* alert, void*) {
  auto* hello = static_cast<HelloState*>(SSL_get_ex_data(ssl, hello_index()));
  if (!hello || !hello->certificates) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  hello->server_name = requested_name(ssl);
  const ServerCertificate* cert = hello->certificates->find(
      hello->server_name.empty() ? hello->fallback_sni : std::string_view(hello->server_name));
  if (!cert) {
    hello->refused = hello->server_name.empty() ? HandshakeResult::NoServerName
                                                : HandshakeResult::UnknownServerName;
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_CLIENT_HELLO_ERROR;
  }
  SSL_set_SSL_CTX(ssl, cert->context.get());
  // The switch brings certificates, not the client verification: copied here, as nginx does.
  SSL_CTX* ctx = cert->context.get();
  SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
  SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
  hello->client = cert->client;
  SSL_set_min_proto_version(ssl, cert->min_version);
  SSL_set_max_proto_version(ssl, cert->max_version);
  if (cert->disabled) SSL_set_options(ssl, cert->disabled);
  return SSL_CLIENT_HELLO_SUCCESS;
}

// What every connection of ours runs with, client or upstream side: no compression (CRIME) and
// no renegotiation (a CPU-exhaustion lever); a TCP end without close_notify reads as an end
// (HTTP frames its messages; SSL_ERROR_ZERO_RETURN, not a protocol error); record buffers
// released when empty; a write retried from another address (staged copies) or cut into records
// (partial writes); read-ahead (a record's header and body, and the records behind it, in one
// recv()).
void configure_streams(SSL_CTX* c) {
  SSL_CTX_set_options(
      c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_ENABLE_PARTIAL_WRITE);
  SSL_CTX_set_read_ahead(c, 1);
}

// The context every handshake starts on: no certificate of its own (the ClientHello callback
// switches to the one for the server name). Sessions resume by ticket only (no server-side
// cache to share between workers); ticket keys live here, so they survive config changes.
SSL_CTX* listener_context() {
  static SSL_CTX* const ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(c, TLS1_1_VERSION);  // narrowed per certificate
    configure_streams(c);
    SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(c, 1);
    SSL_CTX_set_client_hello_cb(c, on_client_hello, nullptr);
    prepare_server_context(c);
    return c;
  }();
  return ctx;
}

// A client that sent plain HTTP to the TLS port gets told so (nginx does the same), instead of
// a TLS alert its HTTP client would print as garbage. Its request is read first, so closing does
// not reset the connection under the answer.
void answer_plain_http(Socket& socket) {
  static constexpr std::string_view kBody = "The plain HTTP request was sent to HTTPS port\n";
  static const std::string kResponse =
      "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: " +
      std::to_string(kBody.size()) + "\r\nConnection: close\r\n\r\n" + std::string(kBody);
  std::array<char, 16 * 1024> sink;
  error_code ec;
  socket.read_some(asio::buffer(sink), ec);
  socket.write_some(asio::buffer(kResponse), ec);
  socket.shutdown(Socket::shutdown_send, ec);
}

std::string name_text(const X509_NAME* name) {
  BIO* b = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  std::string text(data, static_cast<size_t>(std::max(n, 0L)));
  BIO_free(b);
  return text;
}

// What the client proved, read once after the handshake (a resumed session keeps its result).
std::unique_ptr<ClientCertificate> client_certificate(SSL* ssl,
                                                      std::shared_ptr<const ClientVerification> p) {
  auto c = std::make_unique<ClientCertificate>();
  c->policy = std::move(p);
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (!peer) {
    c->verify = "NONE";
    return c;
  }
  long result = SSL_get_verify_result(ssl);
  c->verified = result == X509_V_OK;
  c->verify =
      c->verified ? "SUCCESS" : std::string("FAILED:") + X509_verify_cert_error_string(result);
  c->subject = name_text(X509_get_subject_name(peer));
  c->issuer = name_text(X509_get_issuer_name(peer));
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer), nullptr)) {
    if (char* text = BN_bn2hex(bn)) {
      c->serial = text;
      OPENSSL_free(text);
    }
    BN_free(bn);
  }
  c->fingerprint = certificate_digest(peer, EVP_sha1());
  return c;
}

Handshake finish(Handshake h) {
  count_handshake(h.result);
  return h;
}

}  // namespace

void prepare_server_context(ssl_ctx_st* ctx) {
  static constexpr unsigned char kSessionContext[] = "portico";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  // HTTP/1.1 only (h2 is not served): a client offering both gets http/1.1; one offering only
  // h2 gets no ALPN answer and decides for itself.
  SSL_CTX_set_alpn_select_cb(
      ctx,
      [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
         unsigned int inlen, void*) {
        static constexpr unsigned char kHttp11[] = "\x08http/1.1";
        unsigned char* selected = nullptr;
        if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11 - 1, in, inlen) !=
            OPENSSL_NPN_NEGOTIATED)
          return SSL_TLSEXT_ERR_NOACK;
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
      },
      nullptr);
}

const char* result_name(HandshakeResult r) {
  switch (r) {
    case HandshakeResult::Ok:
      return "ok";
    case HandshakeResult::NoServerName:
      return "no_server_name";
    case HandshakeResult::UnknownServerName:
      return "unknown_server_name";
    case HandshakeResult::PlainHttp:
      return "plain_http";
    case HandshakeResult::Timeout:
      return "timeout";
    case HandshakeResult::Closed:
      return "closed";
    case HandshakeResult::ClientCertificate:
      return "client_certificate";
    case HandshakeResult::Failed:
      break;
  }
  return "failed";
}

uint64_t handshake_count(HandshakeResult r) {
  return handshake_counts[static_cast<size_t>(r)].load(std::memory_order_relaxed);
}

Task<Handshake> accept(Socket& socket, std::string_view first_bytes,
                       const CertificateTable& certificates, std::string_view fallback_sni,
                       Deadline& d, double timeout, bool plain_http_answer) {
  Handshake h;
  if (first_bytes.empty() || static_cast<unsigned char>(first_bytes[0]) != 0x16) {
    // Not a TLS handshake record.
    if (plain_http_answer) answer_plain_http(socket);
    h.result = HandshakeResult::PlainHttp;
    co_return finish(std::move(h));
  }
  SSL* ssl = SSL_new(listener_context());
  if (!ssl) {
    h.detail = take_openssl_error();
    co_return finish(std::move(h));
  }
  StreamPtr stream = make_stream(socket, ssl);
  stream->replay.assign(first_bytes);
  SSL_set_accept_state(ssl);
  stream->hello.certificates = &certificates;
  stream->hello.fallback_sni = fallback_sni;
  SSL_set_ex_data(ssl, hello_index(), &stream->hello);
  d.arm(timeout, &socket);
  error_code ec = co_await handshake(*stream, h.detail);
  bool timed_out = d.fired();
  d.disarm();
  SSL_set_ex_data(ssl, hello_index(), nullptr);  // the table is the caller's
  stream->hello.certificates = nullptr;
  h.server_name = stream->hello.server_name;
  if (!ec) {
    h.result = HandshakeResult::Ok;
    if (stream->hello.client) {
      h.client = client_certificate(ssl, std::move(stream->hello.client));
      h.client->name =
          stream->hello.server_name.empty() ? std::string(fallback_sni) : stream->hello.server_name;
    }
    h.stream = std::move(stream);
  } else if (stream->hello.refused != HandshakeResult::Ok) {
    h.result = stream->hello.refused;
  } else if (stream->hello.client && !timed_out &&
             (SSL_get_verify_result(ssl) != X509_V_OK ||
              h.detail == "peer did not return a certificate")) {
    h.result = HandshakeResult::ClientCertificate;
  } else if (timed_out) {
    h.result = HandshakeResult::Timeout;
  } else if (ec == asio::error::eof || ec == asio::error::connection_reset) {
    h.result = HandshakeResult::Closed;
  } else {
    h.result = HandshakeResult::Failed;
    if (h.detail.empty()) h.detail = ec.message();
  }
  ERR_clear_error();
  co_return finish(std::move(h));
}

void count_handshake(HandshakeResult r) {
  handshake_counts[static_cast<size_t>(r)].fetch_add(1, std::memory_order_relaxed);
}

Task<IoResult> read_some(Stream& s, asio::mutable_buffer b) {
  while (true) {
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(s.ssl, b.data(), b.size(), &n);
    if (r == 1) co_return IoResult{error_code(), n};
    Outcome o = outcome(s, r);
    if (!o.wait) co_return IoResult{o.error, 0};
    if (error_code ec = co_await wait_for(s, o)) {
      // Cancelled while OpenSSL was sending inside the read (a KeyUpdate answer): cut record.
      if (o.on == Socket::wait_write) s.failed = true;
      co_return IoResult{ec, 0};
    }
    // A wake-up already queued when the socket's waits were cancelled for shutdown(): the
    // stream is the shutdown's now.
    if (s.closing) co_return IoResult{asio::error::operation_aborted, 0};
  }
}

Task<IoResult> write_all(Stream& s, asio::const_buffer b) {
  const char* data = static_cast<const char*>(b.data());
  size_t done = 0;
  while (done < b.size()) {
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_write_ex(s.ssl, data + done, b.size() - done, &n);
    if (r == 1) {
      done += n;
      continue;
    }
    Outcome o = outcome(s, r);
    if (!o.wait) co_return IoResult{o.error ? o.error : error_code(asio::error::broken_pipe), done};
    // A record OpenSSL could not send whole waits in its buffer, and any later write or
    // shutdown sends its rest first. So a write whose wait was cancelled (by a deadline of the
    // socket's other operation) can be resumed: the caller passes the bytes from `done` on, as
    // OpenSSL requires. A caller that gives up instead abandons the stream.
    if (error_code ec = co_await wait_for(s, o)) {
      s.write_cut = true;
      co_return IoResult{ec, done};
    }
  }
  s.write_cut = false;
  co_return IoResult{error_code(), done};
}

Task<> shutdown(Stream& s) {
  s.closing = true;
  if (s.failed || s.write_cut) co_return;
  // Ours first; then the client's close_notify (or anything else it still sends) is read for as
  // long as the caller's deadline allows, so closing does not reset the connection under it.
  std::array<char, 4096> sink;
  while (true) {
    ERR_clear_error();
    int r = SSL_shutdown(s.ssl);
    if (r == 1) co_return;
    if (r == 0) break;
    Outcome o = outcome(s, r);
    if (!o.wait || co_await wait_for(s, o)) co_return;
  }
  while (true) {
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(s.ssl, sink.data(), sink.size(), &n);
    if (r == 1) continue;
    Outcome o = outcome(s, r);
    if (!o.wait || co_await wait_for(s, o)) co_return;
  }
}

void release_buffers(Stream& s) { SSL_free_buffers(s.ssl); }

void abandon(Stream& s) { s.failed = true; }

void rebind(Stream& s, Socket* socket) { s.socket = socket; }

bool holds_input(const Stream& s) {
  return SSL_has_pending(s.ssl) || (SSL_get_shutdown(s.ssl) & SSL_RECEIVED_SHUTDOWN) || s.eof;
}

namespace {

// Contexts for upstream connections, with and without certificate verification.
SSL_CTX* upstream_context(bool verify) {
  auto make = [](bool verify) {
    SSL_CTX* c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    configure_streams(c);
    static constexpr unsigned char kHttp11[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(c, kHttp11, sizeof kHttp11 - 1);
    if (verify) {
      SSL_CTX_set_default_verify_paths(c);  // the system's CAs; SSL_CERT_FILE/DIR override
      SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    }
    return c;
  };
  static SSL_CTX* const plain = make(false);
  static SSL_CTX* const verifying = make(true);
  return verify ? verifying : plain;
}

bool is_ip_address(std::string_view s) {
  error_code ec;
  asio::ip::make_address(std::string(s), ec);
  return !ec;
}

}  // namespace

Task<Connected> connect(Socket& socket, const std::string& server_name, const std::string& ip,
                        bool verify, Deadline& d, double timeout, const ClientIdentity* identity) {
  Connected out;
  SSL* ssl = SSL_new(upstream_context(verify));
  if (!ssl) {
    out.error = take_openssl_error();
    co_return out;
  }
  StreamPtr stream = make_stream(socket, ssl);
  if (identity && !use_client_identity(ssl, *identity)) {
    out.error = "cannot use the client certificate: " + take_openssl_error();
    co_return out;
  }
  SSL_set_connect_state(ssl);
  bool named = !server_name.empty() && !is_ip_address(server_name);
  if (named) SSL_set_tlsext_host_name(ssl, server_name.c_str());
  if (verify) {
    if (named)
      SSL_set1_host(ssl, server_name.c_str());
    else
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip.c_str());
  }
  d.arm(timeout, &socket);
  std::string reason;
  error_code ec = co_await handshake(*stream, reason);
  out.timed_out = d.fired();
  d.disarm();
  if (!ec) {
    out.stream = std::move(stream);
  } else {
    long verified = verify ? SSL_get_verify_result(ssl) : X509_V_OK;
    out.error = verified != X509_V_OK
                    ? std::string("certificate: ") + X509_verify_cert_error_string(verified)
                : !reason.empty() ? reason
                                  : ec.message();
  }
  ERR_clear_error();
  co_return out;
}

const std::string& server_name(const Stream& s) { return s.hello.server_name; }

}  // namespace portico::tls
