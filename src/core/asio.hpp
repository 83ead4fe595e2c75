// Asio vocabulary for the whole server: the concrete per-worker executor (no any_io_executor
// copies on the hot path, see ARCHITECTURE.md) and coroutine helpers that return errors as values.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <tuple>

namespace portico {

namespace asio = boost::asio;
using boost::system::error_code;

using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<asio::ip::tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<asio::ip::tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;
using Endpoint = asio::ip::tcp::endpoint;

template <class T = void>
using Task = asio::awaitable<T, Executor>;

// `co_await op(..., use_task)` throws on error; `await_ec` yields a tuple (error_code, ...)
// instead.
inline constexpr asio::use_awaitable_t<Executor> use_task{};
inline constexpr auto await_ec = asio::as_tuple(asio::use_awaitable_t<Executor>{});

// What a read or write completes with, through await_ec.
using IoResult = std::tuple<error_code, size_t>;

}  // namespace portico
