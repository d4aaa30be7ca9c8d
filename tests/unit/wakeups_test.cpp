// Wake-ups: on PostgreSQL, a change committed through one database object
// (what another process holds) reaches those who wait on another at once,
// through LISTEN/NOTIFY, not at their next poll. Every wait below has a
// generous deadline that is still far shorter than the poll it must beat,
// so without the notification each of these tests fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "blob/fs_blob_store.hpp"
#include "core/clock.hpp"
#include "core/ids.hpp"
#include "jobs/worker_pool.hpp"
#include "obs/metrics.hpp"
#include "pg_server.hpp"
#include "pipeline/stage.hpp"
#include "samples.hpp"
#include "store/change_feed.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/postgres/pq.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store/wakeups.hpp"

using namespace docflow;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace pq = store::postgres::pq;
using store::wakeup_topic;

namespace {

// Long enough for a loaded machine; far shorter than any poll it must beat.
constexpr auto deadline = 10s;
// The polls the tests set: only a wake-up can act before them.
constexpr auto never = std::chrono::minutes(10);

// A user's document in `db`, committed.
core::document add_document(store::database& db) {
  const auto now = core::system_clock().now();
  const core::user u{core::new_uuid_v7(), "alice", "h", core::role::user, now};
  EXPECT_TRUE(db.create_user(u).has_value());
  auto d = test::sample_document(u.id, now);
  EXPECT_TRUE(db.insert_document(d, nullptr).has_value());
  return d;
}

// What a subscriber heard, in order; nullopt for "look at everything".
struct heard {
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::optional<std::string>> payloads;

  store::wakeups::handler handler() {
    return [this](std::optional<std::string_view> p) {
      {
        const std::lock_guard lock(m);
        payloads.emplace_back(p ? std::optional<std::string>(*p) : std::nullopt);
      }
      cv.notify_all();
    };
  }
  void forget() {
    const std::lock_guard lock(m);
    payloads.clear();
  }
  // Whether `payload` was heard within the deadline.
  bool wait_for(const std::optional<std::string>& payload) {
    std::unique_lock lock(m);
    return cv.wait_for(lock, deadline, [&] {
      return std::find(payloads.begin(), payloads.end(), payload) != payloads.end();
    });
  }
};

// What a probe stage saw: the documents it ran for, and whether a run's
// heartbeat told it the job was gone.
struct probe {
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::string> runs;
  unsigned failures_left = 0;  ///< fail this many runs, retryably
  bool hold = false;           ///< work until released or the job is taken away
  bool released = false;
  bool lost = false;

  template <class Pred>
  bool wait_for(Pred done) {
    std::unique_lock lock(m);
    return cv.wait_for(lock, deadline, done);
  }
  void release() {
    {
      const std::lock_guard lock(m);
      released = true;
    }
    cv.notify_all();
  }
};

// Lets a held probe finish however the test ends, so that its worker pool
// can stop.
struct releaser {
  explicit releaser(probe& q) : p(q) {}
  releaser(const releaser&) = delete;
  releaser& operator=(const releaser&) = delete;
  ~releaser() { p.release(); }
  probe& p;
};

class probe_stage final : public pipeline::stage {
public:
  explicit probe_stage(probe& p) : p_(p) {}
  const char* name() const noexcept override { return "probe"; }
  void run(const pipeline::job_input& in, pipeline::result_data&) override {
    std::unique_lock lock(p_.m);
    p_.runs.push_back(in.document_id);
    p_.cv.notify_all();
    if (p_.failures_left > 0) {
      --p_.failures_left;
      throw pipeline::stage_error({"internal_error", "once more", true});
    }
    while (p_.hold && !p_.released) {
      lock.unlock();
      try {
        in.heartbeat();
      } catch (...) {
        lock.lock();
        p_.lost = true;
        p_.cv.notify_all();
        throw;
      }
      lock.lock();
      p_.cv.wait_for(lock, 10ms, [this] { return p_.released; });
    }
  }

private:
  probe& p_;
};

// Two database objects on one database: `other` writes, as another process
// would; `here` is the one the waiting parts hold. Its connections carry an
// application_name of their own, so the test can see what they do.
class postgres_wakeups : public ::testing::Test {
protected:
  static constexpr const char* here_name = "docflow_here";

  void SetUp() override {
    url_ = test::shared_pg_server().create_database();
    other_ = std::make_unique<store::postgres::postgres_store>(url_, store::postgres::pool_settings{});
    other_->migrate();
    here_ = std::make_unique<store::postgres::postgres_store>(url_ + "?application_name=" + here_name,
                                                              store::postgres::pool_settings{});
    doc_ = add_document(*other_);
  }

  void TearDown() override {
    std::error_code ec;
    if (!blob_dir_.empty()) fs::remove_all(blob_dir_, ec);
  }

  // The document's bytes, where a worker fetches them.
  blob::blob_store& blobs() {
    if (!blobs_) {
      blob_dir_ = fs::temp_directory_path() / ("docflow-wakeups-" + core::random_hex(6));
      blobs_ = std::make_unique<blob::fs_blob_store>(blob_dir_);
      auto w = blobs_->begin(doc_.id);
      w->write("%PDF-1.4");
      w->commit();
    }
    return *blobs_;
  }

  std::unique_ptr<jobs::worker_pool> workers(probe& p, jobs::worker_options o) {
    std::vector<std::unique_ptr<pipeline::stage>> stages;
    stages.push_back(std::make_unique<probe_stage>(p));
    o.pipeline_version = "test/1";
    jobs::worker_pool::describe_metrics(metrics_);
    return std::make_unique<jobs::worker_pool>(*here_, blobs(), std::move(stages), o, metrics_,
                                               core::system_clock());
  }

  // Polls need not wake anything here; only a wake-up can.
  static jobs::worker_options slow_polls() {
    jobs::worker_options o;
    o.poll_interval = never;
    o.woken_poll_interval = never;
    return o;
  }

  core::result<store::process_result> request() {
    return other_->request_processing(doc_.id, std::nullopt, core::new_uuid_v7(), core::system_clock().now(),
                                      100, false);
  }

  // Whether `here` has a connection whose last statement was `sql`, now
  // idle: what it did, seen from outside.
  bool wait_for_statement_done(const std::string& sql) {
    pq::connection admin(url_, {});
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < until) {
      if (admin
              .exec(
                  "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle' AND "
                  "query = $2",
                  here_name, sql)
              .integer(0, 0) > 0) {
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::string url_;
  std::unique_ptr<store::postgres::postgres_store> other_;
  std::unique_ptr<store::postgres::postgres_store> here_;
  core::document doc_;
  fs::path blob_dir_;
  std::unique_ptr<blob::blob_store> blobs_;
  obs::metrics metrics_;
};

}  // namespace

TEST(wakeups_sqlite, there_are_none_and_waiting_parts_poll) {
  const auto dir = fs::temp_directory_path() / ("docflow-wakeups-" + core::random_hex(6));
  fs::create_directories(dir);
  {
    store::sqlite::sqlite_store db((dir / "docflow.db").string());
    EXPECT_EQ(db.wakeups(), nullptr);
  }
  fs::remove_all(dir);
}

TEST_F(postgres_wakeups, each_change_is_announced_with_what_it_names) {
  auto& hints = *here_->wakeups();
  heard available;
  heard changed;
  heard stopped;
  const auto a = hints.subscribe(wakeup_topic::job_available, available.handler());
  const auto c = hints.subscribe(wakeup_topic::document_changed, changed.handler());
  const auto s = hints.subscribe(wakeup_topic::job_stopped, stopped.handler());

  const auto now = core::system_clock().now();
  ASSERT_TRUE(
      other_->request_processing(doc_.id, std::nullopt, core::new_uuid_v7(), now, 100, false).has_value());
  EXPECT_TRUE(available.wait_for(std::to_string(core::to_unix_ms(now))))
      << "a new job is announced with the moment it is available";
  EXPECT_TRUE(changed.wait_for(doc_.id)) << "its PROCESSING event";

  const auto job = other_->claim_job(now, 30s, "token");
  ASSERT_TRUE(job);
  const auto retry_at = now + 1500ms;
  ASSERT_EQ(other_->fail_job(*job, now, {"internal_error", "x", true}, retry_at),
            store::failure_outcome::retry_scheduled);
  EXPECT_TRUE(available.wait_for(std::to_string(core::to_unix_ms(retry_at))))
      << "a retry is announced with its moment";

  const auto again = other_->claim_job(retry_at, 30s, "token-2");
  ASSERT_TRUE(again);
  ASSERT_TRUE(
      other_->cancel_processing(doc_.id, std::nullopt, {"cancelled", "x", true}, retry_at).has_value());
  EXPECT_TRUE(stopped.wait_for(again->job_id)) << "the cancelled job is named to whoever holds it";

  changed.forget();
  ASSERT_TRUE(other_->delete_document(doc_.id, std::nullopt).has_value());
  EXPECT_TRUE(changed.wait_for(doc_.id)) << "a deletion ends the document's streams everywhere";
}

TEST_F(postgres_wakeups, an_idle_worker_claims_a_new_job_at_once) {
  probe p;
  const auto pool = workers(p, slow_polls());
  // Its first claim found nothing: from now on it waits out its poll.
  ASSERT_TRUE(wait_for_statement_done("COMMIT")) << "the worker never claimed";
  ASSERT_TRUE(request().has_value());
  EXPECT_TRUE(p.wait_for([&] { return !p.runs.empty(); })) << "the new job waited for the poll";
}

TEST_F(postgres_wakeups, a_retry_runs_when_its_time_comes_not_at_the_next_poll) {
  probe p;
  p.failures_left = 1;
  auto o = slow_polls();
  o.backoff_base = 200ms;
  ASSERT_TRUE(request().has_value());
  const auto pool = workers(p, o);
  EXPECT_TRUE(p.wait_for([&] { return p.runs.size() >= 2; })) << "the retry waited for the poll";
}

TEST_F(postgres_wakeups, a_cancel_in_another_process_stops_the_worker_at_once) {
  probe p;
  p.hold = true;
  auto o = slow_polls();
  o.lease = 10min;  // its keeper's own look comes only every 200 s
  ASSERT_TRUE(request().has_value());
  const auto pool = workers(p, o);
  const releaser finally{p};
  ASSERT_TRUE(p.wait_for([&] { return !p.runs.empty(); }));
  ASSERT_TRUE(
      other_->cancel_processing(doc_.id, std::nullopt, {"cancelled", "x", true}, core::system_clock().now())
          .has_value());
  EXPECT_TRUE(p.wait_for([&] { return p.lost; })) << "the worker did not learn of the cancel";
}

TEST_F(postgres_wakeups, an_event_stream_wakes_for_a_change_made_elsewhere) {
  store::change_feed feed(*here_, never, never);
  std::mutex m;
  std::condition_variable cv;
  bool woken = false;
  const auto watching = feed.watch(doc_.id, [&] {
    {
      const std::lock_guard lock(m);
      woken = true;
    }
    cv.notify_all();
  });
  ASSERT_TRUE(request().has_value());
  std::unique_lock lock(m);
  EXPECT_TRUE(cv.wait_for(lock, deadline, [&] { return woken; })) << "the stream waited for the feed's query";
}

// The listener's connection dies with the server. Once it is back, the
// listener LISTENs again, tells everyone to look (what committed meanwhile
// was announced to nobody), and announces what commits from then on.
TEST(postgres_wakeups_restart, the_listener_comes_back_with_the_server) {
  test::pg_server server(true);
  store::postgres::pool_settings o;
  o.max_backoff = 200ms;
  const auto url = server.create_database();
  store::postgres::postgres_store other(url, o);
  other.migrate();
  store::postgres::postgres_store here(url, o);
  const auto d = add_document(other);

  heard changed;
  const auto s = here.wakeups()->subscribe(wakeup_topic::document_changed, changed.handler());
  server.stop();
  server.start();
  EXPECT_TRUE(changed.wait_for(std::nullopt)) << "no call to look at everything after the restart";

  // The writer's pool reconnects by itself too, after its backoff.
  const auto until = std::chrono::steady_clock::now() + deadline;
  bool requested = false;
  while (!requested && std::chrono::steady_clock::now() < until) {
    try {
      requested = other
                      .request_processing(d.id, std::nullopt, core::new_uuid_v7(), core::system_clock().now(),
                                          100, false)
                      .has_value();
    } catch (const store::store_unavailable&) {
      std::this_thread::sleep_for(50ms);
    }
  }
  ASSERT_TRUE(requested);
  EXPECT_TRUE(changed.wait_for(d.id)) << "a change after the restart was not announced";
}
