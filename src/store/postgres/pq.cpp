#include "store/postgres/pq.hpp"

#include <poll.h>

#include <libpq-fe.h>

#include <algorithm>
#include <array>

namespace docflow::store::postgres::pq {

namespace {

// Type OIDs (catalog/pg_type.h, stable across versions; the server headers
// are not part of libpq-dev).
constexpr Oid bool_oid = 16;
constexpr Oid int8_oid = 20;
constexpr Oid int2_oid = 21;
constexpr Oid int4_oid = 23;
constexpr Oid timestamp_oid = 1114;
constexpr Oid timestamptz_oid = 1184;
constexpr Oid uuid_oid = 2950;
constexpr Oid jsonb_oid = 3802;

// PostgreSQL counts time from 2000-01-01 UTC, in microseconds.
constexpr std::chrono::seconds pg_epoch{946'684'800};

std::int64_t big_endian(std::string_view b) {
  std::uint64_t v = 0;
  for (const char c : b) v = (v << 8) | static_cast<unsigned char>(c);
  // Sign-extend what is narrower than 64 bits.
  const auto bits = 8 * b.size();
  if (bits > 0 && bits < 64 && (v >> (bits - 1)) & 1U) v |= ~std::uint64_t{0} << bits;
  return static_cast<std::int64_t>(v);
}

std::string trimmed(const char* message) {
  std::string m = message ? message : "";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

void ignore_notice(void*, const char*) {}

std::string millis(std::chrono::milliseconds d) { return std::to_string(d.count()); }

}  // namespace

bool error::connection_lost() const noexcept {
  return sqlstate_.empty() || sqlstate_.starts_with("08") || sqlstate_ == "57P01" || sqlstate_ == "57P02" ||
         sqlstate_ == "57P03";
}

bool error::transient() const noexcept {
  return connection_lost() || sqlstate_ == "57014" || sqlstate_ == "55P03" || sqlstate_ == "53300";
}

param to_param(core::time_point t) { return param::of(core::format_rfc3339(t)); }

// --- result

result::~result() { PQclear(r_); }

result& result::operator=(result&& o) noexcept {
  if (this != &o) {
    PQclear(r_);
    r_ = std::exchange(o.r_, nullptr);
  }
  return *this;
}

int result::rows() const noexcept { return r_ ? PQntuples(r_) : 0; }

std::uint64_t result::affected() const noexcept {
  const char* n = r_ ? PQcmdTuples(r_) : "";
  return *n ? std::stoull(n) : 0;
}

unsigned result::type(int col) const { return PQftype(r_, col); }

std::string_view result::bytes(int row, int col) const {
  if (row < 0 || row >= rows() || col < 0 || col >= PQnfields(r_)) {
    throw store_error("postgres: no row " + std::to_string(row) + " column " + std::to_string(col));
  }
  return {PQgetvalue(r_, row, col), static_cast<std::size_t>(PQgetlength(r_, row, col))};
}

bool result::is_null(int row, int col) const {
  bytes(row, col);  // bounds
  return PQgetisnull(r_, row, col) != 0;
}

std::string result::text(int row, int col) const {
  const auto b = bytes(row, col);
  switch (type(col)) {
    case uuid_oid: {
      if (b.size() != 16) throw store_error("postgres: malformed uuid");
      static constexpr char hex[] = "0123456789abcdef";
      std::string out;
      out.reserve(36);
      for (std::size_t i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
        const auto v = static_cast<unsigned char>(b[i]);
        out.push_back(hex[v >> 4]);
        out.push_back(hex[v & 15]);
      }
      return out;
    }
    case jsonb_oid:  // a version byte (1), then the text
      return b.empty() ? std::string() : std::string(b.substr(1));
    case bool_oid:
    case int2_oid:
    case int4_oid:
    case int8_oid:
    case timestamp_oid:
    case timestamptz_oid: throw store_error("postgres: column " + std::to_string(col) + " is not text");
    default: return std::string(b);  // text, varchar, bytea: the bytes themselves
  }
}

std::int64_t result::integer(int row, int col) const {
  const auto b = bytes(row, col);
  const auto t = type(col);
  const bool fits = (t == int8_oid && b.size() == 8) || (t == int4_oid && b.size() == 4) ||
                    (t == int2_oid && b.size() == 2) || (t == bool_oid && b.size() == 1);
  if (!fits) throw store_error("postgres: column " + std::to_string(col) + " is not an integer");
  if (t == bool_oid) return b[0] != 0;
  return big_endian(b);
}

core::time_point result::time(int row, int col) const {
  const auto b = bytes(row, col);
  if ((type(col) != timestamptz_oid && type(col) != timestamp_oid) || b.size() != 8) {
    throw store_error("postgres: column " + std::to_string(col) + " is not a time");
  }
  return core::time_point{pg_epoch + std::chrono::microseconds{big_endian(b)}};
}

std::optional<std::string> result::optional_text(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return text(row, col);
}

std::optional<core::time_point> result::optional_time(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return time(row, col);
}

// --- connection

connection::connection(const std::string& url, const session_settings& s) {
  // Ours first, then the URL expanded in place of dbname: libpq keeps the
  // last value of a repeated keyword, so whatever the URL sets wins.
  const std::string connect_timeout = std::to_string(std::max<std::int64_t>(2, s.connect_timeout.count()));
  // The password, when given apart, comes after the URL, so that it wins.
  const std::array<const char*, 11> keys{"connect_timeout",  "keepalives",
                                         "keepalives_idle",  "keepalives_interval",
                                         "keepalives_count", "tcp_user_timeout",
                                         "application_name", "dbname",
                                         "password",         nullptr};
  // A dead server or network is noticed within about 10 + 3 x 5 s while a
  // call waits for an answer, and unacknowledged data gives up after 20 s:
  // a call never hangs on a server that is gone.
  // libpq skips a keyword whose value is empty: no password, the URL's.
  const std::array<const char*, 11> values{
      connect_timeout.c_str(), "1",    "10", "5", "3", "20000", "docflow", url.c_str(),
      s.password.c_str(),      nullptr};
  c_ = PQconnectdbParams(keys.data(), values.data(), 1);
  if (!c_ || PQstatus(c_) != CONNECTION_OK) {
    const std::string message = c_ ? trimmed(PQerrorMessage(c_)) : "out of memory";
    PQfinish(c_);
    c_ = nullptr;
    throw error("postgres connect: " + message, {});
  }
  PQsetNoticeProcessor(c_, ignore_notice, nullptr);
  try {
    // Bounds on what one call may hold: a statement, a lock wait, and a
    // transaction left open by a client that stopped talking (its locks
    // would stall everyone else).
    script("SET statement_timeout = " + millis(s.statement_timeout) +
           "; SET lock_timeout = " + millis(s.lock_timeout) +
           "; SET idle_in_transaction_session_timeout = " + millis(s.idle_in_transaction_timeout));
  } catch (...) {
    PQfinish(c_);
    c_ = nullptr;
    throw;
  }
}

connection::~connection() { PQfinish(c_); }

void connection::fail(pg_result* r, std::string_view what) {
  std::string sqlstate;
  std::string constraint;
  std::string message;
  if (r) {
    if (const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE)) sqlstate = s;
    if (const char* s = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME)) constraint = s;
    message = trimmed(PQresultErrorMessage(r));
    PQclear(r);
  }
  if (message.empty()) message = trimmed(PQerrorMessage(c_));
  error e("postgres " + std::string(what) + ": " + message, sqlstate, constraint);
  if (e.connection_lost() || PQstatus(c_) != CONNECTION_OK) poisoned_ = true;
  throw e;
}

result connection::run(std::string_view sql, const std::vector<param>& params) {
  auto it = prepared_.find(std::string(sql));
  if (it == prepared_.end()) {
    const std::string name = "docflow_" + std::to_string(prepared_.size() + 1);
    const std::string text(sql);
    PGresult* r = PQprepare(c_, name.c_str(), text.c_str(), 0, nullptr);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) fail(r, "prepare");
    PQclear(r);
    it = prepared_.emplace(text, name).first;
  }
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size());
  std::vector<int> formats(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i].is_binary) {
      values[i] = params[i].binary.data();
      lengths[i] = static_cast<int>(params[i].binary.size());
      formats[i] = 1;
    } else {
      values[i] = params[i].text ? params[i].text->c_str() : nullptr;
    }
  }
  PGresult* r = PQexecPrepared(c_, it->second.c_str(), static_cast<int>(params.size()), values.data(),
                               lengths.data(), formats.data(), 1);
  const auto status = PQresultStatus(r);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) fail(r, "query");
  return result(r);
}

void connection::script(std::string_view sql) {
  const std::string text(sql);
  PGresult* r = PQexec(c_, text.c_str());
  const auto status = PQresultStatus(r);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) fail(r, "exec");
  PQclear(r);
}

bool connection::usable() noexcept {
  if (poisoned_ || !c_ || PQstatus(c_) != CONNECTION_OK || !idle()) return false;
  // Nothing is owed to an idle connection: anything readable is the server
  // closing it (a restart, an idle timeout) or telling us why it will.
  pollfd p{PQsocket(c_), POLLIN, 0};
  const int n = ::poll(&p, 1, 0);
  return n == 0;
}

int connection::socket() const noexcept { return PQsocket(c_); }

std::vector<connection::notification> connection::notifications() {
  if (PQconsumeInput(c_) == 0 || PQstatus(c_) != CONNECTION_OK) fail(nullptr, "listen");
  std::vector<notification> out;
  while (PGnotify* n = PQnotifies(c_)) {
    out.push_back({n->relname, n->extra});
    PQfreemem(n);
  }
  return out;
}

bool connection::idle() const noexcept { return c_ && PQtransactionStatus(c_) == PQTRANS_IDLE; }

// --- transaction

transaction::transaction(connection& c) : c_(c) { c_.exec("BEGIN"); }

transaction::~transaction() {
  if (done_) return;
  try {
    c_.exec("ROLLBACK");
  } catch (...) {
    c_.poison();  // the connection's state is unknown: its pool drops it
  }
}

void transaction::commit() {
  done_ = true;  // a failed COMMIT ends the transaction too
  c_.exec("COMMIT");
}

void transaction::rollback() {
  done_ = true;
  c_.exec("ROLLBACK");
}

}  // namespace docflow::store::postgres::pq
