// portico-tlv-echo: a TLV echo backend for benchmarks. One thread, epoll, every complete frame
// written straight back from the read buffer (no copy, one write per read), so that a proxy
// in front of it, not the backend, is what a load test measures. Pin it with taskset.
//   usage: portico-tlv-echo [--listen 127.0.0.1:9200]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "stream/tlv_codec.hpp"

using namespace portico::stream;

namespace {

volatile std::sig_atomic_t g_stop = 0;

struct Conn {
  int fd = -1;
  std::vector<uint8_t> buf = std::vector<uint8_t>(64 * 1024);
  size_t len = 0;        // bytes read and not yet echoed or discarded
  size_t out_begin = 0;  // [out_begin, out_end): complete frames still to write
  size_t out_end = 0;
  bool blocked = false;  // waiting for EPOLLOUT, not reading
};

class EchoServer {
 public:
  explicit EchoServer(int listen_fd) : listen_fd_(listen_fd), epoll_(epoll_create1(0)) {
    add(listen_fd_, EPOLLIN);
  }

  void run() {
    epoll_event events[256];
    while (!g_stop) {
      int n = epoll_wait(epoll_, events, 256, 500);
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == listen_fd_) {
          accept_all();
          continue;
        }
        auto it = conns_.find(fd);
        if (it == conns_.end()) continue;
        Conn& c = *it->second;
        bool alive = (events[i].events & EPOLLOUT) ? on_writable(c) : on_readable(c);
        if (!alive) close_conn(fd);
      }
    }
  }

 private:
  void add(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
  }
  void modify(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epoll_, EPOLL_CTL_MOD, fd, &ev);
  }

  void accept_all() {
    while (true) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      conns_[fd] = std::move(c);
      add(fd, EPOLLIN);
    }
  }

  void close_conn(int fd) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns_.erase(fd);
  }

  bool on_readable(Conn& c) {
    if (c.len == c.buf.size()) return false;  // cannot happen: grown to the frame size below
    ssize_t n = read(c.fd, c.buf.data() + c.len, c.buf.size() - c.len);
    if (n <= 0) return n < 0 && (errno == EAGAIN || errno == EINTR);
    c.len += static_cast<size_t>(n);
    return echo_complete_frames(c);
  }

  // Finds the complete frames at the front of the buffer and writes them back in one go.
  bool echo_complete_frames(Conn& c) {
    Bytes unread(c.buf.data(), c.len);
    size_t complete = 0;
    while (true) {
      TlvDecodeResult r = decoder_.decode(unread.subspan(complete));
      if (r.ok()) {
        complete += r.frame.bytes.size();
        continue;
      }
      if (r.status == TlvDecodeResult::Status::Error) {
        std::fprintf(stderr, "portico-tlv-echo: closing a connection: %s\n",
                     std::string(to_string(r.error)).c_str());
        return false;
      }
      if (c.len + r.need > c.buf.size()) c.buf.resize(c.len + r.need);  // a frame over 64 KiB
      break;
    }
    if (complete == 0) return true;
    c.out_begin = 0;
    c.out_end = complete;
    return on_writable(c);
  }

  bool on_writable(Conn& c) {
    while (c.out_begin < c.out_end) {
      ssize_t n = write(c.fd, c.buf.data() + c.out_begin, c.out_end - c.out_begin);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return false;
        modify(c.fd, EPOLLOUT);  // stop reading until the client takes its echoes
        c.blocked = true;
        return true;
      }
      c.out_begin += static_cast<size_t>(n);
    }
    size_t rest = c.len - c.out_end;
    std::memmove(c.buf.data(), c.buf.data() + c.out_end, rest);
    c.len = rest;
    c.out_begin = c.out_end = 0;
    if (c.blocked) modify(c.fd, EPOLLIN);
    c.blocked = false;
    return true;
  }

  int listen_fd_;
  int epoll_;
  TlvFraming framing_;
  TlvDecoder decoder_{framing_};
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;
};

int listen_on(const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 4096) != 0) {
    std::perror("portico-tlv-echo: listen");
    return -1;
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:9200";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
      listen = argv[++i];
    } else {
      std::fprintf(stderr, "usage: portico-tlv-echo [--listen host:port]\n");
      return 2;
    }
  }
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) return 2;
  int fd = listen_on(listen.substr(0, colon), std::atoi(listen.c_str() + colon + 1));
  if (fd < 0) return 1;
  std::signal(SIGINT, [](int) { g_stop = 1; });
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::signal(SIGPIPE, SIG_IGN);
  std::printf("portico-tlv-echo listening on %s\n", listen.c_str());
  std::fflush(stdout);
  EchoServer(fd).run();
  return 0;
}
