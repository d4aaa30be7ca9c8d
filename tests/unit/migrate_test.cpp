// docflow migrate-data: the table list against the SQLite schema, the lock
// on the source, and the copy from SQLite and a directory into PostgreSQL
// (on the server this binary starts), interrupted and resumed.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "app/migrate.hpp"
#include "blob/fs_blob_store.hpp"
#include "core/crypto.hpp"
#include "core/ids.hpp"
#include "pg_server.hpp"
#include "samples.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/postgres/transfer_sink.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store/sqlite/transfer_source.hpp"
#include "store/transfer.hpp"

using namespace docflow;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using core::time_point;

namespace {

const time_point t0{std::chrono::seconds{1'800'000'000}};

class migrate_source : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("docflow-migrate-" + core::random_hex(6));
    fs::create_directories(dir_);
    store::sqlite::sqlite_store(db_path()).migrate();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path db_path() const { return dir_ / "docflow.db"; }

  void exec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    const std::string message = error ? error : "";
    sqlite3_free(error);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << message;
  }

  fs::path dir_;
};

}  // namespace

TEST_F(migrate_source, every_table_and_column_of_the_schema_is_copied_or_named_as_not) {
  const auto source = store::sqlite::open_transfer_source(db_path());
  EXPECT_EQ(app::unhandled_schema(*source), std::vector<std::string>{});
  // And the other way round: nothing listed that the schema lacks.
  const auto names = source->table_names();
  for (const auto& t : store::transfer::tables()) {
    EXPECT_NE(std::find(names.begin(), names.end(), t.name), names.end()) << t.name;
  }
}

TEST_F(migrate_source, a_table_or_column_added_to_the_schema_and_not_to_the_copy_is_reported) {
  exec("CREATE TABLE notes (id TEXT PRIMARY KEY); ALTER TABLE users ADD COLUMN email TEXT");
  const auto source = store::sqlite::open_transfer_source(db_path());
  EXPECT_EQ(app::unhandled_schema(*source), (std::vector<std::string>{"notes", "users.email"}));
}

TEST_F(migrate_source, a_node_still_running_on_the_file_keeps_the_copy_out_and_the_copy_keeps_nodes_out) {
  {
    store::sqlite::sqlite_store running(db_path());
    ASSERT_EQ(running.list_users().size(), 0U);
    EXPECT_THROW(store::sqlite::open_transfer_source(db_path()), store::transfer::source_busy);
  }
  const auto source = store::sqlite::open_transfer_source(db_path());
  // A node started during the copy cannot open the file (after SQLite's busy timeout).
  EXPECT_THROW(store::sqlite::sqlite_store(db_path()).list_users(), store::store_error);
}

namespace {

// A single node with a bit of everything, copied into a database of the
// shared PostgreSQL server and a second directory.
class postgres_migrate_data : public migrate_source {
protected:
  void SetUp() override {
    migrate_source::SetUp();
    source_blobs_ = std::make_unique<blob::fs_blob_store>(dir_ / "blobs");
    target_blobs_ = std::make_unique<blob::fs_blob_store>(dir_ / "target-blobs");
    target_url_ = test::shared_pg_server().create_database();
    store::postgres::open(target_url_, 2)->migrate();
    sink_ = store::postgres::open_transfer_sink(target_url_, "");
  }

  // Stores the blob, then the row, as an upload does.
  core::document upload(store::database& db, const std::string& owner, std::size_t size, unsigned seed,
                        const store::idempotent_answer* answer = nullptr) {
    const auto bytes = test::pattern(size, seed);
    auto d = test::sample_document(owner, t0 + std::chrono::seconds{seed});
    d.size_bytes = bytes.size();
    d.sha256 = core::sha256_hex(bytes);
    const auto w = source_blobs_->begin(d.id);
    w->write(bytes);
    w->commit();
    EXPECT_TRUE(db.insert_document(d, answer).has_value());
    return d;
  }

  void populate() {
    store::sqlite::sqlite_store db(db_path());
    alice_ = {core::new_uuid_v7(), "alice", "hash-a", core::role::user, t0};
    bob_ = {core::new_uuid_v7(), "bob", "hash-b", core::role::admin, t0 + 1s};
    ASSERT_TRUE(db.create_user(alice_).has_value());
    ASSERT_TRUE(db.create_user(bob_).has_value());
    db.start_refresh_family({core::new_uuid_v7(), alice_.id, "h1", t0, t0 + 24h * 3650});
    ASSERT_EQ(db.rotate_refresh_token("h1", {"", "", "h2", t0 + 1min, t0 + 24h * 3650}, 0ms).decision,
              core::rotation_decision::rotate);

    // Alice's webhook gets an event for each of her uploads, completions and failures.
    hook_ = {core::new_uuid_v7(), alice_.id, "https://hooks.example.com/x", 7, "whsec_migrated", t0};
    ASSERT_TRUE(db.create_webhook(hook_, 20).has_value());

    completed_ = upload(db, alice_.id, 3000, 1);
    ASSERT_EQ(db.request_processing(completed_.id, std::nullopt, core::new_uuid_v7(), t0 + 10s, 100, false)
                  ->outcome,
              store::process_outcome::accepted);
    const auto job = db.claim_job(t0 + 11s, 30s, "lease-1");
    ASSERT_TRUE(job);
    ASSERT_TRUE(db.complete_job(*job, {"test/1", t0 + 11s, t0 + 12s, 1, R"({"pages":1})", text_, {}, 0}));

    failed_ = upload(db, alice_.id, 5000, 2);
    ASSERT_TRUE(db.request_processing(failed_.id, std::nullopt, core::new_uuid_v7(), t0 + 20s, 100, false));
    const auto failing = db.claim_job(t0 + 21s, 30s, "lease-2");
    ASSERT_TRUE(failing);
    ASSERT_EQ(db.fail_job(*failing, t0 + 22s, {"unreadable", "broken", false}, std::nullopt),
              store::failure_outcome::failed);

    const auto claim = db.begin_idempotent(bob_.id, "key-1", "print", t0 + 30s, 24h * 3650, 5min);
    ASSERT_TRUE(claim);
    const store::idempotent_answer answer{
        bob_.id, "key-1", claim->token, 201, R"({"id":"x"})", "application/json", "/documents/x"};
    for (unsigned seed = 3; seed < 8; ++seed) {
      documents_.push_back(upload(db, bob_.id, 1000 * seed, seed, seed == 3 ? &answer : nullptr));
    }
    documents_.insert(documents_.begin(), {completed_, failed_});

    const auto key_id = core::new_uuid_v7();
    ASSERT_TRUE(db.create_api_key(
        {key_id, bob_.id, "scanner", "dfk_abcdefgh", t0, std::nullopt, std::nullopt}, "key-hash-1", 10));
    db.touch_api_key(key_id, t0 + 1min, 1min);
    ASSERT_TRUE(db.set_quota(alice_.id, core::limit_setting{false, 1 << 20},
                             core::limit_setting{false, std::nullopt}));

    // One delivery sent (every column of its row set), one being sent, the rest pending.
    const auto sent = db.claim_delivery(t0 + 40s, 30s, "send-1");
    ASSERT_TRUE(sent);
    ASSERT_TRUE(db.finish_delivery(*sent, t0 + 41s,
                                   {store::delivery_outcome::kind::delivered, 204, std::nullopt, t0 + 41s}));
    ASSERT_TRUE(db.claim_delivery(t0 + 42s, 30s, "send-2"));

    const std::array keys{store::attempt_key{"login", "bob", 5}};
    ASSERT_EQ(db.count_attempt(keys, t0, 24h * 3650), std::nullopt);
    ASSERT_EQ(db.count_attempt(keys, t0 + 1s, 24h * 3650), std::nullopt);
  }

  app::migration_summary copy(const std::function<void(const app::document_progress&)>& on_document) {
    const auto source = store::sqlite::open_transfer_source(db_path());
    return app::copy_everything(*source, *source_blobs_, *sink_, *target_blobs_, on_document);
  }

  std::unique_ptr<blob::fs_blob_store> source_blobs_;
  std::unique_ptr<blob::fs_blob_store> target_blobs_;
  std::string target_url_;
  std::unique_ptr<store::transfer::sink> sink_;
  core::user alice_;
  core::user bob_;
  store::webhook hook_;
  core::document completed_;
  core::document failed_;
  std::vector<core::document> documents_;
  const std::string text_ = "extracted text, " + std::string(700, 'x');
};

struct interrupted {};

std::string blob_sha(blob::blob_store& s, const std::string& key) {
  const auto r = s.open(key);
  if (!r) return "missing";
  std::string bytes(r->size(), '\0');
  r->read_at(0, bytes.data(), bytes.size());
  return core::sha256_hex(bytes);
}

}  // namespace

TEST_F(postgres_migrate_data, an_interrupted_copy_resumes_without_duplicates_and_the_target_serves_it_all) {
  populate();
  // The first run stops after two documents; the blob of the third then
  // reaches the target without its row, as a kill between the two leaves it.
  int seen = 0;
  EXPECT_THROW(copy([&](const app::document_progress&) {
                 if (++seen == 2) throw interrupted{};
               }),
               interrupted);
  std::vector<std::string> ids;
  for (const auto& d : documents_) ids.push_back(d.id);
  std::sort(ids.begin(), ids.end());
  {
    const auto w = target_blobs_->begin(ids[2]);
    const auto r = source_blobs_->open(ids[2]);
    std::string bytes(r->size(), '\0');
    r->read_at(0, bytes.data(), bytes.size());
    w->write(bytes);
    w->commit();
  }

  std::vector<std::string> order;
  const auto summary = copy([&](const app::document_progress& p) { order.push_back(p.id); });
  EXPECT_TRUE(summary.complete()) << app::format_summary(summary);
  EXPECT_EQ(order, ids) << "every document, in id order";
  EXPECT_EQ(summary.blobs_present, 3U);
  EXPECT_EQ(summary.blobs_copied, documents_.size() - 3);
  EXPECT_EQ(summary.blobs_verified, documents_.size());
  for (const auto& t : summary.tables) {
    EXPECT_EQ(t.target, t.source) << t.name;
    EXPECT_GT(t.source, 0U) << t.name << ": the test should hold rows of every table";
  }
  const auto row_of = [&](std::string_view name) {
    return *std::find_if(summary.tables.begin(), summary.tables.end(),
                         [&](const auto& t) { return t.name == name; });
  };
  EXPECT_EQ(row_of("documents").written, documents_.size() - 2) << "two were written by the first run";
  EXPECT_EQ(row_of("users").written, 0U) << "the first run wrote them";

  // A third run finds everything there.
  const auto again = copy([](const app::document_progress&) {});
  EXPECT_TRUE(again.complete());
  EXPECT_EQ(again.blobs_present, documents_.size());
  for (const auto& t : again.tables) EXPECT_EQ(t.written, 0U) << t.name;

  store::sqlite::sqlite_store source(db_path());
  const auto target = store::postgres::open(target_url_, 2);
  for (const auto& d : documents_) {
    const auto was = source.find_document(d.id, std::nullopt);
    const auto is = target->find_document(d.id, std::nullopt);
    ASSERT_TRUE(is) << d.id;
    EXPECT_EQ(is->status, was->status);
    EXPECT_EQ(is->sha256, was->sha256);
    EXPECT_EQ(is->size_bytes, was->size_bytes);
    EXPECT_EQ(is->created_at, was->created_at);
    EXPECT_EQ(is->updated_at, was->updated_at);
    EXPECT_EQ(is->owner_id, was->owner_id);
    EXPECT_EQ(blob_sha(*target_blobs_, d.id), d.sha256);
    const auto events_was = source.events_after(d.id, 0);
    const auto events_is = target->events_after(d.id, 0);
    ASSERT_EQ(events_is.size(), events_was.size());
    for (std::size_t i = 0; i < events_is.size(); ++i) {
      EXPECT_EQ(events_is[i].seq, events_was[i].seq);
      EXPECT_EQ(events_is[i].status, events_was[i].status);
      EXPECT_EQ(events_is[i].at, events_was[i].at);
      EXPECT_EQ(events_is[i].error.has_value(), events_was[i].error.has_value());
    }
  }
  EXPECT_EQ(target->find_document(failed_.id, std::nullopt)->error->code, "unreadable");
  // Usage is not copied but counted again by the target, as documents arrive.
  for (const auto& u : {alice_, bob_}) {
    const auto was = source.find_quota(u.id);
    const auto is = target->find_quota(u.id);
    EXPECT_EQ(is.usage.bytes, was.usage.bytes) << u.username;
    EXPECT_EQ(is.usage.documents, was.usage.documents) << u.username;
    EXPECT_EQ(is.limits.bytes, was.limits.bytes) << u.username;
  }
  EXPECT_EQ(target->find_quota(alice_.id).limits.bytes, 1u << 20);
  const auto key = target->find_api_key("key-hash-1");
  ASSERT_TRUE(key);
  EXPECT_EQ(key->user.id, bob_.id);
  EXPECT_EQ(key->key.last_used_at, t0 + 1min);
  const auto result = target->find_result(completed_.id);
  ASSERT_TRUE(result);
  EXPECT_EQ(target->read_result_text(completed_.id, result->completed_at, 0, 4096), text_);
  EXPECT_EQ(result->text_bytes, text_.size());

  // The webhook, its secret and its delivery log as they were; the delivery
  // left being sent is taken over once its lease lapses.
  EXPECT_EQ(target->find_webhook(hook_.id, alice_.id)->secret, hook_.secret);
  const store::delivery_query log{hook_.id, alice_.id, 100, std::nullopt};
  const auto log_was = source.list_deliveries(log);
  const auto log_is = target->list_deliveries(log);
  ASSERT_EQ(log_is.size(), log_was.size());
  ASSERT_GE(log_is.size(), 3U);
  for (std::size_t i = 0; i < log_is.size(); ++i) {
    EXPECT_EQ(log_is[i].id, log_was[i].id);
    EXPECT_EQ(log_is[i].state, log_was[i].state);
    EXPECT_EQ(log_is[i].event.id, log_was[i].event.id);
    EXPECT_EQ(log_is[i].event.type, log_was[i].event.type);
    EXPECT_EQ(log_is[i].event.created_at, log_was[i].event.created_at);
    EXPECT_EQ(log_is[i].event.error.has_value(), log_was[i].event.error.has_value());
    EXPECT_EQ(log_is[i].last_status, log_was[i].last_status);
    EXPECT_EQ(log_is[i].delivered_at, log_was[i].delivered_at);
  }
  const auto taken = target->claim_delivery(t0 + 1h, 30s, "send-3");
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->url, hook_.url);
  EXPECT_EQ(taken->delivery.attempts, 2U) << "first the one whose lease lapsed";

  // Logins, refresh tokens, idempotent answers and throttles go on.
  EXPECT_EQ(target->find_user_by_name("ALICE")->id, alice_.id);
  EXPECT_EQ(target->rotate_refresh_token("h2", {"", "", "h3", t0 + 2min, t0 + 24h * 3650}, 0ms).decision,
            core::rotation_decision::rotate);
  const auto replay = target->begin_idempotent(bob_.id, "key-1", "print", t0 + 1min, 24h * 3650, 5min);
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->outcome, store::idempotency_claim::kind::replay);
  EXPECT_EQ(replay->location, "/documents/x");
  const std::array keys{store::attempt_key{"login", "bob", 2}};
  EXPECT_TRUE(target->attempts_refused_until(keys, t0 + 2s)) << "both attempts counted";

  // The next event continues the copied numbering (Last-Event-ID stays valid).
  const auto last = source.events_after(failed_.id, 0).back().seq;
  ASSERT_TRUE(target->request_processing(failed_.id, std::nullopt, core::new_uuid_v7(), t0 + 1h, 100));
  const auto next = target->events_after(failed_.id, last);
  ASSERT_EQ(next.size(), 1U);
  EXPECT_EQ(next[0].seq, last + 1);
}

TEST_F(postgres_migrate_data, a_target_holding_anything_the_source_does_not_is_refused) {
  populate();
  {
    const auto source = store::sqlite::open_transfer_source(db_path());
    EXPECT_EQ(app::foreign_data(*source, *sink_, *target_blobs_), std::nullopt) << "empty";
  }
  copy([](const app::document_progress&) {});
  {
    const auto source = store::sqlite::open_transfer_source(db_path());
    EXPECT_EQ(app::foreign_data(*source, *sink_, *target_blobs_), std::nullopt) << "a copy of this source";
  }
  const auto stray = target_blobs_->begin(core::new_uuid_v7());
  stray->write("x");
  stray->commit();
  {
    const auto source = store::sqlite::open_transfer_source(db_path());
    const auto why = app::foreign_data(*source, *sink_, *target_blobs_);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("blob"), std::string::npos) << *why;
  }
  const auto target = store::postgres::open(target_url_, 2);
  ASSERT_TRUE(
      target->create_user({core::new_uuid_v7(), "carol", "hash-c", core::role::user, t0}).has_value());
  const auto source = store::sqlite::open_transfer_source(db_path());
  const auto why = app::foreign_data(*source, *sink_, *target_blobs_);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("user"), std::string::npos) << *why;
}

TEST_F(postgres_migrate_data, a_blob_that_differs_from_its_row_is_reported_and_its_row_is_not_written) {
  populate();
  exec("UPDATE documents SET sha256 = '" + std::string(64, '0') + "' WHERE id = '" + failed_.id + "'");
  std::vector<app::document_progress> failures;
  const auto summary = copy([&](const app::document_progress& p) {
    if (p.fate == app::blob_fate::failed) failures.push_back(p);
  });
  EXPECT_FALSE(summary.complete());
  ASSERT_EQ(summary.problems.size(), 1U);
  ASSERT_EQ(failures.size(), 1U);
  EXPECT_EQ(failures[0].id, failed_.id);
  EXPECT_EQ(summary.blobs_verified, documents_.size() - 1);
  const auto target = store::postgres::open(target_url_, 2);
  EXPECT_FALSE(target->find_document(failed_.id, std::nullopt));
  EXPECT_FALSE(target_blobs_->exists(failed_.id)) << "no blob that no row names is left behind";
  EXPECT_TRUE(target->find_document(completed_.id, std::nullopt));
}
