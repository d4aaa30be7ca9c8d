#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace docflow::auth {

/// argon2id through libsodium with OWASP's minimum (m = 19 MiB, t = 2, p = 1).
/// Both calls take tens of milliseconds and ~19 MiB: run them on the blocking
/// pool, under a hash_slots ticket.
class password_hasher {
public:
  /// Initialises libsodium and prepares the dummy hash. Throws std::runtime_error.
  password_hasher();

  /// The encoded hash ($argon2id$v=19$m=...) of `password`. Throws std::bad_alloc
  /// when the memory for hashing cannot be had.
  std::string hash(std::string_view password) const;

  /// True when `password` matches `encoded`. With no stored hash (unknown
  /// user) it verifies against a dummy, so both failures take as long.
  bool verify(const std::optional<std::string>& encoded, std::string_view password) const;

private:
  std::string dummy_;
};

/// A bound on concurrent hashes, so a burst of logins answers 503 instead of
/// exhausting memory. try_acquire never blocks.
class hash_slots {
public:
  explicit hash_slots(unsigned capacity) : capacity_(capacity) {}

  class ticket {
  public:
    explicit ticket(hash_slots& s) : s_(&s) {}
    ticket(ticket&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    ticket& operator=(ticket&&) = delete;
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket() {
      if (s_) {
        s_->in_use_.fetch_sub(1);
      }
    }

  private:
    hash_slots* s_;
  };

  /// A ticket when a slot is free; nullopt when all are taken.
  std::optional<ticket> try_acquire();

private:
  unsigned capacity_;
  std::atomic<unsigned> in_use_{0};
};

}  // namespace docflow::auth
