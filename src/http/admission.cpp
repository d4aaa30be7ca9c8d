#include "http/admission.hpp"

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace docflow::http {

namespace net = boost::asio;

struct admission_gate::waiter {
  explicit waiter(const net::any_io_executor& ex) : timer(ex) {}
  net::steady_timer timer;  // expires at the end of the patience; cancelled by a grant
  bool granted = false;     // guarded by the gate's mutex
};

admission_gate::admission_gate(std::size_t slots, std::chrono::milliseconds patience)
    : free_(slots), patience_(patience) {}

admission_gate::~admission_gate() = default;

net::awaitable<admission_gate::pass> admission_gate::enter() {
  std::shared_ptr<waiter> w;
  {
    const std::lock_guard lock(mutex_);
    if (free_ > 0) {  // leave() hands a slot straight to a waiter, so none is waiting
      --free_;
      co_return pass(this);
    }
    w = std::make_shared<waiter>(co_await net::this_coro::executor);
    w->timer.expires_after(patience_);
    queue_.push_back(w);
  }
  // A grant cancels the timer through the waiter's own executor, so it
  // cannot run before this wait has started.
  co_await w->timer.async_wait(net::as_tuple(net::use_awaitable));
  const std::lock_guard lock(mutex_);
  if (w->granted) co_return pass(this);
  std::erase(queue_, w);
  co_return pass();
}

void admission_gate::leave() {
  const std::lock_guard lock(mutex_);
  if (queue_.empty()) {
    ++free_;
    return;
  }
  auto next = std::move(queue_.front());
  queue_.pop_front();
  next->granted = true;  // the slot passes straight to the next in line
  net::post(next->timer.get_executor(), [next] { next->timer.cancel(); });
}

std::size_t admission_gate::waiting() const {
  const std::lock_guard lock(mutex_);
  return queue_.size();
}

}  // namespace docflow::http
