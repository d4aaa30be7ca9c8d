#pragma once

// Our own small layer over libpq's C API: a connection, a result, parameters.
// libpq's header stays out of this one (docflow_store links it PRIVATE), so
// tests and callers can use these types without it.

#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/clock.hpp"
#include "store/database.hpp"

struct pg_conn;
struct pg_result;

namespace docflow::store::postgres::pq {

/// A command the server refused, or a connection that failed. Decided on by
/// SQLSTATE, never by message text; the message is for the log.
class error : public store_error {
public:
  error(const std::string& message, std::string sqlstate, std::string constraint = {})
      : store_error(message), sqlstate_(std::move(sqlstate)), constraint_(std::move(constraint)) {}

  /// Five characters, or empty when libpq failed before the server answered
  /// (the connection is gone).
  const std::string& sqlstate() const noexcept { return sqlstate_; }
  /// The constraint a violation names (23505 and friends), if any.
  const std::string& constraint() const noexcept { return constraint_; }

  bool unique_violation() const noexcept { return sqlstate_ == "23505"; }
  /// 40001 serialization_failure or 40P01 deadlock_detected: the transaction
  /// did nothing and may simply run again.
  bool retryable() const noexcept { return sqlstate_ == "40001" || sqlstate_ == "40P01"; }
  /// The connection cannot be used again: no SQLSTATE at all (libpq lost
  /// it), class 08, or the server shutting down (57P01-57P03).
  bool connection_lost() const noexcept;
  /// Worth trying again later rather than a fault: a lost connection, a
  /// statement or lock timeout (57014, 55P03), or a server that takes no
  /// more connections (53300) or is starting (57P03).
  bool transient() const noexcept;

private:
  std::string sqlstate_;
  std::string constraint_;
};

/// The rows of one command, every column in binary format (exact times and
/// integers, no DateStyle to depend on). Row and column indexes are 0-based.
class result {
public:
  explicit result(pg_result* r) noexcept : r_(r) {}
  ~result();
  result(result&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  result& operator=(result&& o) noexcept;
  result(const result&) = delete;
  result& operator=(const result&) = delete;

  int rows() const noexcept;
  bool empty() const noexcept { return rows() == 0; }
  /// Rows an INSERT, UPDATE or DELETE touched.
  std::uint64_t affected() const noexcept;

  bool is_null(int row, int col) const;
  /// text, varchar, bytea (raw bytes), jsonb (its text) and uuid (canonical lowercase form).
  std::string text(int row, int col) const;
  /// int2, int4, int8 and bool.
  std::int64_t integer(int row, int col) const;
  bool boolean(int row, int col) const { return integer(row, col) != 0; }
  /// timestamptz.
  core::time_point time(int row, int col) const;
  std::optional<std::string> optional_text(int row, int col) const;
  std::optional<core::time_point> optional_time(int row, int col) const;

private:
  unsigned type(int col) const;
  std::string_view bytes(int row, int col) const;

  pg_result* r_;
};

/// A parameter: text format (nullopt is NULL), or raw bytes for a bytea.
struct param {
  std::optional<std::string> text;
  std::string_view binary;  ///< not copied: the argument outlives the call
  bool is_binary = false;

  static param null() { return {}; }
  static param of(std::string v) {
    param p;
    p.text = std::move(v);
    return p;
  }
};

/// A bytea parameter, sent as it is (binary format): text format would
/// double a text of megabytes into hex. The SQL must say `$n::bytea`.
struct bytes {
  std::string_view data;
};

inline param to_param(std::string_view v) { return param::of(std::string(v)); }
inline param to_param(const std::string& v) { return param::of(v); }
inline param to_param(const char* v) { return param::of(v); }
inline param to_param(bool v) { return param::of(v ? "true" : "false"); }
inline param to_param(bytes b) {
  param p;
  p.binary = b.data;
  p.is_binary = true;
  return p;
}
template <std::integral T>
requires(!std::same_as<T, bool>) param to_param(T v) { return param::of(std::to_string(v)); }
/// Times are stored to the millisecond, as by the SQLite store: listing
/// cursors carry milliseconds, and a stored time must compare equal to one
/// read back through a cursor.
param to_param(core::time_point t);
inline param to_param(std::nullopt_t) { return param::null(); }
template <class T>
param to_param(const std::optional<T>& v) {
  return v ? to_param(*v) : param::null();
}

/// What every connection is set to on opening.
struct session_settings {
  /// Wins over a password in the URL; empty: the URL's (or ~/.pgpass).
  std::string password;
  std::chrono::seconds connect_timeout{5};
  std::chrono::milliseconds statement_timeout{30'000};
  std::chrono::milliseconds lock_timeout{10'000};
  std::chrono::milliseconds idle_in_transaction_timeout{60'000};
};

/// One connection to the server. Used by one thread at a time. Statements
/// are prepared on first use and kept by SQL text: prepared statements
/// belong to a connection, so a new connection prepares them again.
class connection {
public:
  /// `url`: anything libpq's PQconnectdb accepts (postgresql:// URL or
  /// key=value pairs); what it sets wins over our defaults (keepalives,
  /// timeouts, application_name). Throws error.
  connection(const std::string& url, const session_settings& settings);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Runs `sql` with `$1, $2, ...` bound to `args`. Throws error.
  template <class... A>
  result exec(std::string_view sql, const A&... args) {
    std::vector<param> p;
    p.reserve(sizeof...(A));
    (p.push_back(to_param(args)), ...);
    return run(sql, p);
  }
  result run(std::string_view sql, const std::vector<param>& params);

  /// Runs one or more statements without parameters (the simple protocol:
  /// migrations, SET). Throws error.
  void script(std::string_view sql);

  /// False when the connection is known to be broken: libpq says so, or the
  /// server has closed it or sent something unasked while it was idle (the
  /// notice a server sends before shutting down). Cheap: one poll(2).
  bool usable() noexcept;
  /// True outside a transaction with nothing in flight.
  bool idle() const noexcept;
  /// Marks the connection broken, so that its pool drops it.
  void poison() noexcept { poisoned_ = true; }

  /// A NOTIFY this connection LISTENs for.
  struct notification {
    std::string channel;
    std::string payload;
  };
  /// The socket to wait on (readable: something came) for notifications.
  int socket() const noexcept;
  /// Reads whatever the server has sent, without waiting, and returns the
  /// notifications received so far, oldest first. Throws error when the
  /// connection is gone (the server closed it, or the network failed).
  std::vector<notification> notifications();

  pg_conn* handle() const noexcept { return c_; }

private:
  [[noreturn]] void fail(pg_result* r, std::string_view what);

  pg_conn* c_ = nullptr;
  bool poisoned_ = false;
  std::unordered_map<std::string, std::string> prepared_;  ///< SQL -> statement name
};

/// BEGIN on construction; ROLLBACK on destruction unless committed.
class transaction {
public:
  explicit transaction(connection& c);
  ~transaction();
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;
  void commit();
  /// Ends the transaction without its changes (a fenced write found its
  /// fence moved).
  void rollback();
  bool done() const noexcept { return done_; }

private:
  connection& c_;
  bool done_ = false;
};

}  // namespace docflow::store::postgres::pq
