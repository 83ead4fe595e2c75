#include "plugins/tlv_bridge/long_polling.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <charconv>

#include "core/worker.hpp"
#include "plugins/context.hpp"
#include "plugins/tlv_bridge/poll_session.hpp"
#include "plugins/tlv_bridge/websocket_session.hpp"

namespace portico::plugins {
namespace {

// How long a request waits for another worker beyond the operation's own time (a send waits for
// the backend to take its bytes, bounded by the upstream's send timeout).
constexpr double kHandoverMarginSeconds = 5;

// A request handed to another worker and the answer coming back. Holds no Asio object: it may be
// destroyed on either thread.
struct Handover {
  PollRequest request;
  PollAnswer answer;
  bool answered = false;
  Timer* waiting = nullptr;  // the requesting coroutine's timer; touched on its worker only
};

// Serves `request` on `owner` (another worker) and resumes here when it is answered.
Task<PollAnswer> hand_over(Worker& here, Worker& owner, PollRequest request, double budget) {
  tlv_bridge_counters().poll_handovers.fetch_add(1, std::memory_order_relaxed);
  auto handover = std::make_shared<Handover>();
  handover->request = std::move(request);
  Timer timer(here.executor());
  timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(budget * 1000)));
  handover->waiting = &timer;
  owner.post([handover, &owner, &here]() mutable {
    asio::co_spawn(
        owner.executor(),
        [](std::shared_ptr<Handover> h, Worker& back) -> Task<> {
          PollAnswer answer = co_await serve_poll_request(h->request);
          back.post([h, answer = std::move(answer)]() mutable {
            h->answer = std::move(answer);
            h->answered = true;
            if (h->waiting) h->waiting->cancel();
          });
        }(std::move(handover), here),
        asio::detached);
  });
  co_await timer.async_wait(await_ec);
  handover->waiting = nullptr;
  if (!handover->answered)
    co_return poll_error(504,
                         "the worker holding the session did not answer in time (a send may "
                         "still go through: repeat it with the same send number)");
  co_return std::move(handover->answer);
}

bool parse_number(std::string_view text, uint64_t& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool parse_seconds(std::string_view text, double& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && out >= 0;
}

// The operation the request asks for, or an error answer.
std::optional<PollAnswer> read_request(const TlvBridgeConfig& config, const Context& ctx,
                                       std::string_view session, PollRequest& request) {
  request.session = std::string(session);
  request.route = config.route_key;
  const std::string_view method = ctx.req->method;
  if (method == "POST") {
    request.kind = PollRequest::Kind::Send;
    if (std::string_view number = ctx.var("arg_send"); !number.empty()) {
      uint64_t n = 0;
      if (!parse_number(number, n)) return poll_error(400, "send must be a number");
      request.send_number = n;
    }
  } else if (method == "DELETE") {
    request.kind = PollRequest::Kind::Close;
  } else if (method == "GET") {
    request.kind = PollRequest::Kind::Poll;
    request.wait = config.poll_wait;
    if (std::string_view next = ctx.var("arg_next"); !next.empty()) {
      uint64_t n = 0;
      if (!parse_number(next, n)) return poll_error(400, "next must be a message number");
      request.next = n;
    }
    if (std::string_view wait = ctx.var("arg_wait"); !wait.empty()) {
      double seconds = 0;
      if (!parse_seconds(wait, seconds)) return poll_error(400, "wait must be seconds (>= 0)");
      request.wait = std::min(seconds, config.poll_wait);
    }
  } else {
    return poll_error(405, "a polling session takes POST (send), GET (poll) and DELETE (close)");
  }
  return std::nullopt;
}

}  // namespace

Task<> run_long_polling(std::shared_ptr<const TlvBridgeConfig> config, Takeover& io, Context& ctx) {
  const TlvBridgeConfig& c = *config;
  std::string_view session = ctx.header(kSessionHeader);
  PollAnswer answer;
  if (session == "new") {
    if (ctx.req->method != "POST")
      answer = poll_error(405, "a polling session is opened with a POST");
    else
      answer = co_await open_poll_session(std::move(config), io, ctx);
  } else if (int owner_index = poll_session_worker(session); owner_index < 0) {
    answer = poll_error(404, "no such session (it ended, expired or belongs to another node)");
  } else {
    PollRequest request;
    if (std::optional<PollAnswer> refused = read_request(c, ctx, session, request)) {
      answer = std::move(*refused);
    } else {
      if (request.kind == PollRequest::Kind::Send) request.body = std::string(io.body);
      Worker* owner = io.worker.sibling(owner_index);
      if (!owner) {
        answer = poll_error(404, "no such session (it ended, expired or belongs to another node)");
      } else if (owner == &io.worker) {
        answer = co_await serve_poll_request(request);
      } else {
        double budget = request.wait + io.upstream.spec().send_timeout + kHandoverMarginSeconds;
        answer = co_await hand_over(io.worker, *owner, std::move(request), budget);
      }
    }
  }
  ctx.response_headers.push_back({HeaderEdit::Op::Set, "Cache-Control", "no-store"});
  ctx.respond(answer.status, std::move(answer.body));
}

}  // namespace portico::plugins
