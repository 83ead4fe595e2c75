#include "tls/server_stream.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <cctype>

#include "core/deadline.hpp"
#include "tls/server_certificates.hpp"

namespace portico::tls {

// What the ClientHello callback needs and learns, reached through the SSL's ex_data (its app
// data slot belongs to Asio, which deletes it as a verify callback).
struct HelloState {
  const CertificateTable* certificates = nullptr;
  std::string server_name;
  HandshakeResult refused = HandshakeResult::Ok;
};

// The socket as TLS's lower layer, serving first the bytes the server read before it knew the
// connection was TLS (the first read, which tells TLS from plain HTTP; bytes that came behind a
// PROXY header).
class ReplayingSocket {
 public:
  using executor_type = Executor;
  using lowest_layer_type = Socket::lowest_layer_type;

  ReplayingSocket(Socket& socket) : socket_(socket) {}  // NOLINT: built by ssl::stream
  executor_type get_executor() { return socket_.get_executor(); }
  lowest_layer_type& lowest_layer() { return socket_.lowest_layer(); }
  const lowest_layer_type& lowest_layer() const { return socket_.lowest_layer(); }
  void replay(std::string_view bytes) { replay_.assign(bytes); }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (replay_.size() == replayed_)
      return socket_.async_read_some(buffers, std::forward<Handler>(handler));
    size_t n = asio::buffer_copy(buffers, asio::buffer(replay_) + replayed_);
    replayed_ += n;
    if (replayed_ == replay_.size()) std::string().swap(replay_), replayed_ = 0;
    auto ex = asio::get_associated_executor(handler, get_executor());
    asio::post(ex, [h = std::forward<Handler>(handler), n]() mutable { h(error_code(), n); });
  }
  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    socket_.async_write_some(buffers, std::forward<Handler>(handler));
  }

 private:
  Socket& socket_;
  std::string replay_;
  size_t replayed_ = 0;
};

class ServerStream {
 public:
  ServerStream(Socket& socket, SSL* ssl) : stream(socket, ssl) {}
  asio::ssl::stream<ReplayingSocket> stream;
  HelloState hello;
};

void ServerStreamDelete::operator()(ServerStream* s) const { delete s; }

namespace {

std::array<std::atomic<uint64_t>, 7> handshake_counts{};

int hello_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
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
      std::string name(reinterpret_cast<const char*>(p + i), n);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
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
  const ServerCertificate* cert = hello->certificates->find(hello->server_name);
  if (!cert) {
    hello->refused = hello->server_name.empty() ? HandshakeResult::NoServerName
                                                : HandshakeResult::UnknownServerName;
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_CLIENT_HELLO_ERROR;
  }
  SSL_set_SSL_CTX(ssl, cert->context.get());
  SSL_set_min_proto_version(ssl, cert->min_version);
  SSL_set_max_proto_version(ssl, cert->max_version);
  if (cert->disabled) SSL_set_options(ssl, cert->disabled);
  return SSL_CLIENT_HELLO_SUCCESS;
}

// The context every handshake starts on: no certificate of its own (the ClientHello callback
// switches to the one for the server name). Sessions resume by ticket only (no server-side
// cache to share between workers); ticket keys live here, so they survive config changes.
SSL_CTX* listener_context() {
  static SSL_CTX* const ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(c, TLS1_1_VERSION);  // narrowed per certificate
    SSL_CTX_set_options(
        c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
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
    case HandshakeResult::Failed:
      break;
  }
  return "failed";
}

uint64_t handshake_count(HandshakeResult r) {
  return handshake_counts[static_cast<size_t>(r)].load(std::memory_order_relaxed);
}

Task<Handshake> accept(Socket& socket, std::string_view first_bytes,
                       const CertificateTable& certificates, Deadline& d, double timeout) {
  Handshake h;
  if (first_bytes.empty() || static_cast<unsigned char>(first_bytes[0]) != 0x16) {
    // Not a TLS handshake record.
    answer_plain_http(socket);
    h.result = HandshakeResult::PlainHttp;
    co_return finish(std::move(h));
  }
  SSL* ssl = SSL_new(listener_context());
  if (!ssl) {
    h.detail = take_openssl_error();
    co_return finish(std::move(h));
  }
  ServerStreamPtr stream(new ServerStream(socket, ssl));  // owns `ssl` from here
  stream->stream.next_layer().replay(first_bytes);
  stream->hello.certificates = &certificates;
  SSL_set_ex_data(ssl, hello_index(), &stream->hello);
  d.arm(timeout, &socket);
  auto [ec] = co_await stream->stream.async_handshake(asio::ssl::stream_base::server, await_ec);
  bool timed_out = d.fired();
  d.disarm();
  SSL_set_ex_data(ssl, hello_index(), nullptr);  // the table is the caller's
  stream->hello.certificates = nullptr;
  h.server_name = stream->hello.server_name;
  if (!ec) {
    h.result = HandshakeResult::Ok;
    h.stream = std::move(stream);
  } else if (stream->hello.refused != HandshakeResult::Ok) {
    h.result = stream->hello.refused;
  } else if (timed_out) {
    h.result = HandshakeResult::Timeout;
  } else if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated ||
             ec == asio::error::connection_reset) {
    h.result = HandshakeResult::Closed;
  } else {
    h.result = HandshakeResult::Failed;
    h.detail = ec.message();
  }
  ERR_clear_error();
  co_return finish(std::move(h));
}

void count_handshake(HandshakeResult r) {
  handshake_counts[static_cast<size_t>(r)].fetch_add(1, std::memory_order_relaxed);
}

Task<IoResult> read_some(ServerStream& s, asio::mutable_buffer b) {
  auto [ec, n] = co_await s.stream.async_read_some(b, await_ec);
  if (ec == asio::ssl::error::stream_truncated) ec = asio::error::eof;
  co_return IoResult{ec, n};
}

Task<IoResult> write_all(ServerStream& s, asio::const_buffer b) {
  return asio::async_write(s.stream, b, await_ec);
}

Task<> shutdown(ServerStream& s) { co_await s.stream.async_shutdown(await_ec); }

const std::string& server_name(const ServerStream& s) { return s.hello.server_name; }

}  // namespace portico::tls
