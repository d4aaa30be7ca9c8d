// The job rules that need no worker threads: the retry schedule, and the
// lease protocol of the store driven with explicit times (no sleeping).
#include <gtest/gtest.h>

#include <filesystem>

#include "core/ids.hpp"
#include "jobs/backoff.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using docflow::core::time_point;
namespace store = docflow::store;

TEST(retry_delay, doubles_per_attempt_within_the_jitter_band) {
  for (unsigned attempt = 1; attempt <= 5; ++attempt) {
    const auto full = 1000ms * (1 << (attempt - 1));
    EXPECT_EQ(docflow::jobs::retry_delay(attempt, 1s, 60s, 0.0), full / 2) << attempt;
    EXPECT_EQ(docflow::jobs::retry_delay(attempt, 1s, 60s, 1.0), full) << attempt;
    EXPECT_EQ(docflow::jobs::retry_delay(attempt, 1s, 60s, 0.5), full * 3 / 4) << attempt;
  }
}

TEST(retry_allowed, transient_failures_while_attempts_remain) {
  const docflow::core::failure transient{"worker_lost", "gone", true};
  const docflow::core::failure permanent{"unreadable_document", "broken", false};
  EXPECT_TRUE(docflow::jobs::retry_allowed(transient, 1, 3));
  EXPECT_TRUE(docflow::jobs::retry_allowed(transient, 2, 3));
  EXPECT_FALSE(docflow::jobs::retry_allowed(transient, 3, 3));
  EXPECT_FALSE(docflow::jobs::retry_allowed(permanent, 1, 3));
}

TEST(retry_allowed, an_extraction_timeout_is_retried_once_only) {
  // One slow PDF used to cost three full deadlines.
  const docflow::core::failure timeout{"extractor_timeout", "extraction took too long", true};
  EXPECT_TRUE(docflow::jobs::retry_allowed(timeout, 1, 5));
  EXPECT_FALSE(docflow::jobs::retry_allowed(timeout, 2, 5));
  EXPECT_FALSE(docflow::jobs::retry_allowed(timeout, 1, 1));
}

TEST(retry_delay, is_capped_and_clamps_the_jitter) {
  EXPECT_EQ(docflow::jobs::retry_delay(20, 1s, 60s, 1.0), 60s);
  EXPECT_EQ(docflow::jobs::retry_delay(200, 1s, 60s, 0.0), 30s);  // huge attempts do not overflow
  EXPECT_EQ(docflow::jobs::retry_delay(1, 1s, 60s, 7.0), 1s);
  EXPECT_EQ(docflow::jobs::retry_delay(1, 1s, 60s, -3.0), 500ms);
}

// A real SQLite database with one user and one uploaded document.
class lease_protocol : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("docflow-jobs-" + docflow::core::random_hex(6));
    std::filesystem::create_directories(dir_);
    db_ = std::make_unique<store::sqlite::sqlite_store>(dir_ / "db.sqlite");
    db_->migrate();
    ASSERT_TRUE(db_->create_user({"u1", "alice", "hash", docflow::core::role::user, t0_}).has_value());
    docflow::core::document d;
    d.id = docflow::core::new_uuid_v7();
    d.owner_id = "u1";
    d.filename = "a.pdf";
    d.sha256 = std::string(64, 'a');
    d.size_bytes = 1;
    d.created_at = d.updated_at = t0_;
    ASSERT_TRUE(db_->insert_document(d, nullptr).has_value());
    doc_id_ = d.id;
  }
  void TearDown() override {
    db_.reset();
    std::filesystem::remove_all(dir_);
  }

  docflow::core::result<store::process_result> request(time_point at, std::uint64_t max_queued = 100) {
    return db_->request_processing(doc_id_, std::string("u1"), docflow::core::new_uuid_v7(), at, max_queued);
  }
  // What a request for processing did: an outcome, or the error's name.
  std::string requested(time_point at, std::uint64_t max_queued = 100) {
    const auto r = request(at, max_queued);
    if (!r) return std::string(docflow::core::name(r.error().code));
    switch (r->outcome) {
      case store::process_outcome::accepted: return "accepted";
      case store::process_outcome::already_processing: return "already_processing";
      case store::process_outcome::completed: return "completed";
    }
    return "?";
  }
  store::stored_result result_at(time_point at) { return {"test/1", t0_, at, 1, "{}", "text", {}, 0}; }
  docflow::core::status status() { return db_->find_document(doc_id_, std::nullopt)->status; }

  std::filesystem::path dir_;
  std::unique_ptr<store::sqlite::sqlite_store> db_;
  std::string doc_id_;
  const time_point t0_{std::chrono::seconds{1'800'000'000}};
};

TEST_F(lease_protocol, a_held_lease_keeps_others_out_until_it_lapses) {
  ASSERT_EQ(requested(t0_), "accepted");
  const auto first = db_->claim_job(t0_, 30s, "token-a");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->attempt, 1U);
  EXPECT_FALSE(db_->claim_job(t0_ + 29s, 30s, "token-b")) << "the lease still holds";
  const auto second = db_->claim_job(t0_ + 31s, 30s, "token-b");
  ASSERT_TRUE(second) << "a lapsed lease is taken over";
  EXPECT_EQ(second->job_id, first->job_id);
  EXPECT_EQ(second->attempt, 2U);
  EXPECT_EQ(db_->find_document(doc_id_, std::nullopt)->attempts, 2U);
}

TEST_F(lease_protocol, a_stale_worker_can_neither_complete_fail_nor_renew) {
  ASSERT_TRUE(request(t0_).has_value());
  const auto stale = db_->claim_job(t0_, 30s, "token-a");
  const auto current = db_->claim_job(t0_ + 31s, 30s, "token-b");
  ASSERT_TRUE(stale && current);
  EXPECT_FALSE(db_->renew_lease(*stale, t0_ + 32s, 30s));
  EXPECT_FALSE(db_->complete_job(*stale, result_at(t0_ + 33s)));
  EXPECT_EQ(db_->fail_job(*stale, t0_ + 33s, {"x", "y", false}, std::nullopt),
            store::failure_outcome::lease_lost);
  EXPECT_EQ(status(), docflow::core::status::processing);
  EXPECT_TRUE(db_->renew_lease(*current, t0_ + 34s, 30s));
  EXPECT_TRUE(db_->complete_job(*current, result_at(t0_ + 35s)));
  EXPECT_EQ(status(), docflow::core::status::completed);
  EXPECT_TRUE(db_->find_result(doc_id_));
}

TEST_F(lease_protocol, renewal_extends_the_lease) {
  ASSERT_TRUE(request(t0_).has_value());
  const auto job = db_->claim_job(t0_, 30s, "token-a");
  ASSERT_TRUE(db_->renew_lease(*job, t0_ + 20s, 30s));
  EXPECT_FALSE(db_->claim_job(t0_ + 45s, 30s, "token-b")) << "renewed until t0 + 50 s";
  EXPECT_TRUE(db_->claim_job(t0_ + 51s, 30s, "token-b"));
}

TEST_F(lease_protocol, a_retry_waits_for_its_time) {
  ASSERT_TRUE(request(t0_).has_value());
  const auto job = db_->claim_job(t0_, 30s, "token-a");
  ASSERT_EQ(db_->fail_job(*job, t0_ + 1s, {"extractor_crashed", "boom", true}, t0_ + 10s),
            store::failure_outcome::retry_scheduled);
  EXPECT_EQ(status(), docflow::core::status::processing);
  EXPECT_FALSE(db_->claim_job(t0_ + 9s, 30s, "token-b"));
  const auto again = db_->claim_job(t0_ + 10s, 30s, "token-b");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->attempt, 2U);
}

TEST_F(lease_protocol, a_final_failure_records_the_error_and_allows_a_new_request) {
  ASSERT_TRUE(request(t0_).has_value());
  const auto job = db_->claim_job(t0_, 30s, "token-a");
  ASSERT_EQ(db_->fail_job(*job, t0_ + 1s, {"unreadable_document", "locked", false}, std::nullopt),
            store::failure_outcome::failed);
  const auto doc = db_->find_document(doc_id_, std::nullopt);
  ASSERT_TRUE(doc->error);
  EXPECT_EQ(doc->status, docflow::core::status::failed);
  EXPECT_EQ(doc->error->code, "unreadable_document");
  EXPECT_FALSE(doc->error->retryable);
  EXPECT_EQ(requested(t0_ + 2s), "accepted") << "FAILED -> PROCESSING";
  EXPECT_FALSE(db_->find_document(doc_id_, std::nullopt)->error) << "a new request clears the error";
}

TEST_F(lease_protocol, repeated_requests_make_one_job_and_the_queue_bound_holds) {
  EXPECT_EQ(requested(t0_, 0), "queue_full");
  EXPECT_EQ(status(), docflow::core::status::uploaded) << "a refused request changes nothing";
  EXPECT_EQ(requested(t0_), "accepted");
  EXPECT_EQ(requested(t0_), "already_processing");
  EXPECT_EQ(db_->job_stats().queued, 1U);
  const auto job = db_->claim_job(t0_, 30s, "t");
  ASSERT_TRUE(db_->complete_job(*job, result_at(t0_ + 1s)));
  EXPECT_EQ(requested(t0_ + 2s), "completed");
  EXPECT_EQ(db_->job_stats().queued, 0U);
}

TEST_F(lease_protocol, cancel_takes_the_job_from_its_worker) {
  ASSERT_TRUE(request(t0_).has_value());
  const auto job = db_->claim_job(t0_, 30s, "token-a");
  const auto cancelled =
      db_->cancel_processing(doc_id_, std::string("u1"), {"cancelled", "by owner", true}, t0_ + 1s);
  ASSERT_TRUE(cancelled.has_value());
  EXPECT_EQ(cancelled->job_id, job->job_id);
  EXPECT_FALSE(db_->complete_job(*job, result_at(t0_ + 2s)));
  EXPECT_EQ(status(), docflow::core::status::failed);
  const auto again = db_->cancel_processing(doc_id_, std::string("u1"), {"cancelled", "", true}, t0_ + 3s);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, docflow::core::errc::not_processing);
  EXPECT_EQ(again.error().document_status, docflow::core::status::failed);
}

TEST_F(lease_protocol, events_number_every_transition) {
  ASSERT_TRUE(request(t0_).has_value());
  const auto job = db_->claim_job(t0_, 30s, "t");
  db_->complete_job(*job, result_at(t0_ + 1s));
  const auto events = db_->events_after(doc_id_, 0);
  ASSERT_EQ(events.size(), 3U);
  EXPECT_EQ(events[0].seq, 1);
  EXPECT_EQ(events[0].status, docflow::core::status::uploaded);
  EXPECT_EQ(events[1].status, docflow::core::status::processing);
  EXPECT_EQ(events[2].status, docflow::core::status::completed);
  EXPECT_EQ(db_->events_after(doc_id_, 2).size(), 1U);
}

}  // namespace
