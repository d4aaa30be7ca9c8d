// What is PostgreSQL's own: the libpq layer, the pool against a server that
// goes away and comes back, the advisory lock around migrations, and the
// change feed under interleaved commits. What every engine does alike is in
// store_contract_test.cpp.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/ids.hpp"
#include "pg_server.hpp"
#include "samples.hpp"
#include "store/postgres/migrations.hpp"
#include "store/postgres/pool.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/postgres/pq.hpp"

using namespace docflow;
using namespace std::chrono_literals;
namespace pq = store::postgres::pq;
using store::store_error;

namespace {

const core::time_point t0{std::chrono::seconds{1'800'000'000}};

class postgres_test : public ::testing::Test {
protected:
  void SetUp() override { url_ = test::shared_pg_server().create_database(); }

  std::string url_;
};

using steady = std::chrono::steady_clock;

double seconds_since(steady::time_point start) {
  return std::chrono::duration<double>(steady::now() - start).count();
}

}  // namespace

// -----------------------------------------------------------------------------------------------------------
// pq: connection, result, parameters

TEST_F(postgres_test, values_round_trip_in_binary_results) {
  pq::connection c(url_, {});
  const std::string nul_bytes("a\0b\xff", 4);
  const auto id = core::new_uuid_v7();
  const auto r = c.exec(
      "SELECT $1::text, $2::int8, $3::int4, $4::bool, $5::timestamptz, $6::uuid, $7::bytea, $8::text, "
      "$9::jsonb",
      "h\xC3\xA9llo", std::int64_t{-9'000'000'000}, 42, true, t0 + 1234ms, id, pq::bytes{nul_bytes},
      std::nullopt, R"({"b": 1, "a": [true]})");
  ASSERT_EQ(r.rows(), 1);
  EXPECT_EQ(r.text(0, 0), "h\xC3\xA9llo");
  EXPECT_EQ(r.integer(0, 1), -9'000'000'000);
  EXPECT_EQ(r.integer(0, 2), 42);
  EXPECT_TRUE(r.boolean(0, 3));
  EXPECT_EQ(r.time(0, 4), t0 + 1234ms);
  EXPECT_EQ(r.text(0, 5), id);
  EXPECT_EQ(r.text(0, 6), nul_bytes);
  EXPECT_TRUE(r.is_null(0, 7));
  EXPECT_FALSE(r.optional_text(0, 7));
  EXPECT_EQ(r.text(0, 8), R"({"a": [true], "b": 1})");
  EXPECT_THROW(r.integer(0, 0), store_error) << "a text column is no integer";
  EXPECT_THROW(r.time(0, 1), store_error);
  EXPECT_THROW(r.text(1, 0), store_error) << "no such row";
}

TEST_F(postgres_test, times_keep_milliseconds_before_and_after_2000) {
  pq::connection c(url_, {});
  for (const core::time_point t :
       {core::time_point{}, core::time_point{std::chrono::milliseconds{946'684'799'999}}, t0 + 999ms}) {
    EXPECT_EQ(c.exec("SELECT $1::timestamptz", t).time(0, 0), t);
  }
  EXPECT_EQ(c.exec("SELECT $1::timestamptz", t0 + 1500us).time(0, 0), t0 + 1ms) << "cut to the millisecond";
}

TEST_F(postgres_test, errors_carry_their_sqlstate_and_constraint) {
  pq::connection c(url_, {});
  c.script("CREATE TABLE t (k int CONSTRAINT t_k PRIMARY KEY)");
  c.exec("INSERT INTO t VALUES ($1)", 1);
  try {
    c.exec("INSERT INTO t VALUES ($1)", 1);
    FAIL() << "no error";
  } catch (const pq::error& e) {
    EXPECT_TRUE(e.unique_violation());
    EXPECT_EQ(e.sqlstate(), "23505");
    EXPECT_EQ(e.constraint(), "t_k");
    EXPECT_FALSE(e.connection_lost());
    EXPECT_FALSE(e.retryable());
  }
  try {
    c.exec("SELEKT 1");
    FAIL() << "no error";
  } catch (const pq::error& e) {
    EXPECT_EQ(e.sqlstate(), "42601");
  }
  EXPECT_TRUE(c.usable()) << "a refused statement leaves the connection usable";
  EXPECT_EQ(c.exec("SELECT count(*) FROM t").integer(0, 0), 1);
}

TEST_F(postgres_test, a_statement_past_its_timeout_is_cancelled) {
  pq::session_settings s;
  s.statement_timeout = 200ms;
  pq::connection c(url_, s);
  const auto start = steady::now();
  try {
    c.exec("SELECT pg_sleep(5)");
    FAIL() << "no error";
  } catch (const pq::error& e) {
    EXPECT_EQ(e.sqlstate(), "57014");
  }
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_TRUE(c.usable());
}

TEST_F(postgres_test, a_transaction_not_committed_rolls_back) {
  pq::connection c(url_, {});
  c.script("CREATE TABLE t (x int)");
  {
    pq::transaction tx(c);
    c.exec("INSERT INTO t VALUES (1)");
  }
  EXPECT_TRUE(c.idle());
  EXPECT_EQ(c.exec("SELECT count(*) FROM t").integer(0, 0), 0);
  {
    pq::transaction tx(c);
    c.exec("INSERT INTO t VALUES (2)");
    tx.commit();
  }
  EXPECT_EQ(c.exec("SELECT count(*) FROM t").integer(0, 0), 1);
}

// -----------------------------------------------------------------------------------------------------------
// The pool

namespace {

// Polls until `p` has `n` callers in line; false after 10 s.
bool wait_for_line(const store::postgres::pool& p, std::size_t n) {
  const auto deadline = steady::now() + 10s;
  while (p.waiting() != n) {
    if (steady::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST_F(postgres_test, the_pool_lends_at_most_its_size_and_waits_a_bounded_time) {
  store::postgres::pool_settings o;
  o.size = 2;
  o.acquire_timeout = 300ms;
  store::postgres::pool p(url_, o);
  auto a = p.acquire();
  auto b = p.acquire();
  const auto pid_a = a->exec("SELECT pg_backend_pid()").integer(0, 0);
  EXPECT_EQ(p.usage().in_use, 2U);
  EXPECT_EQ(p.usage().waits, 0U) << "a free connection, or room to open one, is no wait";
  const auto start = steady::now();
  EXPECT_THROW(p.acquire(), store_error);
  EXPECT_GE(seconds_since(start), 0.25);
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_EQ(p.usage().waits, 1U) << "a call that timed out waited too";
  EXPECT_GT(p.usage().wait_seconds, 0.0);
  EXPECT_EQ(p.usage().waiting, 0U);
  // One given back (even from another thread while someone waits) is lent again, not reopened.
  auto waiter = std::async(std::launch::async,
                           [&] { return p.acquire()->exec("SELECT pg_backend_pid()").integer(0, 0); });
  ASSERT_TRUE(wait_for_line(p, 1));
  EXPECT_EQ(p.usage().waiting, 1U);
  { const auto done = std::move(a); }
  EXPECT_EQ(waiter.get(), pid_a);
  EXPECT_EQ(p.usage().waits, 2U);
  EXPECT_EQ(p.usage().in_use, 1U);
}

TEST_F(postgres_test, the_pool_drops_a_connection_the_server_closed) {
  store::postgres::pool_settings o;
  o.size = 1;
  store::postgres::pool p(url_, o);
  std::int64_t first = 0;
  {
    auto c = p.acquire();
    first = c->exec("SELECT pg_backend_pid()").integer(0, 0);
  }
  pq::connection admin(url_, {});
  admin.exec("SELECT pg_terminate_backend($1::int4)", first);
  std::this_thread::sleep_for(100ms);
  auto c = p.acquire();
  EXPECT_NE(c->exec("SELECT pg_backend_pid()").integer(0, 0), first) << "a dead connection was lent";
}

// Under saturation a caller that gives a connection back and asks again at
// once goes behind those already waiting: nobody is served twice while
// another waits (a barging pool let one caller keep the connection and
// starved the rest into long tails).
TEST_F(postgres_test, the_pool_serves_waiting_calls_in_order_of_arrival) {
  store::postgres::pool_settings o;
  o.size = 1;
  store::postgres::pool p(url_, o);
  auto held = std::make_optional(p.acquire());
  constexpr int callers = 4;
  constexpr int rounds = 3;
  std::mutex m;
  std::vector<int> order;
  std::vector<std::jthread> threads;
  for (int i = 0; i < callers; ++i) {
    threads.emplace_back([&, i] {
      for (int r = 0; r < rounds; ++r) {
        const auto c = p.acquire();
        {
          const std::lock_guard lock(m);
          order.push_back(i);
        }
        // Long enough for the one given back before to have lined up again.
        c->exec("SELECT pg_sleep(0.05)");
      }
    });
    ASSERT_TRUE(wait_for_line(p, i + 1)) << i;
  }
  held.reset();
  threads.clear();
  std::vector<int> round_robin;
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < callers; ++i) round_robin.push_back(i);
  }
  EXPECT_EQ(order, round_robin);
}

// A connect can fail while the database serves the pool's other
// connections (a full server: 53300; a slow one: the connect timeout). A
// call then waits for one of those, as calls do in the backoff after it;
// it does not fail while the database is up.
TEST_F(postgres_test, while_a_connect_fails_a_call_waits_for_a_connection_in_use) {
  static int roles = 0;
  const auto role = "limited_" + std::to_string(::getpid()) + "_" + std::to_string(++roles);
  {
    pq::connection admin(url_, {});
    admin.exec("CREATE ROLE " + role + " LOGIN CONNECTION LIMIT 1");
  }
  auto url = url_;
  url.replace(url.find("postgres@"), 8, role);
  store::postgres::pool_settings o;
  o.size = 3;
  store::postgres::pool p(url, o);
  std::optional<store::postgres::pool::lease> a = p.acquire();
  const auto pid_a = (*a)->exec("SELECT pg_backend_pid()").integer(0, 0);
  const auto pid_of_next = [&] { return p.acquire()->exec("SELECT pg_backend_pid()").integer(0, 0); };
  auto refused = std::async(std::launch::async, pid_of_next);  // its connect is refused
  ASSERT_TRUE(wait_for_line(p, 1));
  auto backing_off = std::async(std::launch::async, pid_of_next);  // comes during the backoff
  ASSERT_TRUE(wait_for_line(p, 2));
  a.reset();
  EXPECT_EQ(refused.get(), pid_a);
  EXPECT_EQ(backing_off.get(), pid_a);
}

TEST(postgres_down, a_store_on_a_server_that_is_not_there_fails_at_once) {
  // A port nobody listens on: bound, looked at, and closed again.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ::close(fd);
  const auto url = "postgresql://postgres@127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/postgres";
  const auto start = steady::now();
  EXPECT_THROW(store::postgres::open(url, 2), store_error);
  EXPECT_LT(seconds_since(start), 2.0);
}

// A server restart kills every connection. Calls made while it is down fail
// with store_error at once (never a hang); the first call after it is back
// (past the reconnect backoff) works, without a new store.
TEST(postgres_restart, the_store_fails_fast_while_the_server_is_down_and_recovers_by_itself) {
  test::pg_server server(true);
  store::postgres::pool_settings o;
  o.size = 4;
  o.max_backoff = 500ms;
  auto s = std::make_unique<store::postgres::postgres_store>(server.create_database(), o);
  s->migrate();
  core::user u{core::new_uuid_v7(), "alice", "h", core::role::user, t0};
  ASSERT_TRUE(s->create_user(u).has_value());

  server.stop();
  for (int i = 0; i < 5; ++i) {
    const auto start = steady::now();
    EXPECT_THROW(s->find_user(u.id), store_error) << i;
    EXPECT_THROW(s->check(), store_error) << i;
    EXPECT_LT(seconds_since(start), 2.0) << i;
  }
  server.start();
  bool recovered = false;
  const auto deadline = steady::now() + 5s;
  while (!recovered && steady::now() < deadline) {
    try {
      s->check();
      recovered = true;
    } catch (const store_error&) {
      std::this_thread::sleep_for(50ms);
    }
  }
  ASSERT_TRUE(recovered) << "the store did not reconnect within 5 s";
  const auto found = s->find_user(u.id);
  ASSERT_TRUE(found) << "a committed write survives the restart";
  EXPECT_EQ(found->username, "alice");
}

// -----------------------------------------------------------------------------------------------------------
// Migrations

TEST_F(postgres_test, migrations_are_recorded_with_name_and_time) {
  store::postgres::postgres_store s(url_, {});
  s.migrate();
  pq::connection c(url_, {});
  const auto r = c.exec("SELECT version, name, applied_at FROM schema_migrations ORDER BY version");
  const auto& all = store::postgres::migrations();
  ASSERT_EQ(r.rows(), static_cast<int>(all.size()));
  for (int i = 0; i < r.rows(); ++i) {
    EXPECT_EQ(r.integer(i, 0), all[i].version);
    EXPECT_EQ(r.text(i, 1), all[i].name);
    EXPECT_GT(r.time(i, 2), t0 - std::chrono::hours(24 * 365 * 10));
  }
}

TEST_F(postgres_test, migrate_waits_for_another_process_holding_the_migration_lock) {
  pq::connection other(url_, {});
  other.exec("SELECT pg_advisory_lock($1)", std::int64_t{0x646f63666c6f77});
  store::postgres::postgres_store s(url_, {});
  auto migrating = std::async(std::launch::async, [&] { return s.migrate(); });
  EXPECT_EQ(migrating.wait_for(500ms), std::future_status::timeout) << "migrated under another's lock";
  EXPECT_EQ(s.schema_version(), 0);
  other.exec("SELECT pg_advisory_unlock($1)", std::int64_t{0x646f63666c6f77});
  EXPECT_EQ(migrating.get(), store::postgres::migrations().back().version);
}

// -----------------------------------------------------------------------------------------------------------
// The change feed under interleaved commits

// An event written by a transaction that began earlier but commits later
// than another must still be reported: a feed that moved past the later
// one's position would never see it.
TEST_F(postgres_test, the_change_feed_misses_no_event_that_commits_late) {
  store::postgres::postgres_store s(url_, {});
  s.migrate();
  core::user u{core::new_uuid_v7(), "alice", "h", core::role::user, t0};
  ASSERT_TRUE(s.create_user(u).has_value());
  // Another user's: one user's inserts wait for each other (their usage).
  core::user v{core::new_uuid_v7(), "bob", "h", core::role::user, t0};
  ASSERT_TRUE(s.create_user(v).has_value());
  const auto early = test::sample_document(u.id, t0);
  const auto late = test::sample_document(v.id, t0);

  const auto start = s.documents_with_events_since(-1, 100);
  pq::connection slow(url_, {});
  pq::transaction tx(slow);
  slow.exec(
      "INSERT INTO documents (id, owner_id, filename, kind, size_bytes, sha256, status, created_at, "
      "updated_at,"
      " last_event_seq) VALUES ($1, $2, 'a.pdf', 'pdf', 1, $3, 'UPLOADED', $4, $4, 1)",
      early.id, u.id, early.sha256, t0);
  slow.exec("INSERT INTO document_events (document_id, seq, status, at) VALUES ($1, 1, 'UPLOADED', $2)",
            early.id, t0);
  ASSERT_TRUE(s.insert_document(late, nullptr).has_value());  // commits first, with a later transaction id
  const auto before = s.documents_with_events_since(start.next, 100);
  EXPECT_TRUE(before.ids.empty()) << "reported past a transaction still running";
  tx.commit();
  std::vector<std::string> seen = before.ids;
  const auto after = s.documents_with_events_since(before.next, 100);
  seen.insert(seen.end(), after.ids.begin(), after.ids.end());
  EXPECT_EQ(std::count(seen.begin(), seen.end(), early.id), 1) << "the late commit was skipped";
  EXPECT_EQ(std::count(seen.begin(), seen.end(), late.id), 1);
}
