// portico-im-demo: the demo IM backend (TLV.md framing, conf/im_demo.proto bodies). Logins map a
// uid to its connection; person-to-person messages are pushed to the receiver's connection and
// acknowledged to the sender. With --proxy-protocol it reads a PROXY v2 header first and reports
// the client address it carried in the login reply, so gateway tests can see it.
//   usage: portico-im-demo [--listen 127.0.0.1:9100] [--proxy-protocol] [--name NAME]
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/asio.hpp"
#include "im_messages.hpp"
#include "stream/tlv_codec.hpp"

using namespace portico;
using namespace portico::stream;
using namespace im_demo;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 9100;
  bool proxy_protocol = false;
  std::string name = "im-demo";
};

std::string format_endpoint(const asio::ip::address& addr, uint16_t port) {
  return addr.is_v6() ? "[" + addr.to_string() + "]:" + std::to_string(port)
                      : addr.to_string() + ":" + std::to_string(port);
}

// Reads a PROXY protocol v2 header (the binary one; haproxy's spec, section 2.2) from the start
// of `in`: returns its size and sets `source` to "ip:port" for TCP over IPv4/IPv6 (LOCAL and
// other families leave it alone), 0 when more bytes are needed, -1 when it is not one.
long parse_proxy_v2(const uint8_t* in, size_t size, std::string& source) {
  static constexpr uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                             0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  if (std::memcmp(in, kSignature, std::min<size_t>(size, 12)) != 0) return -1;
  if (size < 16) return 0;
  const uint8_t version_command = in[12], family = in[13];
  const size_t length = (size_t{in[14]} << 8) | in[15];
  if ((version_command >> 4) != 2 || (version_command & 0x0F) > 1) return -1;
  if (size < 16 + length) return 0;
  const uint8_t* a = in + 16;
  if ((version_command & 0x0F) == 1 && family == 0x11 && length >= 12) {
    asio::ip::address_v4::bytes_type ip;
    std::memcpy(ip.data(), a, 4);
    source = format_endpoint(asio::ip::address_v4(ip), static_cast<uint16_t>(a[8] << 8 | a[9]));
  } else if ((version_command & 0x0F) == 1 && family == 0x21 && length >= 36) {
    asio::ip::address_v6::bytes_type ip;
    std::memcpy(ip.data(), a, 16);
    source = format_endpoint(asio::ip::address_v6(ip), static_cast<uint16_t>(a[32] << 8 | a[33]));
  }
  return static_cast<long>(16 + length);
}

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

class Session;

struct Server {
  Options options;
  TlvFraming framing;  // TLV.md's default layout
  std::unordered_map<uint64_t, std::shared_ptr<Session>> online;
  uint64_t next_server_msg_id = 1;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  static constexpr size_t kMaxOutbox = 4 << 20;

  Session(Server& server, Socket socket) : server_(server), socket_(std::move(socket)) {}

  Task<void> run() {
    error_code ec;
    auto peer = socket_.remote_endpoint(ec);
    peer_ = ec ? "?" : format_endpoint(peer.address(), peer.port());
    seen_addr_ = peer_;
    if (server_.options.proxy_protocol && !co_await read_proxy_header()) {
      log("closed: no valid PROXY v2 header");
      co_return;
    }
    log(server_.options.proxy_protocol ? "connected, PROXY v2 client " + seen_addr_ : "connected");

    TlvDecoder decoder(server_.framing);
    while (true) {
      Bytes unread(buf_.data() + begin_, end_ - begin_);
      TlvDecodeResult r = decoder.decode(unread);
      if (r.ok()) {
        handle(r.frame);
        begin_ += r.frame.bytes.size();
        continue;
      }
      if (r.status == TlvDecodeResult::Status::Error) {
        log(std::string("closed: ") + std::string(to_string(r.error)));
        break;
      }
      if (!co_await read_more(r.need)) {
        if (end_ != begin_) log("closed: truncated frame");
        break;
      }
    }
    log("disconnected");
    error_code ignored;
    socket_.close(ignored);  // pushes queued for this connection fail instead of piling up
    auto it = server_.online.find(uid_);
    if (uid_ && it != server_.online.end() && it->second.get() == this) server_.online.erase(it);
  }

  // Queues a frame; one writer coroutine drains the queue so pushes from other sessions and
  // replies never interleave inside a frame.
  // A receiver that stops reading is dropped once 4 MiB wait for it, rather than growing the
  // backend without bound (a real IM server would keep its messages for the next login).
  void send(std::string frame) {
    if (!socket_.is_open()) return;
    if (outbox_.size() + frame.size() > kMaxOutbox) {
      log("closed: not reading (4 MiB waiting)");
      error_code ignored;
      socket_.close(ignored);
      outbox_.clear();
      return;
    }
    outbox_ += frame;
    if (writing_) return;
    writing_ = true;
    asio::co_spawn(socket_.get_executor(), write_loop(shared_from_this()), asio::detached);
  }

  uint32_t next_push_seq() { return ++push_seq_ & 0xFFFF; }

 private:
  static Task<void> write_loop(std::shared_ptr<Session> self) {
    while (!self->outbox_.empty()) {
      std::string batch;
      batch.swap(self->outbox_);
      auto [ec, n] = co_await asio::async_write(self->socket_, asio::buffer(batch), await_ec);
      if (ec) {
        self->outbox_.clear();
        error_code ignored;
        self->socket_.close(ignored);
        break;
      }
    }
    self->writing_ = false;
  }

  // Reads what has arrived, with room for at least `need` more bytes (false at EOF or error).
  // It does not wait for all of them: the decoder sees a bad marker as soon as it arrives.
  Task<bool> read_more(size_t need) {
    if (begin_ > 0) {  // compact
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buf_.size() < end_ + need) buf_.resize(std::max<size_t>(end_ + need, 16 * 1024));
    auto [ec, n] = co_await socket_.async_read_some(
        asio::buffer(buf_.data() + end_, buf_.size() - end_), await_ec);
    end_ += n;
    co_return !ec;
  }

  Task<bool> read_proxy_header() {
    while (true) {
      long used = parse_proxy_v2(buf_.data() + begin_, end_ - begin_, seen_addr_);
      if (used < 0) co_return false;
      if (used > 0) {
        begin_ += static_cast<size_t>(used);
        co_return true;
      }
      if (!co_await read_more(1)) co_return false;
    }
  }

  void reply(const TlvFrame& request, uint32_t status, const std::string& body) {
    std::string out;
    append_tlv_reply(server_.framing, request, status, as_bytes(body), out);
    send(std::move(out));
  }

  void handle(const TlvFrame& frame) {
    const auto body = as_chars(frame.body);
    switch (frame.header.cmd) {
      case kLogin:
        return login(frame, parse_login(body));
      case kChat:
        return chat(frame, parse_chat(body));
      case kHeartbeat: {
        auto hb = parse_heartbeat(body);
        Heartbeat answer{hb ? hb->sent_at : 0, server_.options.name};
        return reply(frame, hb ? kOk : kBadRequest, encode(answer));
      }
      case kReceipt:
        return;  // a client acknowledging a push: nothing to answer
      default:
        return reply(frame, kUnknownCommand, {});
    }
  }

  void login(const TlvFrame& frame, const std::optional<LoginRequest>& req) {
    LoginReply answer{kOk, 0, server_.options.name, seen_addr_};
    if (!req)
      answer.result = kBadRequest;
    else if (req->token.empty())
      answer.result = kBadToken;
    if (answer.result == kOk) {
      // Logging in as someone else on the same connection: the old uid is offline now.
      auto old = server_.online.find(uid_);
      if (uid_ && old != server_.online.end() && old->second.get() == this)
        server_.online.erase(old);
      uid_ = req->uid ? req->uid : frame.header.from;
      answer.uid = uid_;
      server_.online[uid_] = shared_from_this();  // a second login takes the uid over
      log("login uid " + std::to_string(uid_));
    }
    std::string out;
    TlvHeader h = tlv_reply_header(frame.header, answer.result);
    h.to = answer.uid ? answer.uid : frame.header.from;
    append_tlv(server_.framing, h, as_bytes(encode(answer)), out);
    send(std::move(out));
  }

  void chat(const TlvFrame& frame, std::optional<ChatMessage> msg) {
    Receipt receipt{kOk, msg ? msg->client_msg_id : "", 0, server_.options.name};
    std::shared_ptr<Session> receiver;
    if (!msg) {
      receipt.result = kBadRequest;
    } else if (!uid_) {
      receipt.result = kNotLoggedIn;
    } else {
      if (!msg->to) msg->to = frame.header.to;
      auto it = server_.online.find(msg->to);
      if (it == server_.online.end())
        receipt.result = kReceiverOffline;
      else
        receiver = it->second;
    }
    if (receiver) {
      msg->from = uid_;
      msg->server_msg_id = receipt.server_msg_id = server_.next_server_msg_id++;
      if (!msg->sent_at) msg->sent_at = now_ms();
      TlvHeader push;
      push.cmd = kChat;
      push.seq = receiver->next_push_seq();
      push.from = uid_;
      push.to = msg->to;
      std::string out;
      append_tlv(server_.framing, push, as_bytes(encode(*msg)), out);
      receiver->send(std::move(out));
    }
    reply(frame, receipt.result, encode(receipt));
  }

  void log(const std::string& what) {
    std::fprintf(stderr, "[%s] %s %s\n", server_.options.name.c_str(), peer_.c_str(), what.c_str());
  }

  Server& server_;
  Socket socket_;
  std::vector<uint8_t> buf_;
  size_t begin_ = 0, end_ = 0;
  std::string outbox_;
  bool writing_ = false;
  uint64_t uid_ = 0;
  uint32_t push_seq_ = 0;
  std::string peer_, seen_addr_;
};

Task<void> accept_loop(Server& server, Acceptor& acceptor) {
  while (true) {
    auto [ec, socket] = co_await acceptor.async_accept(await_ec);
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;
    }
    socket.set_option(asio::ip::tcp::no_delay(true), ec);
    auto session = std::make_shared<Session>(server, std::move(socket));
    asio::co_spawn(
        acceptor.get_executor(), [session]() -> Task<void> { co_await session->run(); },
        asio::detached);
  }
}

bool parse_options(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--proxy-protocol") {
      o.proxy_protocol = true;
    } else if (a == "--listen" && i + 1 < argc) {
      std::string v = argv[++i];
      auto colon = v.rfind(':');
      if (colon == std::string::npos) return false;
      o.host = v.substr(0, colon);
      if (o.host.size() > 1 && o.host.front() == '[') o.host = o.host.substr(1, o.host.size() - 2);
      o.port = static_cast<uint16_t>(std::stoi(v.substr(colon + 1)));
    } else if (a == "--name" && i + 1 < argc) {
      o.name = argv[++i];
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Server server;
  try {
    if (!parse_options(argc, argv, server.options)) {
      std::fprintf(stderr,
                   "usage: portico-im-demo [--listen host:port] [--proxy-protocol] [--name N]\n");
      return 2;
    }
    asio::io_context io(1);
    Acceptor acceptor(io.get_executor());
    Endpoint ep(asio::ip::make_address(server.options.host), server.options.port);
    acceptor.open(ep.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen();
    auto bound = acceptor.local_endpoint();
    // Tests wait for this line (and read the port from it when started with port 0).
    std::printf("portico-im-demo %s listening on %s\n", server.options.name.c_str(),
                format_endpoint(bound.address(), bound.port()).c_str());
    std::fflush(stdout);

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const error_code&, int) { io.stop(); });
    asio::co_spawn(io.get_executor(), accept_loop(server, acceptor), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "portico-im-demo: %s\n", e.what());
    return 1;
  }
  return 0;
}
