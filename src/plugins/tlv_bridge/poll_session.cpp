#include "plugins/tlv_bridge/poll_session.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/byte_stream.hpp"
#include "core/deadline.hpp"
#include "core/edge_read.hpp"
#include "core/hex.hpp"
#include "core/io_buffer.hpp"
#include "core/json_depth.hpp"
#include "core/log.hpp"
#include "core/worker.hpp"
#include "plugins/context.hpp"
#include "plugins/tlv_bridge/backend_link.hpp"
#include "plugins/tlv_bridge/frame_policy.hpp"
#include "plugins/tlv_bridge/websocket_session.hpp"
#include "upstream/upstream_target.hpp"

namespace portico::plugins {
namespace {

// Messages queued for a client before the backend is read again (a client that stops polling
// cannot make the gateway queue without bound; the backend's TCP window fills instead).
constexpr size_t kQueueHighWater = 1024 * 1024;
// Bytes of messages in one poll's answer (at least one message): a flaky link loses less when an
// answer is lost, and the rest comes with the next poll.
constexpr size_t kPollAnswerBytes = 256 * 1024;
// Envelopes in one batch: more is a client bug or an attack, not a chat.
constexpr size_t kMaxBatch = 256;
// Send numbers a session remembers: a client has far fewer sends in flight at once.
constexpr size_t kRememberedSends = 64;
// An ended session (the backend closed) is kept this long after the client's last request, so
// the client can still fetch what the backend sent before closing, and learn why it ended.
constexpr int64_t kEndedGraceMs = 30'000;
// How long a client may leave its queue full while the route's sessions hold more than
// max_poll_memory: a flaky link's pause, not a client that stopped acknowledging.
constexpr int64_t kFullTooLongMs = 5'000;

std::string new_session_id(int worker) {
  unsigned char secret[16];
  if (RAND_bytes(secret, sizeof(secret)) != 1) throw std::runtime_error("RAND_bytes failed");
  std::string id = std::to_string(worker) + "-";
  hex::append(id, secret, sizeof(secret));
  return id;
}

class PollSession;
// This worker's sessions by id. Sessions are only ever touched on their worker's thread.
thread_local std::unordered_map<std::string, std::shared_ptr<PollSession>> sessions;

class PollSession : public std::enable_shared_from_this<PollSession> {
 public:
  PollSession(std::shared_ptr<const TlvBridgeConfig> config, Takeover& io, std::string client)
      : config_(std::move(config)),
        client_(std::move(client)),
        worker_(io.worker),
        upstream_(io.upstream_shared),
        backend_(io.worker.executor()),
        decoder_(config_->framing),
        waker_(io.worker.executor()),
        flushed_(io.worker.executor()) {
    for (Deadline* d : {&idle_, &write_deadline_}) worker_.deadlines().add(*d);
    flushed_.expires_at(Timer::time_point::max());  // waits end by cancel() only
    worker_.idle_waits().add(drain_watch_);
  }

  ~PollSession() {
    config_->poll_sessions->queued_bytes.fetch_sub(static_cast<int64_t>(queued_bytes_),
                                                   std::memory_order_relaxed);
    config_->poll_sessions->give_back(client_);
    tlv_bridge_counters().poll_active.fetch_sub(1, std::memory_order_relaxed);
    worker_.buffers().release(backend_in_);
  }

  const std::string& id() const { return id_; }
  const TlvBridgeConfig& config() const { return *config_; }

  // Connects the backend; on failure `answer` holds the HTTP answer.
  Task<bool> connect(Takeover& io, Context& ctx, PollAnswer& answer) {
    if (!bind_types(*config_, io, types_, ctx)) {
      answer = {ctx.reply.status, ctx.reply.body};
      co_return false;
    }
    node_ = co_await connect_tlv_backend(io, backend_, write_deadline_);
    if (node_ < 0) {
      tlv_bridge_counters().connect_failures.fetch_add(1, std::memory_order_relaxed);
      answer = poll_error(502, "no TLV backend accepts connections");
      co_return false;
    }
    if (config_->send_proxy_protocol) to_backend_ = proxy_header_for(ctx, io.client.socket());
    appended_ = to_backend_.size();
    id_ = new_session_id(worker_.index());
    upstream_->session_opened(node_);  // least_conn counts sessions per node
    watch_.connected(upstream_.get(), node_);
    backend_in_ = worker_.buffers().acquire();
    drain_watch_.arm(365.0 * 86400, &backend_);
    touched();
    co_return true;
  }

  // Runs for the session's life: reads the backend, then keeps an ended session for its grace
  // period. `self` (this session) is held by the coroutine's frame from its start.
  static Task<> run(std::shared_ptr<PollSession> self) { return self->run_held(self); }

  // Sends what waits for the backend (the PROXY header, right after connecting).
  Task<> flush() { return flush_backend(); }

  // Refuses further sends now that the session will not be returned to the client.
  void abandon(std::string reason) {
    end(std::move(reason));
    unregister();
  }

  // Envelopes from the client: to the backend, or refused with an answer in the queue.
  Task<PollAnswer> send(std::string_view body, std::optional<uint64_t> number = std::nullopt) {
    // Sends to an ended session do not extend its grace: a client retrying them would keep
    // the session (and its queue) forever. Its polls still collect what is left.
    if (ended_) co_return ended_answer();
    touched();
    if (number) {
      if (auto it = taken_.find(*number); it != taken_.end()) {  // taken already: not sent again
        tlv_bridge_counters().poll_repeated_sends.fetch_add(1, std::memory_order_relaxed);
        // Answered once the original's frames are written, as the original is: a client whose
        // repeat says "accepted" may count on the backend having them.
        const TakenSend taken = it->second;
        while (written_ < taken.end && !ended_) co_await flushed_.async_wait(await_ec);
        if (ended_) co_return ended_answer();  // (a failed write also ends the session)
        co_return PollAnswer{200, send_counts(taken.accepted, taken.refused, true)};
      }
      if (forgotten_ && *number <= *forgotten_) {  // too old to know: taken, most likely
        tlv_bridge_counters().poll_repeated_sends.fetch_add(1, std::memory_order_relaxed);
        co_return PollAnswer{200, "{\"repeated\":true}"};
      }
    }
    // A client that sends without polling would grow the queue with refusals' answers, and one
    // that sends faster than the backend takes would grow what waits for it: both wait instead.
    if (queued_bytes_ >= kQueueHighWater)
      co_return poll_error(429, "the session's messages are not being polled: poll first");
    if (body.size() > kQueueHighWater) co_return poll_error(413, "a send carries at most 1 MiB");
    if (to_backend_.size() + sending_.size() + body.size() > kQueueHighWater)
      co_return poll_error(429, "the backend is not taking messages that fast: retry");
    uint64_t accepted = 0, refused = 0;
    const size_t queued_before = messages_.size();
    auto take = [&](std::string_view text) {
      bridge::EnvelopeError error;
      frame_.clear();
      if (!bridge::envelope_to_tlv(text, config_->framing, types_, frame_, error)) {
        tlv_bridge_counters().refused.fetch_add(1, std::memory_order_relaxed);
        queue(bridge::error_envelope(error, config_->error_status));
        ++refused;
        return;
      }
      stream::TlvFrame frame = decoder_.decode(frame_).frame;
      std::optional<FrameRefusal> refusal = judge_bridge_frame(*config_, frame, conn_bucket_);
      if (refusal) {
        if (refusal->reply)
          queue(bridge::tlv_to_envelope(decoder_.decode(refusal->answer).frame, types_));
        ++refused;
        return;
      }
      to_backend_.append(frame_);
      appended_ += frame_.size();
      tlv_bridge_counters().frames_up.fetch_add(1, std::memory_order_relaxed);
      watch_.client_sent(backend_);
      ++accepted;
    };
    size_t start = body.find_first_not_of(" \t\r\n");
    std::optional<nlohmann::json> batch;
    if (start != std::string_view::npos && body[start] == '[') {
      // A batch: each element is one envelope, in order.
      if (json_nesting_depth(body, 65) > 65)
        co_return poll_error(400, "the batch nests too deeply");
      batch = nlohmann::json::parse(body, nullptr, false);
      if (batch->is_discarded() || !batch->is_array())
        co_return poll_error(400, "the body must be one JSON envelope or an array of them");
      if (batch->size() > kMaxBatch)
        co_return poll_error(413,
                             "a batch holds at most " + std::to_string(kMaxBatch) + " envelopes");
    }
    if (batch) {
      for (const auto& envelope : *batch) take(envelope.dump());
    } else {
      take(body);
    }
    if (number) {  // from here on a repeat is answered (once this one is written)
      taken_[*number] = TakenSend{accepted, refused, appended_};
      if (taken_.size() > kRememberedSends) {
        forgotten_ = taken_.begin()->first;
        taken_.erase(taken_.begin());
      }
    }
    if (messages_.size() != queued_before) wake_poll();  // refusals' answers
    co_await flush_backend();
    if (ended_) co_return ended_answer();
    co_return PollAnswer{200, send_counts(accepted, refused, false)};
  }

  // The messages from `next` on, waiting up to `wait` seconds for one when there are none.
  Task<PollAnswer> poll(std::optional<uint64_t> next, double wait) {
    touched();
    if (next) {
      if (*next > first_ + messages_.size())
        co_return poll_error(400, "next is beyond the last message of the session");
      acknowledge(*next);
    }
    if (messages_.empty() && !ended_ && wait > 0) {
      // One poll waits at a time: an older one answers now (with nothing new).
      wake_poll();
      Timer timer(worker_.executor());
      timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(wait * 1000)));
      waiting_ = &timer;
      ++polls_waiting_;
      idle_.disarm();  // a client waiting in a poll is not idle
      co_await timer.async_wait(await_ec);
      if (waiting_ == &timer) waiting_ = nullptr;
      --polls_waiting_;
      touched();
    }
    if (messages_.empty() && ended_) {
      PollAnswer answer = ended_answer();
      unregister();  // the client knows: nothing more to keep
      co_return answer;
    }
    std::string list;
    size_t count = 0;
    for (; count < messages_.size(); ++count) {
      if (count && list.size() + messages_[count].size() > kPollAnswerBytes) break;
      if (count) list += ',';
      list += messages_[count];
    }
    std::string body =
        "{\"next\":" + std::to_string(first_ + count) + ",\"messages\":[" + list + "]}";
    co_return PollAnswer{200, std::move(body)};
  }

  PollAnswer close() {
    end("closed by the client");
    unregister();
    return PollAnswer{200, "{\"closed\":true}"};
  }

  void start_registered() {
    sessions.emplace(id_, shared_from_this());
    registered_ = true;
  }

 private:
  static std::string send_counts(uint64_t accepted, uint64_t refused, bool repeated) {
    return "{\"accepted\":" + std::to_string(accepted) + ",\"refused\":" + std::to_string(refused) +
           (repeated ? ",\"repeated\":true}" : "}");
  }

  Task<> run_held(std::shared_ptr<PollSession>) {
    try {
      co_await read_backend();
    } catch (const std::exception& e) {
      log::error(std::string("tlv-bridge: polling session failed: ") + e.what());
      end("internal error");
    }
    while (registered_ && steady_now_ms() < last_request_ms_ + kEndedGraceMs) {
      waker_.expires_after(
          std::chrono::milliseconds(last_request_ms_ + kEndedGraceMs - steady_now_ms()));
      co_await waker_.async_wait(await_ec);
    }
    unregister();
  }

  // ---- the backend ------------------------------------------------------------------------

  Task<> read_backend() {
    IoBuffer& b = backend_in_;
    while (!ended_) {
      if (!co_await wait_for_polls()) break;
      if (ended_) break;
      if (b.writable() == 0) b.compact();
      auto [ec, n] =
          co_await async_read_edge(backend_, asio::buffer(b.write_ptr(), b.writable()), await_ec);
      if (ec) {
        // Another deadline on the socket (a write's) cancelled the read: read on.
        if (ec == asio::error::operation_aborted && !ended_ && !idle_.fired() &&
            !drain_watch_.fired() && backend_.is_open())
          continue;
        if (drain_watch_.fired() || worker_.draining())
          end("server shutting down");
        else if (idle_.fired())
          end("idle timeout");
        else {
          if (ec != asio::error::operation_aborted) watch_.closed_by_backend();
          end("the backend closed the connection");
        }
        break;
      }
      b.commit(n);
      bool delivered = false;
      while (true) {
        stream::TlvDecodeResult r = decoder_.decode(b.view());
        if (r.status == stream::TlvDecodeResult::Status::Error) {
          tlv_bridge_counters().bad_backend_frames.fetch_add(1, std::memory_order_relaxed);
          log::warn("tlv-bridge: corrupt frame from the backend (" +
                    std::string(stream::to_string(r.error)) + "): polling session closed");
          watch_.corrupt();
          end("the backend sent a corrupt frame");
          break;
        }
        if (r.status == stream::TlvDecodeResult::Status::NeedMore) {
          if (b.size() + r.need > b.capacity()) {
            b.compact();
            if (b.size() + r.need > b.capacity()) b.grow(b.size() + r.need);
          }
          break;
        }
        queue(bridge::tlv_to_envelope(r.frame, types_));
        tlv_bridge_counters().frames_down.fetch_add(1, std::memory_order_relaxed);
        watch_.frame();
        b.consume(r.frame.bytes.size());
        delivered = true;
      }
      if (delivered) wake_poll();
      if (b.empty() && b.capacity() > BufferPool::kBufferSize) {  // after one big frame
        worker_.buffers().release(b);
        b = worker_.buffers().acquire();
      }
    }
  }

  // While the queue is full: waits until a poll takes some. A client that stopped polling ends
  // the session at its idle timeout (the idle deadline watches the backend socket, which is not
  // being read now), as does a shutdown. False when the session ended.
  Task<bool> wait_for_polls() {
    const auto idle_ms = static_cast<int64_t>(config_->idle_timeout * 1000);
    const int64_t full_since = steady_now_ms();
    while (queued_bytes_ >= kQueueHighWater && !ended_) {
      if (drain_watch_.fired() || worker_.draining()) {
        end("server shutting down");
        break;
      }
      if (steady_now_ms() - full_since >= kFullTooLongMs &&
          config_->poll_sessions->queued_bytes.load(std::memory_order_relaxed) >
              config_->max_poll_memory) {
        tlv_bridge_counters().poll_memory_ends.fetch_add(1, std::memory_order_relaxed);
        end("too far behind: the messages waiting for polls were dropped (the gateway's polling "
            "sessions are out of memory)");
        drop_queue();
        break;
      }
      const int64_t left = last_request_ms_ + idle_ms - steady_now_ms();
      if (left <= 0 && polls_waiting_ == 0) {
        end("idle timeout");
        break;
      }
      // (a second at most, to notice a shutdown or memory running short)
      waker_.expires_after(std::chrono::milliseconds(std::clamp<int64_t>(left, 1, 1000)));
      co_await waker_.async_wait(await_ec);
    }
    co_return !ended_;
  }

  // Writes what the client sent. A send during another's write joins it: its bytes go in the
  // same loop, and it returns once they are written (or the session ended), not before, and
  // not later either (a steady stream of sends does not hold it back).
  Task<> flush_backend() {
    const uint64_t mine = appended_;  // every byte appended so far, this send's included
    if (writing_) {
      while (written_ < mine && !ended_) co_await flushed_.async_wait(await_ec);
      co_return;
    }
    writing_ = true;
    while (!to_backend_.empty() && !ended_) {
      const uint64_t batch_end = appended_;
      sending_.swap(to_backend_);
      size_t done = 0;
      error_code ec;
      while (!ec && done < sending_.size()) {
        write_deadline_.arm(upstream_->spec().send_timeout, &backend_);
        auto [wec, n] = co_await asio::async_write(
            backend_, asio::buffer(sending_.data() + done, sending_.size() - done), await_ec);
        write_deadline_.disarm();
        done += n;
        ec = wec;
        // The idle deadline (re-armed since) or nothing at all cancelled it: write on.
        if (ec == asio::error::operation_aborted && !write_deadline_.fired() && !ended_ &&
            backend_.is_open())
          ec = {};
      }
      sending_.clear();
      if (ec) end("the backend connection failed");
      written_ = batch_end;
      flushed_.cancel();  // the sends whose bytes were in that batch
    }
    writing_ = false;
  }

  // ---- the queue for the client -----------------------------------------------------------

  void queue(std::string envelope) {
    queued_bytes_ += envelope.size();
    config_->poll_sessions->queued_bytes.fetch_add(static_cast<int64_t>(envelope.size()),
                                                   std::memory_order_relaxed);
    messages_.push_back(std::move(envelope));
  }

  // The client will not get what is queued (max_poll_memory): the memory goes now, and polls
  // learn why the session ended.
  void drop_queue() {
    config_->poll_sessions->queued_bytes.fetch_sub(static_cast<int64_t>(queued_bytes_),
                                                   std::memory_order_relaxed);
    first_ += messages_.size();
    messages_.clear();
    queued_bytes_ = 0;
  }

  // Messages before `next` have reached the client.
  void acknowledge(uint64_t next) {
    bool was_full = queued_bytes_ >= kQueueHighWater;
    while (first_ < next && !messages_.empty()) {
      queued_bytes_ -= messages_.front().size();
      config_->poll_sessions->queued_bytes.fetch_sub(static_cast<int64_t>(messages_.front().size()),
                                                     std::memory_order_relaxed);
      messages_.pop_front();
      ++first_;
    }
    if (was_full && queued_bytes_ < kQueueHighWater) waker_.cancel();  // read the backend again
  }

  void wake_poll() {
    if (waiting_) {
      waiting_->cancel();
      waiting_ = nullptr;
    }
  }

  // A request arrived: the session is not idle.
  void touched() {
    last_request_ms_ = steady_now_ms();
    if (!ended_ && polls_waiting_ == 0) idle_.arm(config_->idle_timeout, &backend_);
  }

  // The backend connection is over (the queue stays for the client until the grace ends).
  void end(std::string reason) {
    if (ended_) return;
    ended_ = true;
    end_reason_ = std::move(reason);
    idle_.disarm();
    drain_watch_.disarm();
    error_code ignored;
    backend_.close(ignored);
    if (node_ >= 0) upstream_->session_closed(node_);
    wake_poll();
    waker_.cancel();
    flushed_.cancel();  // sends waiting for their bytes: the session ended
  }

  void unregister() {
    if (!registered_) return;
    registered_ = false;
    waker_.cancel();      // run() ends
    sessions.erase(id_);  // may destroy *this once run() lets go: nothing after this
  }

  PollAnswer ended_answer() const { return poll_error(410, "the session ended: " + end_reason_); }

  std::shared_ptr<const TlvBridgeConfig> config_;
  std::string client_;  // the address its slot in the route's count is held for
  Worker& worker_;
  std::shared_ptr<const upstream::UpstreamTarget> upstream_;
  Socket backend_;
  stream::TlvDecoder decoder_;
  bridge::CmdTypes types_;
  IoBuffer backend_in_;
  std::string id_;
  int node_ = -1;
  BackendWatch watch_;
  std::string to_backend_, sending_, frame_;
  bool writing_ = false;
  uint64_t appended_ = 0, written_ = 0;  // bytes for the backend: queued, and written
  BucketState conn_bucket_;              // rate_limit.per_connection, per session
  std::deque<std::string> messages_;     // envelopes for the client; messages_[0] is number first_
  uint64_t first_ = 0;
  size_t queued_bytes_ = 0;
  // Numbered sends: the latest kRememberedSends taken, so that one arriving after a later one
  // (sent concurrently, or retried after a 504) is still told apart from a repeat.
  struct TakenSend {
    uint64_t accepted = 0, refused = 0;
    uint64_t end = 0;  // appended_ once its frames were queued: written when written_ reaches it
  };
  std::map<uint64_t, TakenSend> taken_;
  std::optional<uint64_t> forgotten_;  // the highest number dropped from taken_
  Timer* waiting_ = nullptr;           // the poll waiting for a message
  int polls_waiting_ = 0;
  Timer waker_;    // run()'s: backpressure and the grace period
  Timer flushed_;  // sends waiting for the write in progress
  Deadline idle_, write_deadline_, drain_watch_;
  int64_t last_request_ms_ = 0;
  bool ended_ = false;
  bool registered_ = false;
  std::string end_reason_;
};

}  // namespace

PollAnswer poll_error(int status, std::string_view message) {
  nlohmann::json body = {{"error_msg", "tlv-bridge: " + std::string(message)}};
  return PollAnswer{status, body.dump()};
}

int poll_session_worker(std::string_view session) {
  size_t dash = session.find('-');
  if (dash == 0 || dash == std::string_view::npos || dash > 4 || session.size() != dash + 33)
    return -1;
  int worker = 0;
  for (char ch : session.substr(0, dash)) {
    if (ch < '0' || ch > '9') return -1;
    worker = worker * 10 + (ch - '0');
  }
  return worker;
}

Task<PollAnswer> open_poll_session(std::shared_ptr<const TlvBridgeConfig> config, Takeover& io,
                                   Context& ctx) {
  if (io.worker.draining()) co_return poll_error(503, "server shutting down");
  const std::string client(ctx.client_ip);
  if (!config->poll_sessions->take(client, config->max_poll_sessions,
                                   config->max_poll_sessions_per_client))
    co_return poll_error(503,
                         "too many polling sessions on this route (in all, or from this "
                         "client address)");
  tlv_bridge_counters().poll_active.fetch_add(1, std::memory_order_relaxed);
  auto session = std::make_shared<PollSession>(config, io, client);  // counted from here
  PollAnswer answer;
  if (!co_await session->connect(io, ctx, answer)) co_return answer;
  if (io.worker.draining()) {  // it began while connecting
    session->abandon("server shutting down");
    co_return poll_error(503, "server shutting down");
  }
  tlv_bridge_counters().poll_sessions.fetch_add(1, std::memory_order_relaxed);
  session->start_registered();
  asio::co_spawn(io.worker.executor(), PollSession::run(session), asio::detached);
  co_await session->flush();  // the PROXY header: the backend learns who the client is now
  std::string_view body = io.body;
  if (body.find_first_not_of(" \t\r\n") != std::string_view::npos) {
    answer = co_await session->send(body);
    if (answer.status != 200) {
      // The client never learns the id of a session whose open failed: end it now.
      session->abandon("the opening request was refused");
      co_return answer;
    }
  }
  nlohmann::json opened = {{"session", session->id()},
                           {"next", 0},
                           {"wait", config->poll_wait},
                           {"idle_timeout", config->idle_timeout}};
  co_return PollAnswer{200, opened.dump()};
}

Task<PollAnswer> serve_poll_request(const PollRequest& request) {
  auto it = sessions.find(request.session);
  if (it == sessions.end() || it->second->config().route_key != request.route)
    co_return poll_error(404, "no such session (it ended, expired or belongs to another node)");
  std::shared_ptr<PollSession> session = it->second;  // alive while the request uses it
  switch (request.kind) {
    case PollRequest::Kind::Send:
      co_return co_await session->send(request.body, request.send_number);
    case PollRequest::Kind::Poll:
      co_return co_await session->poll(request.next, request.wait);
    case PollRequest::Kind::Close:
      co_return session->close();
  }
  co_return poll_error(400, "unknown operation");
}

}  // namespace portico::plugins
