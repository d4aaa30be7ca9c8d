#pragma once

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace docflow::http {

/// A fixed set of threads for work that must not run on an I/O thread:
/// database round trips, fsync, password hashing, parsing documents.
class blocking_pool {
public:
  explicit blocking_pool(unsigned threads) : pool_(threads) {}
  ~blocking_pool() { pool_.join(); }
  blocking_pool(const blocking_pool&) = delete;
  blocking_pool& operator=(const blocking_pool&) = delete;

  /// Runs `f()` on the pool and resumes the awaiting coroutine on its own
  /// executor with the result; an exception thrown by `f` is rethrown there.
  ///
  /// House rule (GCC 12): `f` captures by reference only, and a co_await of
  /// run() is never part of a condition. GCC 12 destroys a temporary lambda
  /// that owns a std::string or path twice when it is built in the same
  /// expression as the co_await (seen here as a crash in free()).
  template <class F>
  boost::asio::awaitable<std::invoke_result_t<F>> run(F f) {
    using result_t = std::invoke_result_t<F>;
    using slot = std::conditional_t<std::is_void_v<result_t>, bool, std::optional<result_t>>;
    auto initiate = [this, f = std::move(f)](auto completion) mutable {
      boost::asio::post(pool_, [f = std::move(f), completion = std::move(completion)]() mutable {
        std::exception_ptr error;
        slot value{};
        try {
          if constexpr (std::is_void_v<result_t>) {
            f();
          } else {
            value.emplace(f());
          }
        } catch (...) {
          error = std::current_exception();
        }
        auto ex = boost::asio::get_associated_executor(completion);
        boost::asio::post(ex, [completion = std::move(completion), error,
                               value = std::move(value)]() mutable { completion(error, std::move(value)); });
      });
    };
    auto value = co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&,
                                                      void(std::exception_ptr, slot)>(
        std::move(initiate), boost::asio::use_awaitable);
    if constexpr (!std::is_void_v<result_t>) {
      co_return std::move(*value);
    }
  }

  /// Stops taking work and waits for running work to finish.
  void join() { pool_.join(); }

private:
  boost::asio::thread_pool pool_;
};

}  // namespace docflow::http
