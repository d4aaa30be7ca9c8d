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

  /// Runs `f(args...)` on the pool and resumes the awaiting coroutine on its
  /// own executor with the result; an exception thrown by `f` is rethrown
  /// there.
  ///
  /// GCC 12 destroys a temporary built in the same expression as a co_await
  /// twice: a lambda that owned a std::string crashed in free(). So `f` must
  /// be trivially copyable, which a lambda is when it captures by reference
  /// (or pointers and numbers) only, and what it needs by value is passed as
  /// `args`: run() owns those in its own frame, and hands them to `f` by
  /// reference.
  template <class F, class... Args>
  requires std::is_trivially_copyable_v<F> && std::is_invocable_v<F&, Args&...>
      boost::asio::awaitable<std::invoke_result_t<F&, Args&...>> run(F f, Args... args) {
    using result_t = std::invoke_result_t<F&, Args&...>;
    using slot = std::conditional_t<std::is_void_v<result_t>, bool, std::optional<result_t>>;
    auto initiate = [this, f, &args...](auto completion) mutable {
      boost::asio::post(pool_, [f, &args..., completion = std::move(completion)]() mutable {
        std::exception_ptr error;
        slot value{};
        try {
          if constexpr (std::is_void_v<result_t>) {
            f(args...);
          } else {
            value.emplace(f(args...));
          }
        } catch (...) {
          error = std::current_exception();
        }
        auto ex = boost::asio::get_associated_executor(completion);
        // `error` moves too: this thread keeps no reference, so the exception
        // is freed where it is caught, not here after the catch has read it
        // (which only libstdc++'s uninstrumented reference count orders: a
        // ThreadSanitizer report).
        boost::asio::post(ex, [completion = std::move(completion), error = std::move(error),
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
