// portico-tlv-load: a TLV load generator for echo-style backends (portico-tlv-echo, or a proxy in
// front of one). Closed loop (each connection keeps K frames in flight: throughput in frames/s)
// or fixed rate (R frames/s spread over the connections: round-trip latency percentiles, sends
// scheduled by the clock so a slow server cannot slow the sender down). One thread, epoll.
//   usage: portico-tlv-load --connect 127.0.0.1:9200 [--connections 50] [--inflight 4]
//          [--body 256] [--duration 10] [--warmup 1] [--rate 0 (closed loop) | frames/s]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "stream/tlv_codec.hpp"

using namespace portico::stream;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 9200;
  int connections = 50;
  int inflight = 4;
  size_t body = 256;
  double duration = 10;
  double warmup = 1;
  double rate = 0;  // 0 = closed loop
};

constexpr size_t kRing = 4096;  // in-flight frames remembered per connection (their send times)

// CPU time (user + system) this process has used, in microseconds.
double cpu_us() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
         ru.ru_stime.tv_usec;
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

struct Conn {
  int fd = -1;
  std::vector<uint8_t> in = std::vector<uint8_t>(256 * 1024);
  size_t in_len = 0;
  std::string out;
  size_t out_off = 0;
  bool want_write = false;
  uint32_t next_seq = 0;
  uint32_t inflight = 0;
  std::vector<uint64_t> sent_at = std::vector<uint64_t>(kRing);
};

class LoadGenerator {
 public:
  explicit LoadGenerator(const Options& o) : o_(o), decoder_(framing_) {
    TlvHeader h;
    h.cmd = 0x4001;
    h.from = 1001;
    h.to = 1002;
    append_tlv(framing_, h, as_bytes(std::string(o.body, 'x')), frame_);
    header_offset_ = framing_.prefix_size() - framing_.header_size;
  }

  int run() {
    epoll_ = epoll_create1(0);
    conns_.resize(o_.connections);
    for (size_t i = 0; i < conns_.size(); ++i)
      if (!connect_one(conns_[i], i)) return 1;

    start_ = now_ns();
    measure_from_ = start_ + uint64_t(o_.warmup * 1e9);
    measure_to_ = measure_from_ + uint64_t(o_.duration * 1e9);
    samples_.reserve(o_.rate > 0 ? size_t(o_.rate * o_.duration * 1.1) : 1 << 20);

    int timer = -1;
    if (o_.rate > 0) {
      timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
      long period_ns = std::max(20000L, long(1e9 / o_.rate));  // >= 20 us between wake-ups
      itimerspec spec{{0, period_ns}, {0, period_ns}};
      timerfd_settime(timer, 0, &spec, nullptr);
      epoll_event ev{EPOLLIN, {.u64 = ~uint64_t{0}}};
      epoll_ctl(epoll_, EPOLL_CTL_ADD, timer, &ev);
    } else {
      for (Conn& c : conns_) {
        for (int k = 0; k < o_.inflight; ++k) queue_frame(c, start_);
        if (!flush(c)) return 1;
      }
    }

    epoll_event events[256];
    while (true) {
      uint64_t now = now_ns();
      if (now >= measure_to_) break;
      if (cpu_at_start_ < 0 && now >= measure_from_) cpu_at_start_ = cpu_us();
      int n = epoll_wait(epoll_, events, 256, 100);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == ~uint64_t{0}) {
          uint64_t expirations;
          if (read(timer, &expirations, sizeof expirations) < 0) continue;
          if (!send_due()) return 1;
          continue;
        }
        Conn& c = conns_[events[i].data.u64];
        if ((events[i].events & EPOLLOUT) && !flush(c)) return 1;
        if ((events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !on_readable(c)) return 1;
      }
    }
    cpu_used_ = cpu_us() - std::max(0.0, cpu_at_start_);
    report();
    return 0;
  }

 private:
  bool connect_one(Conn& c, size_t index) {
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(o_.port));
    inet_pton(AF_INET, o_.host.c_str(), &addr.sin_addr);
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::perror("portico-tlv-load: connect");
      return false;
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{EPOLLIN, {.u64 = index}};
    epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev);
    return true;
  }

  void queue_frame(Conn& c, uint64_t now) {
    size_t at = c.out.size();
    c.out += frame_;
    uint32_t seq = c.next_seq++ & 0xFFFF;
    write_tlv_field(reinterpret_cast<uint8_t*>(c.out.data() + at + header_offset_), framing_.seq,
                    seq);
    c.sent_at[seq % kRing] = now;
    ++c.inflight;
  }

  bool flush(Conn& c) {
    while (c.out_off < c.out.size()) {
      ssize_t n = write(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return fail("write");
        if (!c.want_write) set_events(c, EPOLLIN | EPOLLOUT, true);
        return true;
      }
      c.out_off += size_t(n);
    }
    c.out.clear();
    c.out_off = 0;
    if (c.want_write) set_events(c, EPOLLIN, false);
    return true;
  }

  void set_events(Conn& c, uint32_t events, bool want_write) {
    epoll_event ev{events, {.u64 = size_t(&c - conns_.data())}};
    epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
    c.want_write = want_write;
  }

  bool on_readable(Conn& c) {
    ssize_t n = read(c.fd, c.in.data() + c.in_len, c.in.size() - c.in_len);
    if (n == 0) return fail("server closed a connection");
    if (n < 0) return errno == EAGAIN || errno == EINTR ? true : fail("read");
    c.in_len += size_t(n);
    uint64_t now = now_ns();
    bool counted = now >= measure_from_ && now < measure_to_;
    size_t pos = 0, answered = 0;
    while (true) {
      TlvDecodeResult r = decoder_.decode(Bytes(c.in.data() + pos, c.in_len - pos));
      if (r.status == TlvDecodeResult::Status::Error) return fail(to_string(r.error).data());
      if (!r.ok()) break;
      pos += r.frame.bytes.size();
      ++answered;
      --c.inflight;
      if (counted) {
        uint64_t rtt = now - c.sent_at[r.frame.header.seq % kRing];
        samples_.push_back(uint32_t(std::min<uint64_t>(rtt, UINT32_MAX)));
      }
    }
    std::memmove(c.in.data(), c.in.data() + pos, c.in_len - pos);
    c.in_len -= pos;
    if (o_.rate > 0 || answered == 0) return true;
    for (size_t i = 0; i < answered; ++i) queue_frame(c, now);  // closed loop: one for one
    return flush(c);
  }

  // Fixed rate: sends what the schedule says is due by now, round-robin over the connections.
  bool send_due() {
    uint64_t now = now_ns();
    uint64_t due = uint64_t(double(now - start_) * 1e-9 * o_.rate);
    std::vector<Conn*> touched;
    for (; scheduled_ < due; ++scheduled_) {
      Conn& c = conns_[rr_++ % conns_.size()];
      if (c.inflight >= kRing) {  // the server is hopelessly behind; count it, don't corrupt
        ++skipped_;
        continue;
      }
      if (c.out.empty()) touched.push_back(&c);
      queue_frame(c, now);
    }
    for (Conn* c : touched)
      if (!flush(*c)) return false;
    return true;
  }

  bool fail(const char* what) {
    std::fprintf(stderr, "portico-tlv-load: %s%s%s\n", what, errno ? ": " : "",
                 errno ? std::strerror(errno) : "");
    return false;
  }

  double percentile_us(double p) {
    if (samples_.empty()) return 0;
    size_t k = std::min(samples_.size() - 1, size_t(p * double(samples_.size())));
    std::nth_element(samples_.begin(), samples_.begin() + long(k), samples_.end());
    return samples_[k] / 1000.0;
  }

  void report() {
    double frames_per_s = double(samples_.size()) / o_.duration;
    double p50 = percentile_us(0.50), p99 = percentile_us(0.99), p999 = percentile_us(0.999);
    std::printf("%s:%d %s conns=%d body=%zu duration=%.0fs\n", o_.host.c_str(), o_.port,
                o_.rate > 0 ? "fixed-rate" : "closed-loop", o_.connections, o_.body, o_.duration);
    if (o_.rate > 0)
      std::printf("  target %.0f frames/s", o_.rate);
    else
      std::printf("  inflight %d per connection", o_.inflight);
    std::printf("  ->  %.0f frames/s  rtt p50 %.0f us  p99 %.0f us  p999 %.0f us%s\n", frames_per_s,
                p50, p99, p999, skipped_ ? "  (server fell behind)" : "");
    // The generator's own cost: what a proxy benchmark leaves for the proxy on a shared core.
    double cpu_per_frame = samples_.empty() ? 0 : cpu_used_ / double(samples_.size());
    std::printf("  load generator cpu %.2f us/frame (%.0f%% of a core)\n", cpu_per_frame,
                cpu_used_ / (o_.duration * 1e4));
    std::printf(
        "frames_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f skipped=%llu "
        "load_cpu_us_per_frame=%.3f\n",
        frames_per_s, p50, p99, p999, (unsigned long long)skipped_, cpu_per_frame);
  }

  Options o_;
  TlvFraming framing_;
  TlvDecoder decoder_;
  std::string frame_;
  size_t header_offset_ = 0;  // of the header inside a frame: after the start marker
  int epoll_ = -1;
  std::vector<Conn> conns_;
  std::vector<uint32_t> samples_;  // round trips in ns, measured window only
  uint64_t start_ = 0, measure_from_ = 0, measure_to_ = 0;
  uint64_t scheduled_ = 0, skipped_ = 0, rr_ = 0;
  double cpu_at_start_ = -1, cpu_used_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--connect") {
      auto colon = v.rfind(':');
      if (colon == std::string::npos) return 2;
      o.host = v.substr(0, colon);
      o.port = std::atoi(v.c_str() + colon + 1);
    } else if (a == "--connections") {
      o.connections = std::max(1, std::atoi(v.c_str()));
    } else if (a == "--inflight") {
      o.inflight = std::clamp(std::atoi(v.c_str()), 1, int(kRing) - 1);
    } else if (a == "--body") {
      o.body = size_t(std::atol(v.c_str()));
    } else if (a == "--duration") {
      o.duration = std::max(0.1, std::atof(v.c_str()));
    } else if (a == "--warmup") {
      o.warmup = std::max(0.0, std::atof(v.c_str()));
    } else if (a == "--rate") {
      o.rate = std::max(0.0, std::atof(v.c_str()));
    } else {
      std::fprintf(stderr,
                   "usage: portico-tlv-load --connect host:port [--connections N] [--inflight K]\n"
                   "       [--body BYTES] [--duration S] [--warmup S] [--rate FRAMES_PER_S]\n");
      return 2;
    }
  }
  if (argc % 2 == 0) return 2;
  std::signal(SIGPIPE, SIG_IGN);
  return LoadGenerator(o).run();
}
