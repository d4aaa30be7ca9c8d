// The contract of store::database, one suite run against every engine:
// SQLite (a file per test) and PostgreSQL (a database per test on a server
// this binary starts once, tests/unit/pg_server.hpp). What one engine does,
// the other must do too; the concurrency tests hold the PostgreSQL store to
// the promises SQLite's single writer keeps for free.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json/parse.hpp>

#include "api/throttle.hpp"
#include "bulk_jobs.hpp"
#include "core/ids.hpp"
#include "pg_server.hpp"
#include "samples.hpp"
#include "store/database.hpp"
#include "store/postgres/migrations.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/sqlite/migrations.hpp"
#include "store/sqlite/sqlite_store.hpp"

using namespace docflow;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using core::time_point;

namespace {

enum class engine { sqlite, postgres };

std::string engine_name(const ::testing::TestParamInfo<engine>& info) {
  return info.param == engine::sqlite ? "sqlite" : "postgres";
}

int latest_version() { return store::sqlite::migrations().back().version; }

const time_point t0{std::chrono::seconds{1'800'000'000}};

// One database per test, on the engine of the test's parameter.
class store_contract : public ::testing::TestWithParam<engine> {
protected:
  void SetUp() override {
    location_ = new_database();
    db_ = open();
    db_->migrate();
  }

  void TearDown() override {
    db_.reset();
    std::error_code ec;
    for (const auto& d : dirs_) fs::remove_all(d, ec);
  }

  // Where a new, empty database lives: a file path, or a PostgreSQL URL.
  std::string new_database() {
    if (GetParam() == engine::sqlite) {
      const auto dir = fs::temp_directory_path() / ("docflow-contract-" + core::random_hex(6));
      fs::create_directories(dir);
      dirs_.push_back(dir);
      return (dir / "docflow.db").string();
    }
    return test::shared_pg_server().create_database();
  }

  // Another store on the test's database (or on `location`): what another
  // process would hold.
  std::unique_ptr<store::database> open(std::size_t connections = 4,
                                        const std::optional<std::string>& location = std::nullopt) const {
    const auto& where = location ? *location : location_;
    if (GetParam() == engine::sqlite) return std::make_unique<store::sqlite::sqlite_store>(where);
    return store::postgres::open(where, connections);
  }

  store::database& db() { return *db_; }

  core::user add_user(const std::string& name, time_point at = t0) {
    core::user u{core::new_uuid_v7(), name, "hash-of-" + name, core::role::user, at};
    EXPECT_TRUE(db().create_user(u).has_value()) << name;
    return u;
  }

  core::document add_document(const std::string& owner, time_point at = t0) {
    auto d = sample_document(owner, at);
    EXPECT_TRUE(db().insert_document(d, nullptr).has_value());
    return d;
  }

  static core::document sample_document(const std::string& owner, time_point at = t0) {
    return test::sample_document(owner, at);
  }

  std::string location_;
  std::vector<fs::path> dirs_;
  std::unique_ptr<store::database> db_;
};

// Runs body(i) on `n` threads released together; rethrows nothing, counts
// the throws instead.
int on_threads(int n, const std::function<void(int)>& body) {
  std::latch start(n);
  std::atomic<int> thrown{0};
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        try {
          body(i);
        } catch (const std::exception& e) {
          ++thrown;
          ADD_FAILURE() << "thread " << i << " threw: " << e.what();
        }
      });
    }
  }
  return thrown;
}

}  // namespace

// -----------------------------------------------------------------------------------------------------------
// Migrations

TEST(store_migrations, are_versioned_in_lockstep) {
  const auto& sqlite = store::sqlite::migrations();
  const auto& postgres = store::postgres::migrations();
  ASSERT_EQ(sqlite.size(), postgres.size());
  for (std::size_t i = 0; i < sqlite.size(); ++i) {
    EXPECT_EQ(sqlite[i].version, postgres[i].version);
    EXPECT_STREQ(sqlite[i].name, postgres[i].name);
    EXPECT_NE(std::string_view(postgres[i].sql).size(), 0U) << postgres[i].name;
  }
  EXPECT_EQ(postgres.front().version, 1);
}

TEST_P(store_contract, a_fresh_database_is_at_version_zero) {
  const auto fresh = open(2, new_database());
  EXPECT_EQ(fresh->schema_version(), 0);
}

TEST_P(store_contract, migrate_reaches_the_latest_version_once) {
  EXPECT_EQ(db().schema_version(), latest_version());
  EXPECT_EQ(db().migrate(), latest_version());
  const auto again = open();
  EXPECT_EQ(again->schema_version(), latest_version());
  EXPECT_EQ(again->migrate(), latest_version());
}

TEST_P(store_contract, concurrent_migrations_of_a_fresh_database_agree) {
  for (int round = 0; round < 3; ++round) {
    const auto where = new_database();
    std::vector<std::unique_ptr<store::database>> stores;
    for (int i = 0; i < 4; ++i) stores.push_back(open(1, where));
    std::vector<int> versions(stores.size(), -1);
    EXPECT_EQ(on_threads(static_cast<int>(stores.size()), [&](int i) { versions[i] = stores[i]->migrate(); }),
              0);
    for (const int v : versions) EXPECT_EQ(v, latest_version()) << "round " << round;
    EXPECT_EQ(stores[0]->schema_version(), latest_version());
  }
}

TEST_P(store_contract, check_succeeds_on_a_healthy_database) {
  EXPECT_NO_THROW(db().check());
  EXPECT_NO_THROW(db().check());
}

// -----------------------------------------------------------------------------------------------------------
// Users

TEST_P(store_contract, users_are_found_by_id_and_by_name_ignoring_case) {
  const auto alice = add_user("Alice", t0);
  const auto by_name = db().find_user_by_name("aLiCe");
  ASSERT_TRUE(by_name);
  EXPECT_EQ(by_name->id, alice.id);
  EXPECT_EQ(by_name->username, "Alice");
  EXPECT_EQ(by_name->password_hash, alice.password_hash);
  EXPECT_EQ(by_name->role, core::role::user);
  EXPECT_EQ(by_name->created_at, t0);
  EXPECT_EQ(db().find_user(alice.id)->username, "Alice");
  EXPECT_FALSE(db().find_user_by_name("bob"));
  EXPECT_FALSE(db().find_user(core::new_uuid_v7()));
}

TEST_P(store_contract, a_username_is_taken_whatever_its_case) {
  add_user("alice");
  core::user twin{core::new_uuid_v7(), "ALICE", "h", core::role::admin, t0};
  const auto r = db().create_user(twin);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, core::errc::username_taken);
  EXPECT_FALSE(db().find_user(twin.id));
}

TEST_P(store_contract, users_are_listed_oldest_first) {
  const auto b = add_user("bob", t0 + 2s);
  const auto a = add_user("alice", t0 + 1s);
  core::user admin{core::new_uuid_v7(), "root", "h", core::role::admin, t0 + 3s};
  ASSERT_TRUE(db().create_user(admin).has_value());
  const auto all = db().list_users();
  ASSERT_EQ(all.size(), 3U);
  EXPECT_EQ(all[0].id, a.id);
  EXPECT_EQ(all[1].id, b.id);
  EXPECT_EQ(all[2].role, core::role::admin);
}

// Ids are UUIDv7 in canonical lowercase form; any other spelling names nothing, on every engine.
TEST_P(store_contract, an_id_in_another_form_finds_nothing) {
  const auto alice = add_user("alice");
  const auto doc = add_document(alice.id);
  std::string upper = doc.id;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const std::string& id : {upper, std::string("not-a-uuid"), std::string(), doc.id + "0"}) {
    EXPECT_FALSE(db().find_document(id, std::nullopt)) << id;
    EXPECT_FALSE(db().find_result(id)) << id;
    EXPECT_TRUE(db().events_after(id, 0).empty()) << id;
    EXPECT_EQ(db().delete_document(id, std::nullopt).error().code, core::errc::not_found) << id;
    EXPECT_EQ(db().request_processing(id, std::nullopt, core::new_uuid_v7(), t0, 10).error().code,
              core::errc::not_found)
        << id;
    EXPECT_FALSE(db().find_user(id)) << id;
  }
  EXPECT_FALSE(db().find_document(doc.id, std::string("someone")));
  EXPECT_TRUE(db().list_documents({std::string("someone"), std::nullopt, 10, std::nullopt}).empty());
}

// -----------------------------------------------------------------------------------------------------------
// Refresh-token families

namespace {
store::refresh_grant grant(const std::string& user_id, const std::string& hash, time_point at,
                           std::chrono::seconds life = 3600s) {
  return {core::new_uuid_v7(), user_id, hash, at, at + life};
}
}  // namespace

TEST_P(store_contract, a_refresh_token_rotates_once_and_its_reuse_revokes_the_family) {
  const auto alice = add_user("alice");
  db().start_refresh_family(grant(alice.id, "h1", t0));
  const auto first = db().rotate_refresh_token("h1", grant("", "h2", t0 + 1s), 0ms);
  EXPECT_EQ(first.decision, core::rotation_decision::rotate);
  ASSERT_TRUE(first.user);
  EXPECT_EQ(first.user->id, alice.id);
  const auto reuse = db().rotate_refresh_token("h1", grant("", "h3", t0 + 2s), 0ms);
  EXPECT_EQ(reuse.decision, core::rotation_decision::reuse_detected);
  EXPECT_FALSE(reuse.user);
  EXPECT_EQ(db().rotate_refresh_token("h2", grant("", "h4", t0 + 3s), 0ms).decision,
            core::rotation_decision::reject)
      << "the successor died with its family";
  EXPECT_EQ(db().rotate_refresh_token("h3", grant("", "h5", t0 + 3s), 0ms).decision,
            core::rotation_decision::reject)
      << "no successor was stored for the reuse";
}

TEST_P(store_contract, a_rotated_token_works_again_within_the_grace) {
  const auto alice = add_user("alice");
  db().start_refresh_family(grant(alice.id, "h1", t0));
  EXPECT_EQ(db().rotate_refresh_token("h1", grant("", "h2", t0), 10s).decision,
            core::rotation_decision::rotate);
  EXPECT_EQ(db().rotate_refresh_token("h1", grant("", "h3", t0 + 5s), 10s).decision,
            core::rotation_decision::rotate);
  EXPECT_EQ(db().rotate_refresh_token("h1", grant("", "h4", t0 + 11s), 10s).decision,
            core::rotation_decision::reuse_detected);
}

TEST_P(store_contract, unknown_expired_and_revoked_tokens_are_rejected) {
  const auto alice = add_user("alice");
  EXPECT_EQ(db().rotate_refresh_token("nope", grant("", "x", t0), 0ms).decision,
            core::rotation_decision::reject);
  db().start_refresh_family(grant(alice.id, "short", t0, 10s));
  EXPECT_EQ(db().rotate_refresh_token("short", grant("", "x1", t0 + 10s), 0ms).decision,
            core::rotation_decision::reject);
  db().start_refresh_family(grant(alice.id, "revoked", t0));
  db().revoke_refresh_family("revoked", t0 + 1s);
  db().revoke_refresh_family("unknown", t0 + 1s);  // ignored
  EXPECT_EQ(db().rotate_refresh_token("revoked", grant("", "x2", t0 + 2s), 0ms).decision,
            core::rotation_decision::reject);
}

TEST_P(store_contract, expired_families_are_purged) {
  const auto alice = add_user("alice");
  db().start_refresh_family(grant(alice.id, "old", t0, 10s));
  db().start_refresh_family(grant(alice.id, "new", t0, 3600s));
  EXPECT_EQ(db().purge_refresh_families(t0 + 10s), 1U);
  EXPECT_EQ(db().purge_refresh_families(t0 + 10s), 0U);
  EXPECT_EQ(db().rotate_refresh_token("new", grant("", "n2", t0 + 11s), 0ms).decision,
            core::rotation_decision::rotate);
}

// -----------------------------------------------------------------------------------------------------------
// Documents

TEST_P(store_contract, every_kind_of_file_is_stored) {
  const auto alice = add_user("alice");
  for (const auto kind : {core::file_kind::pdf, core::file_kind::docx, core::file_kind::png,
                          core::file_kind::jpeg, core::file_kind::tiff}) {
    auto d = sample_document(alice.id, t0);
    d.kind = kind;
    ASSERT_TRUE(db().insert_document(d, nullptr).has_value()) << core::kind_name(kind);
    const auto found = db().find_document(d.id, alice.id);
    ASSERT_TRUE(found);
    EXPECT_EQ(found->kind, kind);
  }
}

TEST_P(store_contract, a_document_round_trips_and_is_scoped_to_its_owner) {
  const auto alice = add_user("alice");
  const auto bob = add_user("bob");
  auto d = sample_document(alice.id, t0 + 123456us);
  d.title = "Ünïcode title";
  d.kind = core::file_kind::docx;
  d.size_bytes = 5'000'000'000ULL;
  d.filename = "report.docx";
  ASSERT_TRUE(db().insert_document(d, nullptr).has_value());
  const auto found = db().find_document(d.id, alice.id);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->owner_id, alice.id);
  EXPECT_EQ(found->title, d.title);
  EXPECT_EQ(found->kind, core::file_kind::docx);
  EXPECT_EQ(found->size_bytes, d.size_bytes);
  EXPECT_EQ(found->filename, "report.docx");
  EXPECT_EQ(found->sha256, d.sha256);
  EXPECT_EQ(found->status, core::status::uploaded);
  EXPECT_EQ(found->created_at, t0 + 123ms) << "times are kept to the millisecond";
  EXPECT_EQ(found->attempts, 0U);
  EXPECT_FALSE(found->started_at);
  EXPECT_FALSE(found->error);
  EXPECT_TRUE(db().find_document(d.id, std::nullopt));
  EXPECT_FALSE(db().find_document(d.id, bob.id));
  const auto untitled = add_document(alice.id);
  EXPECT_FALSE(db().find_document(untitled.id, std::nullopt)->title);
}

TEST_P(store_contract, listing_pages_newest_first_through_keyset_cursors) {
  const auto alice = add_user("alice");
  const auto bob = add_user("bob");
  std::vector<core::document> mine;
  for (int i = 0; i < 7; ++i) {
    // Pairs share a created_at: the id decides among them.
    mine.push_back(add_document(alice.id, t0 + std::chrono::seconds(i / 2)));
  }
  add_document(bob.id, t0 + 1s);
  std::vector<core::document> expected = mine;
  std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) {
    return std::pair(a.created_at, a.id) > std::pair(b.created_at, b.id);
  });
  std::vector<std::string> seen;
  store::document_query q{alice.id, std::nullopt, 3, std::nullopt};
  for (int page = 0; page < 5; ++page) {
    const auto got = db().list_documents(q);
    for (const auto& d : got) seen.push_back(d.id);
    if (got.size() < q.limit) break;
    q.after = std::pair(got.back().created_at, got.back().id);
  }
  ASSERT_EQ(seen.size(), expected.size());
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], expected[i].id) << i;

  EXPECT_EQ(db().list_documents({std::nullopt, std::nullopt, 100, std::nullopt}).size(), 8U)
      << "admins see all";
  ASSERT_TRUE(db().request_processing(mine[3].id, alice.id, core::new_uuid_v7(), t0, 10).has_value());
  const auto processing = db().list_documents({alice.id, core::status::processing, 100, std::nullopt});
  ASSERT_EQ(processing.size(), 1U);
  EXPECT_EQ(processing[0].id, mine[3].id);
  EXPECT_EQ(db().list_documents({alice.id, core::status::uploaded, 100, std::nullopt}).size(), 6U);
}

TEST_P(store_contract, delete_refuses_a_document_being_processed_and_removes_the_rest) {
  const auto alice = add_user("alice");
  const auto bob = add_user("bob");
  const auto d = add_document(alice.id);
  EXPECT_EQ(db().delete_document(core::new_uuid_v7(), alice.id).error().code, core::errc::not_found);
  EXPECT_EQ(db().delete_document(d.id, bob.id).error().code, core::errc::not_found);
  ASSERT_TRUE(db().request_processing(d.id, alice.id, core::new_uuid_v7(), t0, 10).has_value());
  const auto busy = db().delete_document(d.id, alice.id);
  ASSERT_FALSE(busy.has_value());
  EXPECT_EQ(busy.error().code, core::errc::document_busy);
  EXPECT_EQ(busy.error().document_status, core::status::processing);
  ASSERT_TRUE(db().cancel_processing(d.id, alice.id, {"cancelled", "by owner", true}, t0 + 1s).has_value());
  EXPECT_TRUE(db().delete_document(d.id, alice.id).has_value());
  EXPECT_FALSE(db().find_document(d.id, std::nullopt));
  EXPECT_TRUE(db().events_after(d.id, 0).empty()) << "events go with their document";
  EXPECT_EQ(db().job_stats().queued + db().job_stats().running, 0U);
  EXPECT_EQ(db().delete_document(d.id, alice.id).error().code, core::errc::not_found);
}

TEST_P(store_contract, concurrent_inserts_all_land_and_a_bad_one_fails_alone) {
  const auto alice = add_user("alice");
  constexpr int threads = 16;
  const auto duplicate = add_document(alice.id);
  std::vector<core::document> docs;
  for (int i = 0; i < threads; ++i) docs.push_back(sample_document(alice.id));
  docs[threads / 2] = duplicate;                     // its primary key is taken: this insert alone must fail
  docs[threads / 4].owner_id = core::new_uuid_v7();  // no such user: this one too
  std::vector<std::exception_ptr> errors(threads);
  std::latch start(threads);
  {
    std::vector<std::jthread> pool;
    for (int i = 0; i < threads; ++i) {
      pool.emplace_back([&, i] {
        start.arrive_and_wait();
        try {
          static_cast<void>(db().insert_document(docs[i], nullptr));  // a failure throws
        } catch (...) {
          errors[i] = std::current_exception();
        }
      });
    }
  }
  for (int i = 0; i < threads; ++i) {
    const bool bad = i == threads / 2 || i == threads / 4;
    EXPECT_EQ(errors[i] != nullptr, bad) << i;
    if (!bad) {
      EXPECT_TRUE(db().find_document(docs[i].id, alice.id)) << i;
    }
  }
  EXPECT_EQ(db().list_documents({alice.id, std::nullopt, 100, std::nullopt}).size(),
            static_cast<std::size_t>(threads - 1));
  EXPECT_THROW(std::rethrow_exception(errors[threads / 2]), store::store_error);
}

// -----------------------------------------------------------------------------------------------------------
// Resumable uploads (tus): their rows and the lock that holds across processes

namespace {
store::upload_record sample_upload(const std::string& owner, std::optional<std::string> key = std::nullopt) {
  store::upload_record u;
  u.id = core::new_uuid_v7();
  u.owner_id = owner;
  u.length = 1000;
  u.metadata = "filename YS5wZGY=";
  u.idempotency_key = std::move(key);
  u.fingerprint = "POST /uploads\n1000\n" + u.metadata;
  u.store_state = "state-0";
  u.hash_state = "hash-0";
  u.created_at = t0;
  u.expires_at = t0 + 24h;
  return u;
}
}  // namespace

// -----------------------------------------------------------------------------------------------------------
// Quotas: usage kept by the database itself, checked at the commit

namespace {
core::document sized_document(const std::string& owner, std::uint64_t bytes) {
  auto d = test::sample_document(owner, t0);
  d.size_bytes = bytes;
  return d;
}
}  // namespace

TEST_P(store_contract, usage_counts_every_insert_and_delete) {
  const auto alice = add_user("alice");
  const auto bob = add_user("bob");
  EXPECT_EQ(db().find_quota(alice.id).usage.documents, 0u);
  const auto a = sized_document(alice.id, 100);
  ASSERT_TRUE(db().insert_document(a, nullptr));
  ASSERT_TRUE(db().insert_document(sized_document(alice.id, 50), nullptr));
  ASSERT_TRUE(db().insert_document(sized_document(bob.id, 7), nullptr));
  auto q = db().find_quota(alice.id);
  EXPECT_EQ(q.usage.bytes, 150u);
  EXPECT_EQ(q.usage.documents, 2u);
  EXPECT_FALSE(q.limits.bytes);
  EXPECT_FALSE(q.limits.documents);
  ASSERT_TRUE(db().delete_document(a.id, alice.id));
  q = db().find_quota(alice.id);
  EXPECT_EQ(q.usage.bytes, 50u);
  EXPECT_EQ(q.usage.documents, 1u);
  EXPECT_EQ(db().find_quota(bob.id).usage.bytes, 7u);
}

TEST_P(store_contract, an_insert_past_the_quota_is_refused_and_leaves_nothing) {
  const auto alice = add_user("alice");
  db().set_default_quota({100, 3});
  ASSERT_TRUE(db().insert_document(sized_document(alice.id, 60), nullptr));
  const auto big = sized_document(alice.id, 41);
  const auto refused = db().insert_document(big, nullptr);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, core::errc::quota_exceeded);
  ASSERT_TRUE(refused.error().quota);
  EXPECT_EQ(refused.error().quota->usage.bytes, 60u);
  EXPECT_EQ(refused.error().quota->usage.documents, 1u);
  EXPECT_EQ(refused.error().quota->limits.bytes, 100u);
  EXPECT_EQ(refused.error().quota->limits.documents, 3u);
  EXPECT_FALSE(db().find_document(big.id, std::nullopt));
  EXPECT_EQ(db().find_quota(alice.id).usage.documents, 1u);
  ASSERT_TRUE(db().insert_document(sized_document(alice.id, 40), nullptr)) << "exactly at the limit fits";
  ASSERT_TRUE(db().insert_document(sized_document(alice.id, 0), nullptr));
  const auto fourth = db().insert_document(sized_document(alice.id, 0), nullptr);
  ASSERT_FALSE(fourth) << "three documents at most";
  EXPECT_EQ(fourth.error().code, core::errc::quota_exceeded);
}

TEST_P(store_contract, a_users_own_limits_win_over_the_defaults) {
  const auto alice = add_user("alice");
  const auto bob = add_user("bob");
  db().set_default_quota({10, std::nullopt});
  EXPECT_TRUE(
      db().set_quota(alice.id, core::limit_setting{false, std::nullopt}, core::limit_setting{false, 1}));
  auto q = db().find_quota(alice.id);
  EXPECT_FALSE(q.limits.bytes) << "unlimited for her";
  EXPECT_EQ(q.limits.documents, 1u);
  EXPECT_EQ(db().find_quota(bob.id).limits.bytes, 10u);
  ASSERT_TRUE(db().insert_document(sized_document(alice.id, 1000), nullptr));
  EXPECT_FALSE(db().insert_document(sized_document(alice.id, 0), nullptr));
  // A limit not given stays; "default" goes back to the server's.
  EXPECT_TRUE(db().set_quota(alice.id, core::limit_setting{}, std::nullopt));
  q = db().find_quota(alice.id);
  EXPECT_EQ(q.limits.bytes, 10u);
  EXPECT_EQ(q.limits.documents, 1u);
  EXPECT_FALSE(db().set_quota(core::new_uuid_v7(), core::limit_setting{}, std::nullopt));
}

TEST_P(store_contract, concurrent_inserts_never_pass_the_quota_together) {
  const auto alice = add_user("alice");
  constexpr int threads = 8;
  db().set_default_quota({5 * 10, std::nullopt});
  std::atomic<int> accepted{0};
  std::atomic<int> refused{0};
  EXPECT_EQ(on_threads(threads,
                       [&](int) {
                         const auto other = open(2);  // each its own process
                         other->set_default_quota({5 * 10, std::nullopt});
                         for (int i = 0; i < 2; ++i) {
                           const auto r = other->insert_document(sized_document(alice.id, 10), nullptr);
                           if (r) {
                             ++accepted;
                           } else if (r.error().code == core::errc::quota_exceeded) {
                             ++refused;
                           }
                         }
                       }),
            0);
  EXPECT_EQ(accepted.load(), 5);
  EXPECT_EQ(refused.load(), 2 * threads - 5);
  EXPECT_EQ(db().find_quota(alice.id).usage.bytes, 50u);
  EXPECT_EQ(db().list_documents({alice.id, std::nullopt, 100, std::nullopt}).size(), 5u);
}

TEST_P(store_contract, a_finished_upload_is_held_to_the_quota) {
  const auto alice = add_user("alice");
  db().set_default_quota({100, std::nullopt});
  ASSERT_TRUE(db().insert_document(sized_document(alice.id, 90), nullptr));
  const auto u = [&] {
    auto r = sample_upload(alice.id);
    db().create_upload(r);
    return r;
  }();
  ASSERT_EQ(db().lock_upload(u.id, alice.id, "mine", t0, 30s).outcome, store::upload_lock::kind::locked);
  auto doc = sized_document(alice.id, 11);
  doc.id = u.id;
  const auto refused = db().finish_upload(u, "mine", &doc);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, core::errc::quota_exceeded);
  EXPECT_FALSE(db().find_document(doc.id, std::nullopt));
  EXPECT_EQ(db().find_upload(u.id, alice.id)->answer_status, 0) << "the upload is as it was";
  EXPECT_TRUE(db().renew_upload_lock(u.id, "mine", t0 + 1s, 30s)) << "and still the caller's to end";
  EXPECT_EQ(db().finish_upload(u, "stale", nullptr).error().code, core::errc::upload_locked);
}

// -----------------------------------------------------------------------------------------------------------
// API keys

namespace {
store::api_key sample_key(const std::string& user, std::string name, time_point at = t0) {
  return {core::new_uuid_v7(), user, std::move(name), "dfk_abcdefgh", at, std::nullopt, std::nullopt};
}
}  // namespace

TEST_P(store_contract, an_api_key_is_found_by_its_hash_with_its_user) {
  const auto alice = add_user("alice");
  auto k = sample_key(alice.id, "scanner");
  k.expires_at = t0 + 24h;
  ASSERT_TRUE(db().create_api_key(k, "hash-1", 10));
  const auto found = db().find_api_key("hash-1");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->key.id, k.id);
  EXPECT_EQ(found->key.name, "scanner");
  EXPECT_EQ(found->key.prefix, "dfk_abcdefgh");
  EXPECT_EQ(found->key.created_at, t0);
  EXPECT_EQ(found->key.expires_at, t0 + 24h);
  EXPECT_FALSE(found->key.last_used_at);
  EXPECT_EQ(found->user.id, alice.id);
  EXPECT_EQ(found->user.role, core::role::user);
  EXPECT_FALSE(db().find_api_key("hash-2"));
  // Another process sees it, and sees it go.
  const auto other = open();
  EXPECT_TRUE(other->find_api_key("hash-1"));
  EXPECT_TRUE(db().delete_api_key(k.id, alice.id));
  EXPECT_FALSE(other->find_api_key("hash-1"));
  EXPECT_FALSE(db().delete_api_key(k.id, alice.id));
}

TEST_P(store_contract, api_keys_are_listed_and_deleted_by_their_owner_only) {
  const auto alice = add_user("alice");
  const auto bob = add_user("bob");
  const auto first = sample_key(alice.id, "one", t0);
  const auto second = sample_key(alice.id, "two", t0 + 1s);
  ASSERT_TRUE(db().create_api_key(second, "h2", 10));
  ASSERT_TRUE(db().create_api_key(first, "h1", 10));
  ASSERT_TRUE(db().create_api_key(sample_key(bob.id, "bobs"), "h3", 10));
  const auto keys = db().list_api_keys(alice.id);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].name, "one");
  EXPECT_EQ(keys[1].name, "two");
  EXPECT_FALSE(db().delete_api_key(first.id, bob.id));
  EXPECT_TRUE(db().find_api_key("h1"));
  EXPECT_FALSE(db().delete_api_key("not-a-uuid", alice.id));
  EXPECT_TRUE(db().list_api_keys("not-a-uuid").empty());
}

TEST_P(store_contract, a_user_holds_at_most_the_limit_of_keys_even_at_once) {
  const auto alice = add_user("alice");
  constexpr int threads = 6;
  std::atomic<int> made{0};
  std::atomic<int> limited{0};
  EXPECT_EQ(on_threads(threads,
                       [&](int i) {
                         const auto other = open(2);
                         const auto r =
                             other->create_api_key(sample_key(alice.id, "k"), "hash-" + std::to_string(i), 4);
                         if (r) {
                           ++made;
                         } else if (r.error().code == core::errc::limit_reached) {
                           ++limited;
                         }
                       }),
            0);
  EXPECT_EQ(made.load(), 4);
  EXPECT_EQ(limited.load(), threads - 4);
  EXPECT_EQ(db().list_api_keys(alice.id).size(), 4u);
}

TEST_P(store_contract, last_use_is_written_at_most_once_an_interval_and_a_rehash_keeps_the_key) {
  const auto alice = add_user("alice");
  const auto k = sample_key(alice.id, "k");
  ASSERT_TRUE(db().create_api_key(k, "old", 10));
  db().touch_api_key(k.id, t0 + 10s, 60s);
  EXPECT_EQ(db().find_api_key("old")->key.last_used_at, t0 + 10s);
  db().touch_api_key(k.id, t0 + 50s, 60s);
  EXPECT_EQ(db().find_api_key("old")->key.last_used_at, t0 + 10s) << "within the interval: not written";
  db().touch_api_key(k.id, t0 + 70s, 60s);
  EXPECT_EQ(db().find_api_key("old")->key.last_used_at, t0 + 70s);
  db().rehash_api_key(k.id, "new");
  EXPECT_FALSE(db().find_api_key("old"));
  ASSERT_TRUE(db().find_api_key("new"));
  EXPECT_EQ(db().find_api_key("new")->key.id, k.id);
}

TEST_P(store_contract, an_upload_round_trips_and_is_scoped_to_its_owner) {
  const auto alice = add_user("alice");
  const auto bob = add_user("bob");
  const auto u = sample_upload(alice.id);
  EXPECT_EQ(db().create_upload(u).id, u.id);
  const auto found = db().find_upload(u.id, alice.id);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->length, 1000u);
  EXPECT_EQ(found->offset, 0u);
  EXPECT_EQ(found->metadata, u.metadata);
  EXPECT_EQ(found->store_state, "state-0");
  EXPECT_EQ(found->hash_state, "hash-0");
  EXPECT_EQ(found->expires_at, u.expires_at);
  EXPECT_EQ(found->answer_status, 0);
  EXPECT_FALSE(found->idempotency_key);
  EXPECT_TRUE(db().find_upload(u.id, std::nullopt));
  EXPECT_FALSE(db().find_upload(u.id, bob.id));
  EXPECT_EQ(db().lock_upload(u.id, bob.id, "t", t0, 30s).outcome, store::upload_lock::kind::not_found);
  EXPECT_EQ(db().lock_upload(core::new_uuid_v7(), alice.id, "t", t0, 30s).outcome,
            store::upload_lock::kind::not_found);
  EXPECT_FALSE(db().find_upload("not-a-uuid", alice.id));
}

TEST_P(store_contract, a_creation_under_a_known_key_returns_the_first_upload) {
  const auto alice = add_user("alice");
  const auto bob = add_user("bob");
  const auto first = sample_upload(alice.id, "k1");
  EXPECT_EQ(db().create_upload(first).id, first.id);
  auto again = sample_upload(alice.id, "k1");
  again.length = 5;
  const auto got = db().create_upload(again);
  EXPECT_EQ(got.id, first.id);
  EXPECT_EQ(got.length, 1000u);
  EXPECT_FALSE(db().find_upload(again.id, std::nullopt)) << "the second creation inserted a row";
  const auto bobs = sample_upload(bob.id, "k1");  // keys are per user
  EXPECT_EQ(db().create_upload(bobs).id, bobs.id);
}

TEST_P(store_contract, concurrent_creations_under_one_key_make_one_upload) {
  const auto alice = add_user("alice");
  constexpr int n = 8;
  std::vector<std::string> got(n);
  EXPECT_EQ(on_threads(n, [&](int i) { got[i] = db().create_upload(sample_upload(alice.id, "same")).id; }),
            0);
  for (int i = 1; i < n; ++i) EXPECT_EQ(got[i], got[0]) << i;
}

TEST_P(store_contract, an_upload_lock_excludes_until_released_or_lapsed) {
  const auto alice = add_user("alice");
  const auto u = sample_upload(alice.id);
  db().create_upload(u);
  const auto first = db().lock_upload(u.id, alice.id, "one", t0, 30s);
  ASSERT_EQ(first.outcome, store::upload_lock::kind::locked);
  EXPECT_EQ(first.record.id, u.id);
  const auto other = open();  // another process
  EXPECT_EQ(other->lock_upload(u.id, alice.id, "two", t0 + 29s, 30s).outcome, store::upload_lock::kind::busy);
  EXPECT_TRUE(db().renew_upload_lock(u.id, "one", t0 + 20s, 30s));
  EXPECT_EQ(other->lock_upload(u.id, alice.id, "two", t0 + 49s, 30s).outcome, store::upload_lock::kind::busy);
  db().unlock_upload(u.id, "two");  // not its holder: nothing
  EXPECT_EQ(other->lock_upload(u.id, alice.id, "two", t0 + 49s, 30s).outcome, store::upload_lock::kind::busy);
  db().unlock_upload(u.id, "one");
  EXPECT_EQ(other->lock_upload(u.id, alice.id, "two", t0 + 49s, 30s).outcome,
            store::upload_lock::kind::locked);
  // A holder that died: its lease lapses and the next request takes over.
  EXPECT_EQ(db().lock_upload(u.id, alice.id, "three", t0 + 80s, 30s).outcome,
            store::upload_lock::kind::locked);
  EXPECT_FALSE(other->renew_upload_lock(u.id, "two", t0 + 81s, 30s));
}

TEST_P(store_contract, of_concurrent_lockers_exactly_one_locks) {
  const auto alice = add_user("alice");
  const auto u = sample_upload(alice.id);
  db().create_upload(u);
  constexpr int n = 8;
  std::atomic<int> locked{0};
  EXPECT_EQ(on_threads(n,
                       [&](int i) {
                         if (db().lock_upload(u.id, alice.id, "t" + std::to_string(i), t0, 30s).outcome ==
                             store::upload_lock::kind::locked) {
                           ++locked;
                         }
                       }),
            0);
  EXPECT_EQ(locked, 1);
}

TEST_P(store_contract, only_the_lock_holder_advances_finishes_or_deletes) {
  const auto alice = add_user("alice");
  auto u = sample_upload(alice.id);
  db().create_upload(u);
  ASSERT_EQ(db().lock_upload(u.id, alice.id, "mine", t0, 30s).outcome, store::upload_lock::kind::locked);
  u.offset = 400;
  u.store_state = "state-400";
  u.hash_state = "hash-400";
  u.expires_at = t0 + 48h;
  EXPECT_FALSE(db().advance_upload(u, "stale"));
  EXPECT_EQ(db().find_upload(u.id, alice.id)->offset, 0u);
  EXPECT_TRUE(db().advance_upload(u, "mine"));
  auto found = db().find_upload(u.id, alice.id);
  EXPECT_EQ(found->offset, 400u);
  EXPECT_EQ(found->store_state, "state-400");
  EXPECT_EQ(found->hash_state, "hash-400");
  EXPECT_EQ(found->expires_at, t0 + 48h);

  // Finishing with a document: the document, its event and the answer, or nothing.
  auto doc = sample_document(alice.id);
  doc.id = u.id;
  u.offset = u.length;
  u.answer_status = 201;
  u.answer_body = "{\"id\":1}";
  u.answer_content_type = "application/json";
  EXPECT_FALSE(db().finish_upload(u, "stale", &doc));
  EXPECT_FALSE(db().find_document(doc.id, std::nullopt)) << "a stale token inserted the document";
  EXPECT_TRUE(db().finish_upload(u, "mine", &doc));
  ASSERT_TRUE(db().find_document(doc.id, alice.id));
  EXPECT_EQ(db().events_after(doc.id, 0).size(), 1u);
  found = db().find_upload(u.id, alice.id);
  EXPECT_EQ(found->answer_status, 201);
  EXPECT_EQ(found->answer_body, u.answer_body);
  EXPECT_EQ(found->answer_content_type, "application/json");
  EXPECT_EQ(found->offset, u.length);
  // The finish released the lock; a delete needs it again.
  EXPECT_FALSE(db().delete_upload(u.id, "mine"));
  ASSERT_EQ(db().lock_upload(u.id, alice.id, "end", t0, 30s).outcome, store::upload_lock::kind::locked);
  EXPECT_TRUE(db().delete_upload(u.id, "end"));
  EXPECT_FALSE(db().find_upload(u.id, std::nullopt));
  EXPECT_TRUE(db().find_document(doc.id, alice.id)) << "the upload's document went with it";
}

TEST_P(store_contract, a_refused_upload_records_its_answer_without_a_document) {
  const auto alice = add_user("alice");
  auto u = sample_upload(alice.id);
  db().create_upload(u);
  ASSERT_EQ(db().lock_upload(u.id, alice.id, "mine", t0, 30s).outcome, store::upload_lock::kind::locked);
  u.answer_status = 415;
  u.answer_body = "problem";
  u.answer_content_type = "application/problem+json";
  EXPECT_TRUE(db().finish_upload(u, "mine", nullptr));
  EXPECT_FALSE(db().find_document(u.id, std::nullopt));
  EXPECT_EQ(db().find_upload(u.id, alice.id)->answer_status, 415);
}

TEST_P(store_contract, expired_uploads_are_listed_earliest_first_but_not_while_held) {
  const auto alice = add_user("alice");
  std::vector<store::upload_record> all;
  for (int i = 0; i < 4; ++i) {
    auto u = sample_upload(alice.id);
    u.expires_at = t0 + std::chrono::hours(4 - i);  // the last made expires first
    db().create_upload(u);
    all.push_back(u);
  }
  ASSERT_EQ(db().lock_upload(all[3].id, alice.id, "held", t0 + 5h, 30s).outcome,
            store::upload_lock::kind::locked);
  const auto expired = db().expired_uploads(t0 + 5h, 2);
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_EQ(expired[0].id, all[2].id);  // all[3], earliest, is held
  EXPECT_EQ(expired[1].id, all[1].id);
  EXPECT_TRUE(db().expired_uploads(t0 + 90min, 10).empty());
  EXPECT_EQ(db().expired_uploads(t0 + 5h + 31s, 10).size(), 4u) << "a lapsed lock holds nothing";
}

TEST_P(store_contract, an_upload_needs_an_owner_that_exists) {
  auto stray = sample_upload(core::new_uuid_v7());  // no such user
  EXPECT_THROW(db().create_upload(stray), store::store_error);
}

// -----------------------------------------------------------------------------------------------------------
// Processing: the lease protocol, driven with explicit times (no sleeping)

namespace {

class lease_protocol : public store_contract {
protected:
  void SetUp() override {
    store_contract::SetUp();
    user_ = add_user("alice").id;
    doc_id_ = add_document(user_).id;
  }

  core::result<store::process_result> request(time_point at, std::uint64_t max_queued = 100) {
    return db().request_processing(doc_id_, user_, core::new_uuid_v7(), at, max_queued);
  }
  std::string requested(time_point at, std::uint64_t max_queued = 100) {
    return outcome(request(at, max_queued));
  }
  static std::string outcome(const core::result<store::process_result>& r) {
    if (!r) return std::string(core::name(r.error().code));
    switch (r->outcome) {
      case store::process_outcome::accepted: return "accepted";
      case store::process_outcome::already_processing: return "already_processing";
      case store::process_outcome::completed: return "completed";
    }
    return "?";
  }
  static store::stored_result result_at(time_point at, std::string text = "text") {
    return {"test/1", t0, at, 1, R"({"pages":1})", std::move(text), {}, 0};
  }
  core::status status() { return db().find_document(doc_id_, std::nullopt)->status; }

  std::string user_;
  std::string doc_id_;
};

}  // namespace

TEST_P(lease_protocol, a_held_lease_keeps_others_out_until_it_lapses) {
  ASSERT_EQ(requested(t0), "accepted");
  const auto first = db().claim_job(t0, 30s, "token-a");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->attempt, 1U);
  EXPECT_EQ(first->queued_at, t0);
  EXPECT_EQ(first->document.id, doc_id_);
  EXPECT_EQ(first->document.attempts, 1U);
  EXPECT_EQ(first->document.started_at, t0);
  EXPECT_FALSE(first->taken_over);
  EXPECT_FALSE(db().claim_job(t0 + 29s, 30s, "token-b")) << "the lease still holds";
  const auto second = db().claim_job(t0 + 31s, 30s, "token-b");
  ASSERT_TRUE(second) << "a lapsed lease is taken over";
  EXPECT_TRUE(second->taken_over);
  EXPECT_EQ(second->job_id, first->job_id);
  EXPECT_EQ(second->attempt, 2U);
  EXPECT_EQ(db().find_document(doc_id_, std::nullopt)->attempts, 2U);
}

TEST_P(lease_protocol, a_stale_worker_can_neither_complete_fail_nor_renew) {
  ASSERT_TRUE(request(t0).has_value());
  const auto stale = db().claim_job(t0, 30s, "token-a");
  const auto current = db().claim_job(t0 + 31s, 30s, "token-b");
  ASSERT_TRUE(stale && current);
  EXPECT_FALSE(db().lease_held(*stale));
  EXPECT_TRUE(db().lease_held(*current));
  EXPECT_FALSE(db().renew_lease(*stale, t0 + 32s, 30s));
  EXPECT_FALSE(db().complete_job(*stale, result_at(t0 + 33s)));
  EXPECT_EQ(db().fail_job(*stale, t0 + 33s, {"x", "y", false}, std::nullopt),
            store::failure_outcome::lease_lost);
  EXPECT_EQ(status(), core::status::processing);
  EXPECT_FALSE(db().find_result(doc_id_));
  EXPECT_TRUE(db().renew_lease(*current, t0 + 34s, 30s));
  EXPECT_TRUE(db().complete_job(*current, result_at(t0 + 35s)));
  EXPECT_EQ(status(), core::status::completed);
  EXPECT_TRUE(db().find_result(doc_id_));
  EXPECT_FALSE(db().lease_held(*current)) << "a finished job holds no lease";
}

TEST_P(lease_protocol, a_completed_document_runs_again_only_when_forced) {
  ASSERT_EQ(requested(t0), "accepted");
  const auto first = db().claim_job(t0, 30s, "token-a");
  ASSERT_TRUE(first && db().complete_job(*first, result_at(t0 + 1s, "old")));
  EXPECT_EQ(requested(t0 + 2s), "completed");
  EXPECT_FALSE(db().claim_job(t0 + 2s, 30s, "token-x")) << "a plain request queued nothing";

  const auto forced = db().request_processing(doc_id_, user_, core::new_uuid_v7(), t0 + 3s, 100, true);
  ASSERT_EQ(outcome(forced), "accepted");
  EXPECT_EQ(forced->document.status, core::status::processing);
  EXPECT_EQ(forced->document.started_at, std::nullopt) << "the new run gets its own start";
  EXPECT_EQ(outcome(db().request_processing(doc_id_, user_, core::new_uuid_v7(), t0 + 3s, 100, true)),
            "already_processing")
      << "one live job, forced or not";
  EXPECT_TRUE(db().find_result(doc_id_)) << "the old result stays until the new one replaces it";

  const auto second = db().claim_job(t0 + 4s, 30s, "token-b");
  ASSERT_TRUE(second);
  EXPECT_NE(second->job_id, first->job_id);
  EXPECT_EQ(second->attempt, 1U) << "a new job, with its own retries";
  EXPECT_EQ(second->document.attempts, 2U) << "the document counts every attempt";
  EXPECT_EQ(second->document.started_at, t0 + 4s);
  ASSERT_TRUE(db().complete_job(*second, result_at(t0 + 5s, "new")));
  EXPECT_EQ(status(), core::status::completed);
  const auto result = db().find_result(doc_id_);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->completed_at, t0 + 5s);
  EXPECT_EQ(result->text_preview, "new");
  std::vector<core::status> statuses;
  for (const auto& e : db().events_after(doc_id_, 0)) statuses.push_back(e.status);
  EXPECT_EQ(statuses, (std::vector<core::status>{core::status::uploaded, core::status::processing,
                                                 core::status::completed, core::status::processing,
                                                 core::status::completed}));
}

TEST_P(lease_protocol, renewal_extends_the_lease) {
  ASSERT_TRUE(request(t0).has_value());
  const auto job = db().claim_job(t0, 30s, "token-a");
  ASSERT_TRUE(db().renew_lease(*job, t0 + 20s, 30s));
  EXPECT_FALSE(db().claim_job(t0 + 45s, 30s, "token-b")) << "renewed until t0 + 50 s";
  EXPECT_TRUE(db().claim_job(t0 + 51s, 30s, "token-b"));
}

TEST_P(lease_protocol, a_retry_waits_for_its_time) {
  ASSERT_TRUE(request(t0).has_value());
  const auto job = db().claim_job(t0, 30s, "token-a");
  ASSERT_EQ(db().fail_job(*job, t0 + 1s, {"extractor_crashed", "boom", true}, t0 + 10s),
            store::failure_outcome::retry_scheduled);
  EXPECT_EQ(status(), core::status::processing);
  EXPECT_FALSE(db().lease_held(*job));
  EXPECT_EQ(db().job_stats().queued, 1U);
  EXPECT_FALSE(db().claim_job(t0 + 9s, 30s, "token-b"));
  const auto again = db().claim_job(t0 + 10s, 30s, "token-b");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->attempt, 2U);
  EXPECT_EQ(again->queued_at, t0 + 10s);
}

TEST_P(lease_protocol, a_final_failure_records_the_error_and_allows_a_new_request) {
  ASSERT_TRUE(request(t0).has_value());
  const auto job = db().claim_job(t0, 30s, "token-a");
  ASSERT_EQ(db().fail_job(*job, t0 + 1s, {"unreadable_document", "locked \"PDF\"", false}, std::nullopt),
            store::failure_outcome::failed);
  const auto doc = db().find_document(doc_id_, std::nullopt);
  ASSERT_TRUE(doc->error);
  EXPECT_EQ(doc->status, core::status::failed);
  EXPECT_EQ(doc->error->code, "unreadable_document");
  EXPECT_EQ(doc->error->message, "locked \"PDF\"");
  EXPECT_FALSE(doc->error->retryable);
  EXPECT_EQ(doc->finished_at, t0 + 1s);
  const auto events = db().events_after(doc_id_, 2);
  ASSERT_EQ(events.size(), 1U);
  ASSERT_TRUE(events[0].error);
  EXPECT_EQ(events[0].error->message, "locked \"PDF\"");
  EXPECT_EQ(requested(t0 + 2s), "accepted") << "FAILED -> PROCESSING";
  EXPECT_FALSE(db().find_document(doc_id_, std::nullopt)->error) << "a new request clears the error";
}

TEST_P(lease_protocol, repeated_requests_make_one_job_and_the_queue_bound_holds) {
  EXPECT_EQ(requested(t0, 0), "queue_full");
  EXPECT_EQ(status(), core::status::uploaded) << "a refused request changes nothing";
  EXPECT_FALSE(db().job_stats().oldest_available) << "nothing queued";
  EXPECT_EQ(requested(t0), "accepted");
  EXPECT_EQ(requested(t0), "already_processing");
  EXPECT_EQ(db().job_stats().queued, 1U);
  EXPECT_EQ(db().job_stats().oldest_available, t0);
  const auto job = db().claim_job(t0, 30s, "t");
  EXPECT_EQ(db().job_stats().queued, 0U);
  EXPECT_EQ(db().job_stats().running, 1U);
  EXPECT_FALSE(db().job_stats().oldest_available) << "a running job is not waiting";
  ASSERT_TRUE(db().complete_job(*job, result_at(t0 + 1s)));
  EXPECT_EQ(requested(t0 + 2s), "completed");
  EXPECT_EQ(db().job_stats().queued + db().job_stats().running, 0U);
}

TEST_P(lease_protocol, cancel_takes_the_job_from_its_worker) {
  ASSERT_TRUE(request(t0).has_value());
  const auto job = db().claim_job(t0, 30s, "token-a");
  const auto cancelled = db().cancel_processing(doc_id_, user_, {"cancelled", "by owner", true}, t0 + 1s);
  ASSERT_TRUE(cancelled.has_value());
  EXPECT_EQ(cancelled->job_id, job->job_id);
  EXPECT_EQ(cancelled->document.status, core::status::failed);
  EXPECT_FALSE(db().lease_held(*job));
  EXPECT_FALSE(db().complete_job(*job, result_at(t0 + 2s)));
  EXPECT_EQ(status(), core::status::failed);
  const auto again = db().cancel_processing(doc_id_, user_, {"cancelled", "", true}, t0 + 3s);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, core::errc::not_processing);
  EXPECT_EQ(again.error().document_status, core::status::failed);
  EXPECT_EQ(requested(t0 + 4s), "accepted") << "the cancelled job no longer counts as live";
}

TEST_P(lease_protocol, events_number_every_transition) {
  ASSERT_TRUE(request(t0).has_value());
  const auto job = db().claim_job(t0, 30s, "t");
  ASSERT_TRUE(db().complete_job(*job, result_at(t0 + 1s)));
  const auto events = db().events_after(doc_id_, 0);
  ASSERT_EQ(events.size(), 3U);
  for (std::size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].seq, static_cast<std::int64_t>(i + 1));
  EXPECT_EQ(events[0].status, core::status::uploaded);
  EXPECT_EQ(events[0].at, t0);
  EXPECT_EQ(events[1].status, core::status::processing);
  EXPECT_EQ(events[2].status, core::status::completed);
  EXPECT_EQ(events[2].at, t0 + 1s);
  EXPECT_FALSE(events[2].error);
  EXPECT_EQ(db().events_after(doc_id_, 2).size(), 1U);
  EXPECT_TRUE(db().events_after(doc_id_, 3).empty());
}

TEST_P(lease_protocol, progress_is_an_event_and_the_documents_stage_until_its_status_changes) {
  ASSERT_TRUE(request(t0).has_value());
  EXPECT_FALSE(db().find_document(doc_id_, std::nullopt)->stage) << "no stage before a worker reports one";
  const auto job = db().claim_job(t0, 30s, "t");
  const auto feed = db().documents_with_events_since(-1, 100);
  ASSERT_TRUE(db().report_progress(*job, {"verify", std::nullopt, std::nullopt}, t0 + 1s));
  ASSERT_TRUE(db().report_progress(*job, {"ocr", 2, 5}, t0 + 2s));
  EXPECT_EQ(db().find_document(doc_id_, std::nullopt)->stage, "ocr");
  const auto woken = db().documents_with_events_since(feed.next, 100).ids;
  EXPECT_TRUE(std::count(woken.begin(), woken.end(), doc_id_) >= 1) << "progress wakes the streams";
  const auto events = db().events_after(doc_id_, 2);
  ASSERT_EQ(events.size(), 2U);
  EXPECT_EQ(events[0].seq, 3);
  EXPECT_EQ(events[0].status, core::status::processing);
  EXPECT_EQ(events[0].progress, (core::progress{"verify", std::nullopt, std::nullopt}));
  EXPECT_EQ(events[1].progress, (core::progress{"ocr", 2U, 5U}));
  EXPECT_EQ(events[1].at, t0 + 2s);
  EXPECT_FALSE(db().events_after(doc_id_, 0)[1].progress) << "a status event has none";
  ASSERT_TRUE(db().complete_job(*job, result_at(t0 + 3s)));
  const auto done = db().find_document(doc_id_, std::nullopt);
  EXPECT_FALSE(done->stage) << "a status change clears the stage";
  const auto last = db().events_after(doc_id_, 4);
  ASSERT_EQ(last.size(), 1U);
  EXPECT_EQ(last[0].seq, 5) << "status and progress events share one numbering";
  EXPECT_EQ(last[0].status, core::status::completed);
  EXPECT_FALSE(last[0].progress);
}

TEST_P(lease_protocol, only_the_lease_holder_reports_progress) {
  ASSERT_TRUE(request(t0).has_value());
  const auto stale = db().claim_job(t0, 30s, "token-a");
  const auto current = db().claim_job(t0 + 31s, 30s, "token-b");
  EXPECT_FALSE(db().report_progress(*stale, {"extract", std::nullopt, std::nullopt}, t0 + 32s));
  EXPECT_TRUE(db().report_progress(*current, {"ocr", 1, 3}, t0 + 33s));
  ASSERT_TRUE(db().cancel_processing(doc_id_, user_, {"cancelled", "by owner", true}, t0 + 34s).has_value());
  EXPECT_FALSE(db().report_progress(*current, {"ocr", 2, 3}, t0 + 35s)) << "cancelled";
  const auto events = db().events_after(doc_id_, 0);
  ASSERT_EQ(events.size(), 4U) << "UPLOADED, PROCESSING, one progress, FAILED";
  EXPECT_EQ(events[2].progress, (core::progress{"ocr", 1U, 3U}));
  EXPECT_EQ(events[3].status, core::status::failed);
  EXPECT_FALSE(db().find_document(doc_id_, std::nullopt)->stage);
}

TEST_P(lease_protocol, a_retry_clears_the_stage) {
  ASSERT_TRUE(request(t0).has_value());
  const auto job = db().claim_job(t0, 30s, "token-a");
  ASSERT_TRUE(db().report_progress(*job, {"extract", std::nullopt, std::nullopt}, t0 + 1s));
  ASSERT_EQ(db().fail_job(*job, t0 + 2s, {"extractor_crashed", "boom", true}, t0 + 10s),
            store::failure_outcome::retry_scheduled);
  const auto doc = db().find_document(doc_id_, std::nullopt);
  EXPECT_EQ(doc->status, core::status::processing);
  EXPECT_FALSE(doc->stage) << "queued again, no stage runs";
}

TEST_P(lease_protocol, the_change_feed_reports_documents_with_new_events) {
  const auto start = db().documents_with_events_since(-1, 100);
  EXPECT_TRUE(start.ids.empty()) << "a negative position means from now";
  const auto nothing = db().documents_with_events_since(start.next, 100);
  EXPECT_TRUE(nothing.ids.empty());
  ASSERT_TRUE(request(t0).has_value());
  const auto other = add_document(user_);
  const auto changed = db().documents_with_events_since(nothing.next, 100);
  EXPECT_TRUE(std::count(changed.ids.begin(), changed.ids.end(), doc_id_) >= 1);
  EXPECT_TRUE(std::count(changed.ids.begin(), changed.ids.end(), other.id) >= 1);
  EXPECT_TRUE(db().documents_with_events_since(changed.next, 100).ids.empty()) << "reported once";
}

TEST_P(lease_protocol, the_change_feed_pages_through_many_changes) {
  const auto start = db().documents_with_events_since(-1, 100);
  std::set<std::string> made;
  for (int i = 0; i < 12; ++i) made.insert(add_document(user_).id);
  std::set<std::string> seen;
  auto position = start.next;
  for (int call = 0; call < 20; ++call) {
    const auto page = db().documents_with_events_since(position, 5);
    EXPECT_LE(page.ids.size(), 5U);
    seen.insert(page.ids.begin(), page.ids.end());
    position = page.next;
    if (page.ids.empty()) break;
  }
  EXPECT_EQ(seen, made);
}

TEST_P(lease_protocol, a_result_is_read_back_without_its_text_and_the_text_in_ranges) {
  ASSERT_TRUE(request(t0).has_value());
  const auto job = db().claim_job(t0, 30s, "t");
  // 600 two-byte characters: the preview is 500 characters, 1,000 bytes.
  std::string text;
  for (int i = 0; i < 600; ++i) text += "\xC3\xA9";
  text += std::string("\0tail", 5);
  auto r = result_at(t0 + 1s, text);
  r.summary_json = R"({"pages":3,"language":"en","keywords":[{"term":"x","count":2}],"ml":null})";
  ASSERT_TRUE(db().complete_job(*job, r));
  const auto found = db().find_result(doc_id_);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->pipeline_version, "test/1");
  EXPECT_EQ(found->completed_at, t0 + 1s);
  EXPECT_EQ(found->started_at, t0);
  EXPECT_EQ(found->attempts, 1U);
  EXPECT_TRUE(found->text.empty());
  EXPECT_EQ(found->text_preview, text.substr(0, 1000));
  EXPECT_EQ(found->text_bytes, text.size());
  EXPECT_EQ(boost::json::parse(found->summary_json), boost::json::parse(r.summary_json));

  EXPECT_EQ(db().read_result_text(doc_id_, t0 + 1s, 0, 4), text.substr(0, 4));
  EXPECT_EQ(db().read_result_text(doc_id_, t0 + 1s, 1199, 100), text.substr(1199));
  EXPECT_EQ(db().read_result_text(doc_id_, t0 + 1s, text.size(), 100), "");
  EXPECT_EQ(db().read_result_text(doc_id_, t0 + 1s, 1ULL << 40, 100), "");
  EXPECT_FALSE(db().read_result_text(doc_id_, t0 + 2s, 0, 4)) << "another completion's text";
  EXPECT_FALSE(db().read_result_text(core::new_uuid_v7(), t0 + 1s, 0, 4));
}

TEST_P(lease_protocol, a_summary_with_a_nul_character_is_stored) {
  ASSERT_TRUE(request(t0).has_value());
  const auto job = db().claim_job(t0, 30s, "t");
  auto r = result_at(t0 + 1s);
  r.summary_json = R"({"metadata":{"title":"a\u0000b"}})";
  ASSERT_TRUE(db().complete_job(*job, r));
  const auto title = boost::json::parse(db().find_result(doc_id_)->summary_json).at("metadata").at("title");
  EXPECT_TRUE(title.as_string() == std::string_view("a\0b", 3) || title.as_string() ==
                                                                      "a\xEF\xBF\xBD"
                                                                      "b")
      << title;
}

// -----------------------------------------------------------------------------------------------------------
// Idempotency keys

TEST_P(store_contract, an_upload_answer_is_stored_with_its_document_under_its_claim_only) {
  const auto u = add_user("alice").id;
  const auto first = db().begin_idempotent(u, "k", "print", t0, 24h, 5min);
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->outcome, store::idempotency_claim::kind::fresh);
  ASSERT_FALSE(first->token.empty());
  // The first request stalls; a retry after the claim timeout takes the key over.
  EXPECT_EQ(db().begin_idempotent(u, "k", "print", t0 + 1min, 24h, 5min).error().code,
            core::errc::idempotency_key_in_flight);
  EXPECT_EQ(db().begin_idempotent(u, "k", "other print", t0 + 1min, 24h, 5min).error().code,
            core::errc::idempotency_key_reused);
  const auto second = db().begin_idempotent(u, "k", "print", t0 + 6min, 24h, 5min);
  ASSERT_TRUE(second.has_value());
  ASSERT_EQ(second->outcome, store::idempotency_claim::kind::fresh);
  ASSERT_NE(second->token, first->token);

  // The stalled request can neither insert its document nor release the key.
  const auto stale_doc = sample_document(u);
  const store::idempotent_answer stale{u, "k", first->token, 201, "{\"stale\":1}", "application/json", ""};
  EXPECT_EQ(db().insert_document(stale_doc, &stale).error().code, core::errc::idempotency_key_in_flight);
  EXPECT_FALSE(db().find_document(stale_doc.id, std::nullopt)) << "the document was inserted anyway";
  db().abandon_idempotent(u, "k", first->token);
  EXPECT_EQ(db().begin_idempotent(u, "k", "print", t0 + 6min, 24h, 5min).error().code,
            core::errc::idempotency_key_in_flight);

  // The claim's holder stores document and answer together; retries replay it.
  const auto doc = sample_document(u);
  const store::idempotent_answer answer{u, "k", second->token, 201, "{\"id\":1}", "application/json", "/d"};
  ASSERT_TRUE(db().insert_document(doc, &answer).has_value());
  EXPECT_TRUE(db().find_document(doc.id, std::nullopt));
  const auto replay = db().begin_idempotent(u, "k", "print", t0 + 7min, 24h, 5min);
  ASSERT_TRUE(replay.has_value());
  EXPECT_EQ(replay->outcome, store::idempotency_claim::kind::replay);
  EXPECT_EQ(replay->status, 201);
  EXPECT_EQ(replay->body, "{\"id\":1}");
  EXPECT_EQ(replay->content_type, "application/json");
  EXPECT_EQ(replay->location, "/d");
}

TEST_P(store_contract, a_finished_key_replays_an_abandoned_one_runs_again_an_expired_one_is_forgotten) {
  const auto u = add_user("alice").id;
  const auto other = add_user("bob").id;
  const auto a = db().begin_idempotent(u, "a", "p", t0, 1h, 5min);
  ASSERT_TRUE(a.has_value());
  db().finish_idempotent({u, "a", a->token, 200, "done", "text/plain", ""});
  db().finish_idempotent({u, "a", "not-the-claim", 500, "overwritten", "text/plain", ""});
  const auto replay = db().begin_idempotent(u, "a", "p", t0 + 1min, 1h, 5min);
  ASSERT_TRUE(replay.has_value());
  EXPECT_EQ(replay->outcome, store::idempotency_claim::kind::replay);
  EXPECT_EQ(replay->body, "done");
  EXPECT_EQ(replay->location, "");
  EXPECT_TRUE(db().begin_idempotent(other, "a", "p", t0 + 1min, 1h, 5min).has_value()) << "keys are per user";

  const auto b = db().begin_idempotent(u, "b", "p", t0, 1h, 5min);
  db().abandon_idempotent(u, "b", b->token);
  const auto rerun = db().begin_idempotent(u, "b", "p", t0 + 1s, 1h, 5min);
  ASSERT_TRUE(rerun.has_value());
  EXPECT_EQ(rerun->outcome, store::idempotency_claim::kind::fresh);

  const auto later = db().begin_idempotent(u, "a", "another print", t0 + 1h, 1h, 5min);
  ASSERT_TRUE(later.has_value()) << "expired: the key is free for anything";
  EXPECT_EQ(later->outcome, store::idempotency_claim::kind::fresh);
  EXPECT_EQ(db().purge_idempotency_keys(t0 + 1h + 30s), 1U) << "only 'b' (until t0 + 1 h + 1 s)";
  EXPECT_EQ(db().purge_idempotency_keys(t0 + 3h), 2U);
}

// -----------------------------------------------------------------------------------------------------------
// Fair claims: owners take turns, whatever each one queued

namespace {

class fair_claims : public store_contract {
protected:
  // Queues `n` jobs of `owner`, the i-th available at `at` + i ms; returns
  // their documents' ids.
  std::vector<std::string> queue(const std::string& owner, int n, time_point at) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      const auto when = at + std::chrono::milliseconds(i);
      const auto d = add_document(owner, when);
      EXPECT_TRUE(db().request_processing(d.id, owner, core::new_uuid_v7(), when, 1'000'000).has_value());
      ids.push_back(d.id);
    }
    return ids;
  }

  // The owner of each job claimed, up to `n` claims at `at`.
  std::vector<std::string> claim_owners(int n, time_point at, unsigned max_running = 0) {
    std::vector<std::string> owners;
    for (int i = 0; i < n; ++i) {
      const auto job = db().claim_job(at, 30s, "lease-" + std::to_string(i), max_running);
      if (!job) break;
      owners.push_back(job->document.owner_id);
    }
    return owners;
  }

  static store::stored_result result_at(time_point at) { return {"test/1", t0, at, 1, "{}", "text", {}, 0}; }

  // As queue(), in one transaction: for a long queue.
  void bulk_queue(const std::string& owner, int n, time_point at) {
    if (GetParam() == engine::sqlite) {
      test::bulk_queue_sqlite(location_, owner, n, at, 1ms);
    } else {
      test::bulk_queue_postgres(location_, owner, n, at, 1ms);
    }
  }
};

}  // namespace

// With the oldest-first claim of old, bob's job waited for all 10,000 of
// alice's.
TEST_P(fair_claims, one_job_is_claimed_within_two_claims_of_another_owners_burst) {
  const auto alice = add_user("alice").id;
  const auto bob = add_user("bob").id;
  bulk_queue(alice, 10'000, t0);
  queue(bob, 1, t0 + 20s);
  const auto owners = claim_owners(2, t0 + 30s);
  ASSERT_EQ(owners.size(), 2U);
  EXPECT_EQ(std::count(owners.begin(), owners.end(), bob), 1) << "bob's one job within 2 claims";
  EXPECT_EQ(db().job_stats().queued, 9'999U);
}

TEST_P(fair_claims, three_owners_take_turns) {
  const std::array owners{add_user("alice").id, add_user("bob").id, add_user("carol").id};
  for (std::size_t i = 0; i < owners.size(); ++i) queue(owners[i], 4, t0 + std::chrono::seconds(i));
  const auto claimed = claim_owners(12, t0 + 10s);
  ASSERT_EQ(claimed.size(), 12U);
  for (std::size_t round = 0; round < 4; ++round) {
    const std::set<std::string> in_round(claimed.begin() + static_cast<std::ptrdiff_t>(round * 3),
                                         claimed.begin() + static_cast<std::ptrdiff_t>(round * 3 + 3));
    EXPECT_EQ(in_round.size(), 3U) << "each owner once in claims " << round * 3 << " to " << round * 3 + 2;
  }
}

TEST_P(fair_claims, an_owner_is_served_its_oldest_job_first) {
  const auto alice = add_user("alice").id;
  const auto docs = queue(alice, 3, t0);
  for (const auto& id : docs) {
    const auto job = db().claim_job(t0 + 1s, 30s, "t");
    ASSERT_TRUE(job);
    EXPECT_EQ(job->document.id, id);
  }
}

TEST_P(fair_claims, a_retry_waiting_for_its_time_neither_blocks_its_owner_nor_is_claimed_early) {
  const auto alice = add_user("alice").id;
  const auto bob = add_user("bob").id;
  queue(alice, 1, t0);
  const auto first = db().claim_job(t0, 30s, "a");
  ASSERT_TRUE(first);
  ASSERT_EQ(db().fail_job(*first, t0 + 1s, {"extractor_crashed", "boom", true}, t0 + 60s),
            store::failure_outcome::retry_scheduled);
  // alice's oldest queued job now waits for t0 + 60 s; her newer one does not.
  const auto alices_next = queue(alice, 1, t0 + 2s);
  queue(bob, 1, t0 + 3s);
  // Leases that outlast the test: nothing lapses to be taken over.
  const auto a = db().claim_job(t0 + 4s, 1h, "b");
  const auto b = db().claim_job(t0 + 4s, 1h, "c");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(std::set<std::string>({a->document.owner_id, b->document.owner_id}),
            std::set<std::string>({alice, bob}));
  EXPECT_EQ((a->document.owner_id == alice ? a : b)->document.id, alices_next[0]);
  EXPECT_FALSE(db().claim_job(t0 + 59s, 30s, "d")) << "the retry is not claimed early";
  const auto retried = db().claim_job(t0 + 60s, 30s, "e");
  ASSERT_TRUE(retried);
  EXPECT_EQ(retried->job_id, first->job_id);
}

TEST_P(fair_claims, a_lapsed_lease_is_taken_over_before_any_owners_turn) {
  const auto alice = add_user("alice").id;
  const auto bob = add_user("bob").id;
  queue(alice, 2, t0);
  const auto held = db().claim_job(t0, 30s, "a");
  ASSERT_TRUE(held);
  queue(bob, 1, t0 + 1s);
  const auto next = db().claim_job(t0 + 31s, 30s, "b", 1);
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->taken_over);
  EXPECT_EQ(next->job_id, held->job_id);
}

TEST_P(fair_claims, the_running_limit_holds_per_owner_until_a_job_ends) {
  const auto alice = add_user("alice").id;
  const auto bob = add_user("bob").id;
  const auto alices = queue(alice, 6, t0);
  queue(bob, 3, t0 + 1s);
  constexpr unsigned limit = 2;
  const auto claim = [&](time_point at) { return db().claim_job(at, 30s, core::random_hex(8), limit); };
  std::vector<store::claimed_job> running;
  while (auto job = claim(t0 + 2s)) running.push_back(std::move(*job));
  ASSERT_EQ(running.size(), 4U) << "two of alice's and two of bob's";
  EXPECT_EQ(std::count_if(running.begin(), running.end(),
                          [&](const auto& j) { return j.document.owner_id == alice; }),
            2);
  EXPECT_EQ(db().job_stats().queued, 5U);

  // Each way a job ends makes room for exactly one more of that owner's.
  const auto alices_running = [&] {
    std::vector<store::claimed_job> out;
    for (const auto& j : running) {
      if (j.document.owner_id == alice && db().lease_held(j)) out.push_back(j);
    }
    return out;
  };
  const auto one_more_of_alices = [&](time_point at) {
    const auto job = claim(at);
    EXPECT_TRUE(job);
    if (!job) return;
    EXPECT_EQ(job->document.owner_id, alice);
    EXPECT_FALSE(claim(at)) << "alice is at her limit again, bob at his";
    running.push_back(*job);
  };
  ASSERT_TRUE(db().complete_job(alices_running()[0], result_at(t0 + 3s)));
  one_more_of_alices(t0 + 3s);
  ASSERT_EQ(db().fail_job(alices_running()[0], t0 + 4s, {"unreadable_document", "x", false}, std::nullopt),
            store::failure_outcome::failed);
  one_more_of_alices(t0 + 4s);
  ASSERT_TRUE(
      db().cancel_processing(alices_running()[0].document.id, alice, {"cancelled", "by owner", true}, t0 + 5s)
          .has_value());
  one_more_of_alices(t0 + 5s);
  ASSERT_EQ(db().fail_job(alices_running()[0], t0 + 6s, {"extractor_crashed", "boom", true}, t0 + 7s),
            store::failure_outcome::retry_scheduled);
  one_more_of_alices(t0 + 6s);
  EXPECT_EQ(alices_running().size(), limit);
  EXPECT_FALSE(claim(t0 + 8s)) << "alice's retry waits for room too";
  EXPECT_TRUE(db().claim_job(t0 + 8s, 30s, "no-limit")) << "without a limit it is claimed";
}

TEST_P(fair_claims, a_job_taken_over_counts_against_the_limit) {
  const auto alice = add_user("alice").id;
  queue(alice, 3, t0);
  ASSERT_TRUE(db().claim_job(t0, 30s, "a", 1));
  EXPECT_FALSE(db().claim_job(t0 + 1s, 30s, "b", 1));
  // The lapsed lease is taken over whatever the limit; then it counts again.
  const auto taken = db().claim_job(t0 + 31s, 30s, "c", 1);
  ASSERT_TRUE(taken);
  EXPECT_TRUE(taken->taken_over);
  EXPECT_FALSE(db().claim_job(t0 + 31s, 30s, "d", 1));
}

// -----------------------------------------------------------------------------------------------------------
// Concurrency: callers that share nothing but the database, each with a
// store of its own (as separate processes would be).

namespace {

class store_concurrency : public store_contract {
protected:
  static constexpr int callers = 16;
  static constexpr int rounds = 8;  // the races are narrow: give them several chances

  void SetUp() override {
    store_contract::SetUp();
    for (int i = 0; i < callers; ++i) stores_.push_back(open(1));
  }
  void TearDown() override {
    stores_.clear();
    store_contract::TearDown();
  }

  std::vector<std::unique_ptr<store::database>> stores_;
};

}  // namespace

TEST_P(store_concurrency, concurrent_process_requests_make_exactly_one_job) {
  const auto alice = add_user("alice").id;
  for (int round = 0; round < rounds; ++round) {
    const auto doc = add_document(alice);
    std::vector<std::string> outcomes(callers);
    on_threads(callers, [&](int i) {
      const auto r = stores_[i]->request_processing(doc.id, alice, core::new_uuid_v7(), t0, 1000);
      outcomes[i] = r ? (r->outcome == store::process_outcome::accepted ? "accepted" : "already_processing")
                      : std::string(core::name(r.error().code));
    });
    EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "accepted"), 1) << "round " << round;
    EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "already_processing"), callers - 1)
        << "round " << round;
    const auto events = db().events_after(doc.id, 0);
    EXPECT_EQ(events.size(), 2U) << "UPLOADED, PROCESSING; round " << round;
  }
  EXPECT_EQ(db().job_stats().queued, static_cast<std::uint64_t>(rounds));
}

TEST_P(store_concurrency, concurrent_refreshes_of_one_token_rotate_it_once) {
  const auto alice = add_user("alice").id;
  for (int round = 0; round < rounds; ++round) {
    const auto hash = "token-" + std::to_string(round);
    db().start_refresh_family(grant(alice, hash, t0));
    std::vector<core::rotation_decision> decisions(callers);
    on_threads(callers, [&](int i) {
      decisions[i] =
          stores_[i]
              ->rotate_refresh_token(hash, grant("", hash + "-next-" + std::to_string(i), t0 + 1s), 0ms)
              .decision;
    });
    EXPECT_EQ(std::count(decisions.begin(), decisions.end(), core::rotation_decision::rotate), 1)
        << "round " << round;
    // The first to come after the rotation is reuse and revokes the family;
    // the rest find it revoked.
    EXPECT_EQ(std::count(decisions.begin(), decisions.end(), core::rotation_decision::reuse_detected), 1)
        << "round " << round;
    EXPECT_EQ(std::count(decisions.begin(), decisions.end(), core::rotation_decision::reject), callers - 2)
        << "round " << round;
  }
}

TEST_P(store_concurrency, concurrent_claims_of_one_idempotency_key_give_one_fresh) {
  const auto alice = add_user("alice").id;
  for (int round = 0; round < rounds; ++round) {
    const auto key = "key-" + std::to_string(round);
    std::vector<std::string> outcomes(callers);
    on_threads(callers, [&](int i) {
      const auto r = stores_[i]->begin_idempotent(alice, key, "print", t0, 24h, 5min);
      outcomes[i] = r ? (r->outcome == store::idempotency_claim::kind::fresh ? "fresh" : "replay")
                      : std::string(core::name(r.error().code));
    });
    EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "fresh"), 1) << "round " << round;
    EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "idempotency_key_in_flight"), callers - 1)
        << "round " << round;
  }
}

// Several owners, so that claimers also meet on the owners' turns.
TEST_P(store_concurrency, concurrent_claimers_take_each_job_once) {
  const std::array owners{add_user("alice").id, add_user("bob").id, add_user("carol").id};
  constexpr int jobs = 24;
  for (int i = 0; i < jobs; ++i) {
    const auto& owner = owners[static_cast<std::size_t>(i) % owners.size()];
    const auto d = add_document(owner);
    ASSERT_TRUE(
        db().request_processing(d.id, owner, core::new_uuid_v7(), t0 + std::chrono::milliseconds(i), 1000)
            .has_value());
  }
  std::vector<std::vector<std::string>> taken(callers);
  on_threads(callers, [&](int i) {
    while (const auto job = stores_[i]->claim_job(t0 + 1s, 30s, "lease-" + std::to_string(i))) {
      taken[i].push_back(job->job_id);
    }
  });
  std::multiset<std::string> all;
  for (const auto& t : taken) all.insert(t.begin(), t.end());
  EXPECT_EQ(all.size(), static_cast<std::size_t>(jobs));
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), all.size()) << "a job was claimed twice";
  EXPECT_EQ(db().job_stats().running, static_cast<std::uint64_t>(jobs));
}

// Of concurrent claims with a limit, at most the limit's worth of one
// owner's jobs are running, whoever claims.
TEST_P(store_concurrency, concurrent_claims_never_pass_the_running_limit) {
  constexpr unsigned limit = 3;
  const auto alice = add_user("alice").id;
  const auto bob = add_user("bob").id;
  for (int i = 0; i < 30; ++i) {
    for (const auto& owner : {alice, bob}) {
      const auto d = add_document(owner);
      ASSERT_TRUE(db().request_processing(d.id, owner, core::new_uuid_v7(), t0, 1000).has_value());
    }
  }
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::vector<store::claimed_job>> taken(callers);
    on_threads(callers, [&](int i) {
      // A claim may find nothing while another holds the owner it would take.
      for (int tries = 0; tries < 4; ++tries) {
        if (auto job = stores_[i]->claim_job(t0 + 1s, 30s, "lease-" + std::to_string(i), limit)) {
          taken[i].push_back(std::move(*job));
        }
      }
    });
    std::map<std::string, unsigned> per_owner;
    for (const auto& t : taken) {
      for (const auto& j : t) ++per_owner[j.document.owner_id];
    }
    EXPECT_LE(per_owner[alice], limit) << "round " << round;
    EXPECT_LE(per_owner[bob], limit) << "round " << round;
    EXPECT_GE(per_owner[alice] + per_owner[bob], 1U) << "round " << round;
    // Done, each: room for the next round.
    for (const auto& t : taken) {
      for (const auto& j : t) {
        ASSERT_TRUE(db().complete_job(j, {"test/1", t0, t0 + 1s, 1, "{}", "text", {}, 0}));
      }
    }
  }
}

// A delete that read UPLOADED before a request moved the document to
// PROCESSING would delete a document with a live job.
TEST_P(store_concurrency, a_delete_and_a_process_request_never_both_succeed) {
  const auto alice = add_user("alice").id;
  for (int round = 0; round < rounds * 2; ++round) {
    const auto doc = add_document(alice);
    bool accepted = false;
    bool deleted = false;
    on_threads(2, [&](int i) {
      if (i == 0) {
        const auto r = stores_[0]->request_processing(doc.id, alice, core::new_uuid_v7(), t0, 1000);
        accepted = r && r->outcome == store::process_outcome::accepted;
      } else {
        deleted = stores_[1]->delete_document(doc.id, alice).has_value();
      }
    });
    EXPECT_TRUE(accepted != deleted) << "round " << round << ": accepted " << accepted << ", deleted "
                                     << deleted;
  }
}

// Of a completion and a cancel at once, exactly one wins, and the document
// says which.
TEST_P(store_concurrency, a_completion_and_a_cancel_never_both_succeed) {
  const auto alice = add_user("alice").id;
  for (int round = 0; round < rounds * 2; ++round) {
    const auto doc = add_document(alice);
    ASSERT_TRUE(db().request_processing(doc.id, alice, core::new_uuid_v7(), t0, 1000).has_value());
    const auto job = db().claim_job(t0, 30s, "lease");
    ASSERT_TRUE(job);
    bool completed = false;
    bool cancelled = false;
    on_threads(2, [&](int i) {
      if (i == 0) {
        completed = stores_[0]->complete_job(*job, {"test/1", t0, t0 + 1s, 1, "{}", "text", {}, 0});
      } else {
        cancelled =
            stores_[1]->cancel_processing(doc.id, alice, {"cancelled", "", true}, t0 + 1s).has_value();
      }
    });
    EXPECT_TRUE(completed != cancelled) << "round " << round;
    const auto after = db().find_document(doc.id, std::nullopt);
    EXPECT_EQ(after->status, completed ? core::status::completed : core::status::failed) << "round " << round;
    EXPECT_EQ(db().find_result(doc.id).has_value(), completed) << "round " << round;
    EXPECT_EQ(db().events_after(doc.id, 0).size(), 3U) << "round " << round;
  }
}

// -----------------------------------------------------------------------------------------------------------
// Attempt throttles: the login and registration throttles of SPEC §2
// (api/throttle), on each engine. What they answered when they counted in
// memory they answer with the counts in the database.

namespace {

class manual_clock : public docflow::core::clock {
public:
  explicit manual_clock(time_point start) : now_(start) {}
  time_point now() const override { return now_; }
  void advance(std::chrono::milliseconds d) { now_ += d; }

private:
  time_point now_;
};

using api::login_throttle;
using api::registration_throttle;

class ThrottleTest : public store_contract {
protected:
  static constexpr unsigned per_user = 5;
  static constexpr unsigned per_address = 20;
  static constexpr std::chrono::seconds window{15 * 60};

  void SetUp() override {
    store_contract::SetUp();
    throttle.emplace(db(), per_user, per_address, window, clock);
  }

  manual_clock clock{t0};
  std::optional<login_throttle> throttle;

  // `n` failures for `user`, each from its own address so that only the
  // username limit is in play, one second apart.
  void fail_user(const std::string& user, unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      (void)throttle->begin(user, user + "-addr-" + std::to_string(i) + "-" + std::to_string(counter_++));
      clock.advance(1s);
    }
  }

  std::optional<std::chrono::seconds> check(const std::string& user,
                                            const std::string& address = "192.0.2.1") {
    return throttle->retry_after(user, address);
  }

private:
  unsigned counter_ = 0;
};

}  // namespace

TEST_P(ThrottleTest, NothingRecordedMeansAllowed) {
  EXPECT_EQ(check("alice"), std::nullopt);
  EXPECT_EQ(check(""), std::nullopt);
}

TEST_P(ThrottleTest, PerUsernameLimitThenRetryAfterIsTheRemainingWindow) {
  fail_user("alice", per_user - 1);  // failures at t0 .. t0+3s
  EXPECT_EQ(check("alice"), std::nullopt) << "4 failures are under the limit of 5";
  fail_user("alice", 1);  // the 5th, at t0+4s; now t0+5s
  const auto wait = check("alice");
  ASSERT_TRUE(wait.has_value());
  // The oldest failure (t0) leaves the window at t0+900s.
  EXPECT_EQ(*wait, window - 5s);
  // From any address, and only for that username.
  EXPECT_TRUE(check("alice", "198.51.100.7").has_value());
  EXPECT_EQ(check("bob"), std::nullopt);
  clock.advance(100s);
  EXPECT_EQ(check("alice"), window - 105s);
}

TEST_P(ThrottleTest, RetryAfterIsRoundedUpAndAtLeastOneSecond) {
  fail_user("alice", per_user);        // oldest at t0
  clock.advance(window - 5s - 300ms);  // now = t0 + 900s - 300ms
  EXPECT_EQ(check("alice"), 1s);
  for (unsigned i = 0; i < per_user; ++i) {
    (void)throttle->begin("carol", "carol-" + std::to_string(i));  // all five at one instant
  }
  clock.advance(10s + 500ms);
  const auto wait = check("carol");
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(*wait, 890s) << "889.5 s remaining rounds up";
}

TEST_P(ThrottleTest, WindowSlidesWhenTheOldestFailureLeaves) {
  fail_user("alice", per_user);  // failures at t0 .. t0+4s, now t0+5s
  ASSERT_TRUE(check("alice"));
  clock.advance(window - 5s - 1ms);  // now t0+900s-1ms: the oldest is still in
  EXPECT_TRUE(check("alice"));
  clock.advance(1ms);  // t0+900s: the failure at t0 has left the window
  EXPECT_EQ(check("alice"), std::nullopt);
  // One more failure fills the window again, until the one at t0+1s leaves.
  (void)throttle->begin("alice", "203.0.113.9");
  EXPECT_EQ(check("alice"), 1s);
  clock.advance(1s);
  EXPECT_EQ(check("alice"), std::nullopt);
  // Long after, everything has left.
  clock.advance(window);
  fail_user("alice", per_user - 1);
  EXPECT_EQ(check("alice"), std::nullopt);
}

TEST_P(ThrottleTest, PerAddressLimitIsIndependentOfUsernames) {
  const std::string address = "192.0.2.50";
  for (unsigned i = 0; i < per_address - 1; ++i) {
    (void)throttle->begin("user-" + std::to_string(i), address);
  }
  EXPECT_EQ(check("someone-new", address), std::nullopt) << "19 failures from the address";
  (void)throttle->begin("user-last", address);
  const auto wait = check("someone-new", address);
  ASSERT_TRUE(wait.has_value()) << "the 20 failures came from one address, whatever the usernames";
  EXPECT_EQ(*wait, window);
  // The same usernames from another address are fine: each has one failure.
  EXPECT_EQ(check("user-0", "192.0.2.51"), std::nullopt);
  EXPECT_EQ(check("someone-new", "192.0.2.51"), std::nullopt);
}

TEST_P(ThrottleTest, WhenBothLimitsApplyTheLongerWaitWins) {
  const std::string crowded = "192.0.2.60";
  const std::string later = "192.0.2.61";
  for (unsigned i = 0; i < per_address; ++i) {
    (void)throttle->begin("filler-" + std::to_string(i), crowded);  // full, oldest at t0
  }
  clock.advance(100s);
  fail_user("alice", per_user);  // alice full, oldest at t0+100s; now t0+105s
  for (unsigned i = 0; i < per_address; ++i) {
    (void)throttle->begin("other-" + std::to_string(i), later);  // full, oldest at t0+105s
  }
  EXPECT_EQ(check("alice", crowded), window - 5s) << "alice's window ends after the address's";
  EXPECT_EQ(check("alice", later), window) << "the address's window ends after alice's";
}

TEST_P(ThrottleTest, UnknownUsernamesAreCountedTheSame) {
  // The throttle never sees whether a user exists: any key counts.
  fail_user("no-such-user-anywhere", per_user);
  EXPECT_TRUE(check("no-such-user-anywhere"));
}

TEST_P(ThrottleTest, SucceededResetsTheUsernameButNotTheAddress) {
  const std::string address = "192.0.2.70";
  for (unsigned i = 0; i < per_user - 1; ++i) {
    (void)throttle->begin("alice", address);
  }
  ASSERT_EQ(throttle->begin("alice", address), std::nullopt);  // the attempt that succeeds
  throttle->succeeded("alice", address);
  for (unsigned i = 0; i < per_user - 1; ++i) {
    (void)throttle->begin("alice", "other-" + std::to_string(i));
  }
  EXPECT_EQ(check("alice", "192.0.2.99"), std::nullopt) << "only 4 failures since the success";
  (void)throttle->begin("alice", "one-more");
  EXPECT_TRUE(check("alice", "192.0.2.99"));

  // The address keeps its count: 4 failures above, 16 more fill it.
  for (unsigned i = 0; i < per_address - (per_user - 1); ++i) {
    (void)throttle->begin("x" + std::to_string(i), address);
  }
  ASSERT_EQ(throttle->begin("someone", "192.0.2.71"), std::nullopt);
  throttle->succeeded("someone", "192.0.2.71");
  EXPECT_TRUE(check("someone", address));
}

TEST_P(ThrottleTest, SucceededForAnUnknownKeyIsHarmless) {
  throttle->succeeded("never-seen", "nowhere");
  fail_user("alice", per_user);
  throttle->succeeded("never-seen", "nowhere");
  EXPECT_TRUE(check("alice"));
}

TEST_P(ThrottleTest, ManyDistinctKeysDoNotBreakIt) {
  // Enough distinct keys to cross the internal pruning threshold several
  // times, spread over more than one window.
  for (int i = 0; i < 3000; ++i) {
    (void)throttle->begin("old-" + std::to_string(i),
                          "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250));
  }
  clock.advance(window + 1s);
  // The victim's first failure will have left the window when pruning runs,
  // the next four will not.
  (void)throttle->begin("victim", "v-first");
  clock.advance(850s);
  for (int i = 0; i < 4; ++i) {
    (void)throttle->begin("victim", "v-" + std::to_string(i));
  }
  clock.advance(60s);
  for (int i = 0; i < 3000; ++i) {
    (void)throttle->begin("new-" + std::to_string(i),
                          "10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250));
  }
  EXPECT_EQ(check("victim"), std::nullopt) << "four failures in the window";
  (void)throttle->begin("victim", "v-last");
  EXPECT_TRUE(check("victim")) << "recent failures survive pruning";
  EXPECT_EQ(check("old-0", "10.0.0.0"), std::nullopt) << "old ones have left the window";
  EXPECT_EQ(check("new-0", "10.9.9.9"), std::nullopt) << "one failure each";
}

TEST_P(ThrottleTest, AnAttemptCountsWhenItBeginsSoConcurrentGuessesSeeEachOther) {
  // 16 guesses arrive before any password check has finished: only the
  // limit's worth may go ahead.
  int allowed = 0;
  for (int i = 0; i < 16; ++i) {
    allowed += throttle->begin("alice", "198.51.100.1") ? 0 : 1;
  }
  EXPECT_EQ(allowed, static_cast<int>(per_user));
  EXPECT_TRUE(check("alice"));
}

TEST_P(ThrottleTest, RegistrationsAreLimitedPerAddress) {
  registration_throttle signups(db(), 3, 1h, clock);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(signups.begin("192.0.2.80"), std::nullopt) << i;
    clock.advance(1s);
  }
  EXPECT_EQ(signups.begin("192.0.2.80"), 1h - 3s) << "until the first leaves the hour";
  EXPECT_EQ(signups.begin("192.0.2.81"), std::nullopt) << "another address has its own count";
  EXPECT_EQ(signups.retry_after("192.0.2.80"), 1h - 3s) << "refused, it counted nothing";
  EXPECT_EQ(signups.retry_after("192.0.2.81"), std::nullopt);
  clock.advance(1h);
  EXPECT_EQ(signups.begin("192.0.2.80"), std::nullopt);
}

TEST_P(ThrottleTest, ConcurrentFailuresAreAllCounted) {
  constexpr int threads = 4;
  constexpr int per_thread = 50;
  login_throttle big(db(), threads * per_thread, 1000000, window, clock);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&big, t] {
      for (int i = 0; i < per_thread; ++i) {
        (void)big.begin("shared", "addr-" + std::to_string(t) + "-" + std::to_string(i));
        (void)big.retry_after("shared", "elsewhere");
      }
    });
  }
  for (auto& th : pool) {
    th.join();
  }
  EXPECT_TRUE(big.retry_after("shared", "elsewhere")) << "every one of the 200 failures was recorded";
}

TEST_P(ThrottleTest, UnusualUsernamesAndAddressesAreCountedToo) {
  // Whatever a client sends as a username: long, with a NUL, not UTF-8.
  const std::string odd = std::string(10000, 'x') + '\0' + "\xff\xfe";
  fail_user(odd, per_user);
  EXPECT_TRUE(check(odd));
  EXPECT_EQ(check(std::string(10000, 'x')), std::nullopt) << "a different key";
  const std::string address = "\x01 not an address";
  for (unsigned i = 0; i < per_address; ++i) {
    (void)throttle->begin("spray-" + std::to_string(i), address);
  }
  EXPECT_TRUE(check("someone", address));
}

// The store's side of it: a refused attempt counts against none of its
// keys, and keys are forgotten once every attempt has left its window.
TEST_P(store_contract, a_refused_attempt_counts_against_none_of_its_keys) {
  const std::array full{store::attempt_key{"s", "full", 1}};
  ASSERT_EQ(db().count_attempt(full, t0, 60s), std::nullopt);
  const std::array both{store::attempt_key{"s", "roomy", 2}, store::attempt_key{"s", "full", 1}};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(db().count_attempt(both, t0 + 1s, 60s), t0 + 60s) << i;
  }
  const std::array roomy{store::attempt_key{"s", "roomy", 2}};
  EXPECT_EQ(db().count_attempt(roomy, t0 + 2s, 60s), std::nullopt);
  EXPECT_EQ(db().count_attempt(roomy, t0 + 3s, 60s), std::nullopt) << "the refusals counted nothing";
  EXPECT_EQ(db().count_attempt(roomy, t0 + 4s, 60s), t0 + 62s);
  EXPECT_EQ(db().attempts_refused_until(roomy, t0 + 62s), std::nullopt);
}

TEST_P(store_contract, keys_whose_attempts_all_left_their_window_are_purged) {
  const std::array early{store::attempt_key{"s", "early", 1}};
  const std::array late{store::attempt_key{"s", "late", 2}};
  ASSERT_EQ(db().count_attempt(early, t0, 10s), std::nullopt);
  ASSERT_EQ(db().count_attempt(late, t0, 10s), std::nullopt);
  ASSERT_EQ(db().count_attempt(late, t0 + 5s, 10s), std::nullopt);
  EXPECT_EQ(db().purge_attempts(t0 + 10s), 1U) << "only early: one of late's is still in its window";
  EXPECT_EQ(db().purge_attempts(t0 + 10s), 0U);
  EXPECT_EQ(db().attempts_refused_until(late, t0 + 10s), std::nullopt);
  ASSERT_EQ(db().count_attempt(late, t0 + 10s, 10s), std::nullopt);
  EXPECT_EQ(db().attempts_refused_until(late, t0 + 10s), t0 + 15s) << "the purge kept late's live attempt";
  EXPECT_EQ(db().purge_attempts(t0 + 20s), 1U);
  db().release_attempts(std::array{store::attempt_release{"s", "gone", false}});  // unknown: ignored
  EXPECT_EQ(db().purge_attempts(t0 + 20s), 0U);
}

// Callers that share only the database (nodes) count against one limit.
TEST_P(store_concurrency, concurrent_attempts_on_one_key_count_exactly_its_limit) {
  constexpr unsigned limit = 5;
  for (int round = 0; round < rounds; ++round) {
    const auto user = "alice-" + std::to_string(round);
    const auto address = "192.0.2." + std::to_string(round);
    std::vector<int> counted(callers, 0);
    on_threads(callers, [&](int i) {
      // Half by one username from addresses of their own, half from one
      // address with usernames of their own.
      const auto own = std::to_string(i);
      const std::array keys = i % 2 == 0 ? std::array{store::attempt_key{"login_user", user, limit},
                                                      store::attempt_key{"login_address", own, 1000}}
                                         : std::array{store::attempt_key{"login_user", own, 1000},
                                                      store::attempt_key{"login_address", address, limit}};
      counted[i] = stores_[i]->count_attempt(keys, t0, 60s) ? 0 : 1;
    });
    int by_user = 0;
    int by_address = 0;
    for (int i = 0; i < callers; ++i) (i % 2 == 0 ? by_user : by_address) += counted[i];
    EXPECT_EQ(by_user, static_cast<int>(limit)) << "round " << round;
    EXPECT_EQ(by_address, static_cast<int>(limit)) << "round " << round;
  }
}

// -----------------------------------------------------------------------------------------------------------
// Maintenance: one runner at a time among every store on one database.

TEST_P(store_contract, one_store_at_a_time_holds_the_maintenance_lease) {
  const auto other = open();
  auto held = db().try_maintenance_lease();
  ASSERT_TRUE(held);
  EXPECT_FALSE(other->try_maintenance_lease());
  EXPECT_FALSE(db().try_maintenance_lease()) << "not even the holder's own store takes it twice";
  held.reset();
  auto taken = other->try_maintenance_lease();
  EXPECT_TRUE(taken) << "released, it goes to the next who asks";
  EXPECT_FALSE(db().try_maintenance_lease());
  taken.reset();
  EXPECT_TRUE(db().try_maintenance_lease());
}

TEST_P(store_contract, one_store_at_a_time_leads_and_a_pass_can_run_beside_the_leader) {
  const auto other = open();
  auto leader = db().try_maintenance_leadership();
  ASSERT_TRUE(leader);
  EXPECT_TRUE(leader->held());
  EXPECT_FALSE(other->try_maintenance_leadership());
  EXPECT_FALSE(db().try_maintenance_leadership()) << "not even the leader's own store takes it twice";
  EXPECT_TRUE(other->try_maintenance_lease()) << "leading is not running a pass";
  leader.reset();
  auto next = other->try_maintenance_leadership();
  EXPECT_TRUE(next) << "given up, it goes to the next who asks";
  EXPECT_TRUE(next && next->held());
}

// -----------------------------------------------------------------------------------------------------------
// Webhooks: the outbox written with the status change, and the delivery queue

namespace {

class webhook_outbox : public lease_protocol {
protected:
  store::webhook add_webhook(const std::string& owner, unsigned events, time_point at = t0) {
    store::webhook w{core::new_uuid_v7(),
                     owner,
                     "https://hooks.example.com/" + core::random_hex(4),
                     events,
                     "whsec_" + core::random_hex(8),
                     at};
    EXPECT_TRUE(db().create_webhook(w, 20).has_value());
    return w;
  }
  static constexpr unsigned all_events = 7;

  std::vector<store::webhook_delivery> log_of(const store::webhook& w) {
    return db().list_deliveries({w.id, w.owner_id, 200, std::nullopt});
  }
  // The event types in a webhook's log, oldest first.
  std::vector<std::string> types_of(const store::webhook& w) {
    std::vector<std::string> out;
    const auto log = log_of(w);
    for (auto it = log.rbegin(); it != log.rend(); ++it) out.emplace_back(core::to_string(it->event.type));
    return out;
  }
};

}  // namespace

TEST_P(webhook_outbox, webhooks_are_the_owners_and_capped) {
  const auto bob = add_user("bob").id;
  const auto first = add_webhook(user_, all_events, t0);
  const auto second = add_webhook(user_, 1, t0 + 1s);
  const auto hooks = db().list_webhooks(user_);
  ASSERT_EQ(hooks.size(), 2U);
  EXPECT_EQ(hooks[0].id, first.id);
  EXPECT_EQ(hooks[0].secret, first.secret) << "kept as given: the sender signs with it";
  EXPECT_EQ(hooks[0].events, all_events);
  EXPECT_EQ(hooks[1].created_at, t0 + 1s);
  EXPECT_TRUE(db().list_webhooks(bob).empty());
  EXPECT_FALSE(db().find_webhook(first.id, bob));
  EXPECT_FALSE(db().delete_webhook(first.id, bob)) << "another owner's is not found";
  EXPECT_TRUE(db().find_webhook(first.id, user_));
  store::webhook third{core::new_uuid_v7(), user_, "https://x.example/", 1, "s", t0};
  EXPECT_EQ(db().create_webhook(third, 2).error().code, core::errc::limit_reached);
  EXPECT_TRUE(db().delete_webhook(second.id, user_));
  EXPECT_TRUE(db().create_webhook(third, 2).has_value());
  EXPECT_FALSE(db().delete_webhook(second.id, user_));
}

TEST_P(webhook_outbox, each_status_change_writes_its_event_for_subscribed_webhooks_only) {
  const auto everything = add_webhook(user_, all_events);
  const auto finished = add_webhook(user_, core::bit(core::webhook_event::document_completed));
  const auto bob = add_user("bob").id;
  const auto bobs = add_webhook(bob, all_events);
  const auto doc = add_document(user_, t0 + 1s);
  EXPECT_EQ(types_of(everything), (std::vector<std::string>{"document.uploaded"}));
  EXPECT_TRUE(types_of(finished).empty());
  EXPECT_TRUE(types_of(bobs).empty()) << "never another user's webhooks";
  ASSERT_TRUE(db().request_processing(doc.id, user_, core::new_uuid_v7(), t0 + 2s, 100).has_value());
  const auto job = db().claim_job(t0 + 2s, 30s, "token-a");
  ASSERT_TRUE(job);
  ASSERT_TRUE(db().complete_job(*job, result_at(t0 + 3s)));
  EXPECT_EQ(types_of(everything), (std::vector<std::string>{"document.uploaded", "document.completed"}));
  EXPECT_EQ(types_of(finished), (std::vector<std::string>{"document.completed"}));
  const auto completed = log_of(finished).front();
  EXPECT_EQ(completed.event.document_id, doc.id);
  EXPECT_EQ(completed.event.status, core::status::completed);
  EXPECT_EQ(completed.event.created_at, t0 + 3s);
  EXPECT_FALSE(completed.event.error);
  EXPECT_EQ(completed.state, "pending");
  EXPECT_EQ(completed.attempts, 0U);
  EXPECT_EQ(completed.available_at, t0 + 3s);
  EXPECT_EQ(log_of(everything).front().event.id, completed.event.id) << "one event, one delivery per webhook";
  EXPECT_NE(log_of(everything).front().id, completed.id);
  EXPECT_TRUE(types_of(bobs).empty());
}

TEST_P(webhook_outbox, a_change_that_does_not_happen_writes_no_event) {
  const auto hook = add_webhook(user_, all_events);
  ASSERT_TRUE(request(t0).has_value());
  const auto stale = db().claim_job(t0, 30s, "token-a");
  const auto current = db().claim_job(t0 + 31s, 30s, "token-b");
  ASSERT_TRUE(stale && current);
  EXPECT_FALSE(db().complete_job(*stale, result_at(t0 + 32s)));
  EXPECT_EQ(db().fail_job(*stale, t0 + 32s, {"x", "y", false}, std::nullopt),
            store::failure_outcome::lease_lost);
  EXPECT_TRUE(types_of(hook).empty()) << "the document was uploaded before the webhook existed";
  ASSERT_EQ(db().fail_job(*current, t0 + 33s, {"extractor_crashed", "boom", true}, t0 + 40s),
            store::failure_outcome::retry_scheduled);
  EXPECT_TRUE(types_of(hook).empty()) << "a retry is no failure yet";
  EXPECT_EQ(
      db().cancel_processing(core::new_uuid_v7(), user_, {"cancelled", "c", true}, t0 + 34s).error().code,
      core::errc::not_found);
  EXPECT_TRUE(types_of(hook).empty());
}

TEST_P(webhook_outbox, final_failures_and_cancels_write_document_failed_with_the_error) {
  const auto hook = add_webhook(user_, core::bit(core::webhook_event::document_failed));
  ASSERT_TRUE(request(t0).has_value());
  const auto job = db().claim_job(t0, 30s, "token-a");
  ASSERT_EQ(db().fail_job(*job, t0 + 1s, {"unreadable_document", "bad", false}, std::nullopt),
            store::failure_outcome::failed);
  ASSERT_EQ(types_of(hook), (std::vector<std::string>{"document.failed"}));
  const auto failed = log_of(hook).front().event;
  EXPECT_EQ(failed.status, core::status::failed);
  ASSERT_TRUE(failed.error);
  EXPECT_EQ(failed.error->code, "unreadable_document");
  EXPECT_FALSE(failed.error->retryable);
  ASSERT_TRUE(request(t0 + 2s).has_value());
  ASSERT_TRUE(
      db().cancel_processing(doc_id_, user_, {"cancelled", "Processing was cancelled.", true}, t0 + 3s)
          .has_value());
  ASSERT_EQ(types_of(hook), (std::vector<std::string>{"document.failed", "document.failed"}));
  EXPECT_EQ(log_of(hook).front().event.error->code, "cancelled");
}

TEST_P(webhook_outbox, a_finished_upload_writes_document_uploaded) {
  const auto hook = add_webhook(user_, core::bit(core::webhook_event::document_uploaded));
  store::upload_record u;
  u.id = core::new_uuid_v7();
  u.owner_id = user_;
  u.length = 10;
  u.created_at = t0;
  u.expires_at = t0 + 1h;
  db().create_upload(u);
  ASSERT_EQ(db().lock_upload(u.id, user_, "lock", t0, 30s).outcome, store::upload_lock::kind::locked);
  auto doc = sample_document(user_, t0 + 1s);
  doc.id = u.id;
  u.offset = 10;
  u.answer_status = 201;
  ASSERT_TRUE(db().finish_upload(u, "lock", &doc));
  ASSERT_EQ(types_of(hook), (std::vector<std::string>{"document.uploaded"}));
  EXPECT_EQ(log_of(hook).front().event.document_id, doc.id);
}

TEST_P(webhook_outbox, deliveries_are_claimed_once_fenced_and_retried_when_their_sender_dies) {
  const auto hook = add_webhook(user_, all_events);
  add_document(user_, t0);
  const auto first = db().claim_delivery(t0, 20s, "send-a");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->url, hook.url);
  EXPECT_EQ(first->secret, hook.secret);
  EXPECT_EQ(first->delivery.attempts, 1U);
  EXPECT_EQ(first->delivery.event.type, core::webhook_event::document_uploaded);
  EXPECT_EQ(db().pending_deliveries(), 1U) << "being sent counts as pending";
  EXPECT_FALSE(db().claim_delivery(t0 + 19s, 20s, "send-b")) << "the lease holds";
  const auto second = db().claim_delivery(t0 + 21s, 20s, "send-b");
  ASSERT_TRUE(second) << "a lapsed lease is taken over";
  EXPECT_EQ(second->delivery.id, first->delivery.id);
  EXPECT_EQ(second->delivery.event.id, first->delivery.event.id);
  EXPECT_EQ(second->delivery.attempts, 2U);
  store::delivery_outcome ok{store::delivery_outcome::kind::delivered, 204, std::nullopt, {}};
  EXPECT_FALSE(db().finish_delivery(*first, t0 + 22s, ok)) << "the stale sender records nothing";
  store::delivery_outcome retry{store::delivery_outcome::kind::retry, 500, "HTTP 500", t0 + 30s};
  ASSERT_TRUE(db().finish_delivery(*second, t0 + 22s, retry));
  auto row = log_of(hook).front();
  EXPECT_EQ(row.state, "pending");
  EXPECT_EQ(row.last_status, 500);
  EXPECT_EQ(row.available_at, t0 + 30s);
  EXPECT_FALSE(db().claim_delivery(t0 + 29s, 20s, "send-c")) << "the retry waits for its time";
  const auto third = db().claim_delivery(t0 + 30s, 20s, "send-c");
  ASSERT_TRUE(third);
  EXPECT_EQ(third->delivery.attempts, 3U);
  ASSERT_TRUE(db().finish_delivery(*third, t0 + 31s, ok));
  EXPECT_FALSE(db().finish_delivery(*third, t0 + 31s, ok)) << "once";
  row = log_of(hook).front();
  EXPECT_EQ(row.state, "delivered");
  EXPECT_EQ(row.delivered_at, t0 + 31s);
  EXPECT_EQ(row.last_status, 204);
  EXPECT_FALSE(db().claim_delivery(t0 + 1h, 20s, "send-d"));
  EXPECT_EQ(db().pending_deliveries(), 0U);
}

TEST_P(webhook_outbox, redelivery_sends_the_same_event_again_and_deleting_the_webhook_stops_its_deliveries) {
  const auto hook = add_webhook(user_, all_events);
  const auto bob = add_user("bob").id;
  add_document(user_, t0);
  const auto claimed = db().claim_delivery(t0, 20s, "send-a");
  ASSERT_TRUE(claimed);
  ASSERT_TRUE(db().finish_delivery(*claimed, t0 + 1s,
                                   {store::delivery_outcome::kind::failed, std::nullopt, "timeout", {}}));
  EXPECT_EQ(log_of(hook).front().state, "failed");
  EXPECT_FALSE(db().redeliver(hook.id, claimed->delivery.id, bob, core::new_uuid_v7(), t0 + 2s));
  EXPECT_FALSE(
      db().redeliver(core::new_uuid_v7(), claimed->delivery.id, user_, core::new_uuid_v7(), t0 + 2s));
  const auto again = db().redeliver(hook.id, claimed->delivery.id, user_, core::new_uuid_v7(), t0 + 2s);
  ASSERT_TRUE(again);
  EXPECT_NE(again->id, claimed->delivery.id);
  EXPECT_EQ(again->event.id, claimed->delivery.event.id) << "the same event, so the same id for receivers";
  EXPECT_EQ(again->state, "pending");
  EXPECT_EQ(again->attempts, 0U);
  const auto log = log_of(hook);
  ASSERT_EQ(log.size(), 2U);
  EXPECT_EQ(log.front().id, again->id) << "newest first";
  EXPECT_TRUE(db().list_deliveries({hook.id, bob, 10, std::nullopt}).empty());
  const auto page =
      db().list_deliveries({hook.id, user_, 1, std::pair(log.front().created_at, log.front().id)});
  ASSERT_EQ(page.size(), 1U);
  EXPECT_EQ(page.front().id, claimed->delivery.id);
  const auto resent = db().claim_delivery(t0 + 2s, 20s, "send-b");
  ASSERT_TRUE(resent);
  EXPECT_EQ(resent->delivery.id, again->id);
  EXPECT_TRUE(db().delete_webhook(hook.id, user_));
  EXPECT_FALSE(db().finish_delivery(*resent, t0 + 3s,
                                    {store::delivery_outcome::kind::delivered, 200, std::nullopt, {}}));
  EXPECT_FALSE(db().claim_delivery(t0 + 1h, 20s, "send-c"));
  EXPECT_EQ(db().pending_deliveries(), 0U);
}

TEST_P(webhook_outbox, deleting_a_document_leaves_its_pending_deliveries) {
  const auto hook = add_webhook(user_, all_events);
  const auto doc = add_document(user_, t0);
  ASSERT_TRUE(db().delete_document(doc.id, user_).has_value());
  const auto claimed = db().claim_delivery(t0, 20s, "send-a");
  ASSERT_TRUE(claimed) << "the event is about a document that existed";
  EXPECT_EQ(claimed->delivery.event.document_id, doc.id);
}

TEST_P(webhook_outbox, concurrent_senders_never_take_the_same_delivery) {
  add_webhook(user_, all_events);
  add_webhook(user_, all_events);
  for (int i = 0; i < 4; ++i) add_document(user_, t0);
  // 2 webhooks x 4 documents (the fixture's came before the webhooks) -> 8 deliveries.
  std::vector<std::unique_ptr<store::database>> senders;
  for (int i = 0; i < 4; ++i) senders.push_back(open(2));
  std::mutex m;
  std::vector<std::string> taken;
  EXPECT_EQ(on_threads(4,
                       [&](int i) {
                         while (auto d = senders[i]->claim_delivery(t0, 30s, "t" + std::to_string(i))) {
                           const std::lock_guard lock(m);
                           taken.push_back(d->delivery.id);
                         }
                       }),
            0);
  std::set<std::string> distinct(taken.begin(), taken.end());
  EXPECT_EQ(taken.size(), 8U);
  EXPECT_EQ(distinct.size(), taken.size());
}

INSTANTIATE_TEST_SUITE_P(engines, webhook_outbox, ::testing::Values(engine::sqlite, engine::postgres),
                         engine_name);

INSTANTIATE_TEST_SUITE_P(engines, store_contract, ::testing::Values(engine::sqlite, engine::postgres),
                         engine_name);
INSTANTIATE_TEST_SUITE_P(engines, lease_protocol, ::testing::Values(engine::sqlite, engine::postgres),
                         engine_name);
INSTANTIATE_TEST_SUITE_P(engines, fair_claims, ::testing::Values(engine::sqlite, engine::postgres),
                         engine_name);
INSTANTIATE_TEST_SUITE_P(engines, store_concurrency, ::testing::Values(engine::sqlite, engine::postgres),
                         engine_name);
INSTANTIATE_TEST_SUITE_P(engines, ThrottleTest, ::testing::Values(engine::sqlite, engine::postgres),
                         engine_name);
