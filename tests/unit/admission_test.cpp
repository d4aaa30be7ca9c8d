// http::admission_gate: at most N holders, the rest in arrival order, and a
// patience after which a waiter goes ahead without a slot.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "http/admission.hpp"

using namespace docflow;
using namespace std::chrono_literals;
namespace net = boost::asio;

namespace {

constexpr auto forever = std::chrono::hours(1);

// Enters the gate and keeps the pass in `out` (so the test decides when it
// is released); `order` records who got through, in order.
net::awaitable<void> enter_into(http::admission_gate& gate, std::optional<http::admission_gate::pass>& out,
                                std::vector<int>& order, int who) {
  out.emplace(co_await gate.enter());
  order.push_back(who);
}

// Runs the context until `done()` holds; bounded so a broken gate fails the
// test instead of hanging it.
template <class Done>
bool run_until(net::io_context& ioc, Done done) {
  for (int i = 0; i < 100'000 && !done(); ++i) {
    ioc.run_for(1ms);
    ioc.restart();
  }
  return done();
}

TEST(admission_gate, lets_n_through_and_queues_the_rest_in_arrival_order) {
  net::io_context ioc;
  http::admission_gate gate(2, forever);
  std::vector<std::optional<http::admission_gate::pass>> passes(5);
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) {
    net::co_spawn(ioc, enter_into(gate, passes[i], order, i), net::detached);
    // Each one settles (through or queued) before the next arrives.
    ASSERT_TRUE(
        run_until(ioc, [&] { return order.size() + gate.waiting() == static_cast<std::size_t>(i) + 1; }));
  }
  ASSERT_EQ(order, (std::vector<int>{0, 1}));
  EXPECT_EQ(gate.waiting(), 3u);

  passes[1]->release();  // the slot goes to the first in line
  ASSERT_TRUE(run_until(ioc, [&] { return order.size() == 3; }));
  passes[0].reset();
  ASSERT_TRUE(run_until(ioc, [&] { return order.size() == 4; }));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_TRUE(passes[2]->holds_slot());
  EXPECT_TRUE(passes[3]->holds_slot());
  EXPECT_EQ(gate.waiting(), 1u);
  passes[2].reset();
  ASSERT_TRUE(run_until(ioc, [&] { return order.size() == 5; }));
  EXPECT_TRUE(passes[4]->holds_slot());
}

TEST(admission_gate, a_waiter_past_its_patience_goes_ahead_without_a_slot) {
  net::io_context ioc;
  http::admission_gate gate(1, 20ms);
  std::optional<http::admission_gate::pass> holder, late;
  std::vector<int> order;
  net::co_spawn(ioc, enter_into(gate, holder, order, 0), net::detached);
  net::co_spawn(ioc, enter_into(gate, late, order, 1), net::detached);
  ASSERT_TRUE(run_until(ioc, [&] { return order.size() == 2; }));  // the holder never leaves
  EXPECT_TRUE(holder->holds_slot());
  EXPECT_FALSE(late->holds_slot());
  EXPECT_EQ(gate.waiting(), 0u);
  late.reset();  // no slot: gives nothing back

  // The one slot is still the holder's; once freed, it serves the next.
  std::optional<http::admission_gate::pass> next;
  holder.reset();
  net::co_spawn(ioc, enter_into(gate, next, order, 2), net::detached);
  ASSERT_TRUE(run_until(ioc, [&] { return order.size() == 3; }));
  EXPECT_TRUE(next->holds_slot());
  std::optional<http::admission_gate::pass> blocked;
  net::co_spawn(ioc, enter_into(gate, blocked, order, 3), net::detached);
  run_until(ioc, [&] { return gate.waiting() == 1; });
  EXPECT_EQ(gate.waiting(), 1u) << "a slot was given out twice";
  ASSERT_TRUE(run_until(ioc, [&] { return order.size() == 4; }));
  EXPECT_FALSE(blocked->holds_slot());
}

TEST(admission_gate, never_more_holders_than_slots_across_threads) {
  net::io_context ioc;
  constexpr std::size_t slots = 3;
  http::admission_gate gate(slots, forever);
  std::atomic<int> inside{0}, most{0}, finished{0};
  constexpr int tasks = 200;
  for (int i = 0; i < tasks; ++i) {
    net::co_spawn(
        net::make_strand(ioc),
        [&]() -> net::awaitable<void> {
          auto pass = co_await gate.enter();
          const int now = ++inside;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          net::steady_timer hold(co_await net::this_coro::executor, 100us);
          co_await hold.async_wait(net::use_awaitable);
          --inside;
          pass.release();
          ++finished;
        },
        net::detached);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { ioc.run(); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(finished.load(), tasks);
  EXPECT_EQ(most.load(), static_cast<int>(slots));
  EXPECT_EQ(gate.waiting(), 0u);
}

}  // namespace
