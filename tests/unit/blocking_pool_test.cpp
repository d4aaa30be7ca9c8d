#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "http/blocking_pool.hpp"

using docflow::http::blocking_pool;

namespace {

template <class F, class... Args>
concept runnable = requires(blocking_pool& pool, F f, Args... args) {
  pool.run(f, args...);
};

// Runs `body` as a coroutine on `io` until it finishes. The caller's `io`
// outlives its pool: when run() returns, a pool thread may still be inside
// its post() of the last completion (Asio signals the io_context after
// unlocking it), so the pool must be joined before the io_context goes.
template <class Body>
void run_coroutine(boost::asio::io_context& io, Body body) {
  std::exception_ptr error;
  boost::asio::co_spawn(io, std::move(body), [&error](std::exception_ptr e) { error = e; });
  io.run();
  if (error) std::rethrow_exception(error);
}

}  // namespace

// The GCC 12 rule, as the type enforces it: a callable that owns a value
// does not compile; a value goes as an argument instead.
static_assert(runnable<decltype([](int n) { return n; }), int>);
static_assert(!runnable<decltype([s = std::string("owned")] { return s.size(); })>);
static_assert(!runnable<decltype([p = std::make_shared<int>(1)] { return *p; })>);

TEST(blocking_pool, passes_values_as_arguments_and_returns_the_result) {
  boost::asio::io_context io;
  blocking_pool pool(2);
  std::size_t length = 0;
  std::string copied;
  run_coroutine(io, [&]() -> boost::asio::awaitable<void> {
    // Long enough to live on the heap: a second destruction would be a double free.
    const std::string name(1000, 'x');
    length = co_await pool.run([](const std::string& s) { return s.size(); }, std::string(2000, 'y'));
    copied = co_await pool.run([](const std::string& s) { return s + "!"; }, name);
  });
  EXPECT_EQ(length, 2000U);
  EXPECT_EQ(copied, std::string(1000, 'x') + "!");
}

TEST(blocking_pool, rethrows_in_the_awaiting_coroutine) {
  boost::asio::io_context io;
  blocking_pool pool(1);
  bool caught = false;
  run_coroutine(io, [&]() -> boost::asio::awaitable<void> {
    try {
      co_await pool.run([] { throw std::runtime_error("boom"); });
    } catch (const std::runtime_error& e) {
      caught = std::string(e.what()) == "boom";
    }
  });
  EXPECT_TRUE(caught);
}
