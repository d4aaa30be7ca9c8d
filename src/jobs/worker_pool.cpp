#include "jobs/worker_pool.hpp"

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string_view>
#include <thread>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "blob/blob_store.hpp"
#include "core/backoff.hpp"
#include "core/ids.hpp"
#include "jobs/backoff.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "pipeline/stage.hpp"
#include "store/database.hpp"
#include "store/wakeups.hpp"

namespace docflow::jobs {

namespace {

using std::chrono::milliseconds;

// Thrown by the heartbeat when the lease is gone (cancelled, taken over, deleted).
struct lease_lost {};

// Retry moments kept ahead at most; beyond them, the poll finds the job.
constexpr std::size_t max_due = 1024;

// Progress events a job writes at most: four a second.
constexpr milliseconds progress_every{250};

// Writes a job's progress reports, at most one per progress_every and none
// in a run's first: a report that comes sooner is held, replaced by any
// later one, and written by the first flush() after the interval. So a run
// too short to watch costs no write, and a long one is seen within a
// quarter of a second of each change (the sandbox's wait flushes as often).
class progress_writer {
public:
  progress_writer(store::database& db, const store::claimed_job& job, const core::clock& clock,
                  std::atomic<bool>& lost)
      : db_(db), job_(job), clock_(clock), lost_(lost) {}

  void report(core::progress p) { held_ = std::move(p); }

  void flush() {
    const auto now = std::chrono::steady_clock::now();
    if (!held_ || now < next_) return;
    try {
      if (!db_.report_progress(job_, *held_, clock_.now())) lost_ = true;
    } catch (const std::exception& e) {
      // Progress is a courtesy: a database away for a moment costs a report, not the job.
      obs::log(obs::level::warn, "job.progress_failed", {{"job_id", job_.job_id}, {"error", e.what()}});
    }
    held_.reset();
    next_ = now + progress_every;
  }

private:
  store::database& db_;
  const store::claimed_job& job_;
  const core::clock& clock_;
  std::atomic<bool>& lost_;
  std::optional<core::progress> held_;
  std::chrono::steady_clock::time_point next_ = std::chrono::steady_clock::now() + progress_every;
};

// The moment a job_available hint names, or nullopt (now) if it names none.
std::optional<core::time_point> hinted_time(std::optional<std::string_view> payload) {
  if (!payload) return std::nullopt;
  std::int64_t ms = 0;
  const auto* end = payload->data() + payload->size();
  const auto [at, ec] = std::from_chars(payload->data(), end, ms);
  if (ec != std::errc{} || at != end) return std::nullopt;
  return core::from_unix_ms(ms);
}

double seconds_between(core::time_point a, core::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The stored form of what the pipeline produced (without the full text),
// and which pipeline produced it: a deployment finds what to run again
// after an upgrade.
std::string summary_json(const pipeline::result_data& r, const std::string& pipeline_version,
                         const std::vector<std::unique_ptr<pipeline::stage>>& stages) {
  const auto& e = r.extraction;
  const auto& a = r.extraction.analysis;
  boost::json::array keywords;
  for (const auto& k : a.keywords)
    keywords.push_back(boost::json::object{{"term", k.term}, {"count", k.count}});
  boost::json::object summary{
      {"pages", e.pages ? boost::json::value(*e.pages) : boost::json::value(nullptr)},
      {"word_count", a.word_count},
      {"char_count", a.char_count},
      {"line_count", a.line_count},
      {"language", a.language},
      {"language_confidence", a.language_confidence},
      {"keywords", std::move(keywords)},
      {"metadata", pipeline::metadata_json(e.metadata)},
      {"truncated", e.truncated},
      {"page_sources", pipeline::page_sources_json(e.per_page)},
      {"ocr", pipeline::ocr_json(e.ocr)},
  };
  // null when the enrich stage is off; the stage only keeps answers that parse.
  boost::json::error_code ec;
  auto ml = r.ml_json ? boost::json::parse(*r.ml_json, ec) : boost::json::value(nullptr);
  summary["ml"] = ec ? boost::json::value(nullptr) : std::move(ml);
  boost::json::array names;
  for (const auto& stage : stages) names.emplace_back(stage->name());
  summary["pipeline"] = boost::json::object{{"version", pipeline_version}, {"stages", std::move(names)}};
  return boost::json::serialize(summary);
}

}  // namespace

struct worker_pool::impl {
  impl(store::database& d, blob::blob_store& b, std::vector<std::unique_ptr<pipeline::stage>> s,
       worker_options o, obs::metrics& m, const core::clock& c)
      : db(d), blobs(b), stages(std::move(s)), options(std::move(o)), metrics(m), clock(c) {}

  store::database& db;
  blob::blob_store& blobs;
  std::vector<std::unique_ptr<pipeline::stage>> stages;
  worker_options options;
  obs::metrics& metrics;
  const core::clock& clock;

  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  // From wake-ups (PostgreSQL): jobs announced as claimable now, at most one
  // per worker (a worker back from a job claims anyway), and the moments
  // announced retries become claimable.
  unsigned hints = 0;
  std::set<core::time_point> due;
  std::vector<std::thread> threads;
  // Last: unsubscribed before anything its handler touches goes.
  std::optional<store::wakeups::subscription> announced;

  // Called by the database's wake-ups when a job becomes available (or,
  // without a payload, when announcements may have been lost).
  void on_job_available(std::optional<std::string_view> payload) {
    const auto at = hinted_time(payload);
    {
      const std::lock_guard lock(mutex);
      if (!payload) {
        hints = options.workers;
      } else if (at && *at > clock.now()) {
        if (due.size() < max_due) due.insert(*at);
      } else {
        hints = std::min(hints + 1, options.workers);
      }
    }
    if (payload) {
      wake.notify_one();
    } else {
      wake.notify_all();
    }
  }

  // Waits, when no job was there to claim, until one may be: announced now,
  // a retry's moment come, or the poll interval passed. False when the pool
  // is stopping.
  bool idle() {
    using steady = std::chrono::steady_clock;
    const auto give_up = steady::now() + (announced ? options.woken_poll_interval : options.poll_interval);
    std::unique_lock lock(mutex);
    for (;;) {
      if (stopping) return false;
      if (hints > 0) {
        --hints;
        return true;
      }
      auto until = give_up;
      if (!due.empty()) {
        const auto left = *due.begin() - clock.now();
        if (left <= core::time_point::duration::zero()) {
          due.erase(due.begin());
          return true;
        }
        until = std::min(until, steady::now() + std::chrono::ceil<milliseconds>(left));
      }
      if (steady::now() >= give_up) return true;
      wake.wait_until(lock, until);
    }
  }

  void loop(unsigned index) {
    std::mt19937_64 rng(std::random_device{}() + index);
    std::uniform_real_distribution<double> jitter(0.0, 1.0);
    for (;;) {
      {
        const std::lock_guard lock(mutex);
        if (stopping) return;
      }
      std::optional<store::claimed_job> job;
      try {
        job = db.claim_job(clock.now(), options.lease, core::random_hex(16), options.max_running_per_owner);
      } catch (const std::exception& e) {
        obs::log(obs::level::warn, "job.claim_failed", {{"error", e.what()}});
      }
      if (!job) {
        if (!idle()) return;
        continue;
      }
      // A lapsed lease taken over: its worker died or stalled past the lease.
      if (job->taken_over) metrics.add("docflow_job_lease_takeovers_total", "");
      metrics.add("docflow_workers_busy", "", 1);
      run(*job, jitter(rng));
      metrics.add("docflow_workers_busy", "", -1);
    }
  }

  void run(const store::claimed_job& job, double jitter_sample) {
    const auto& doc = job.document;
    const boost::json::object ids{{"document_id", doc.id}, {"job_id", job.job_id}, {"attempt", job.attempt}};
    const auto claimed_at = clock.now();
    metrics.observe("docflow_job_queue_wait_seconds", "",
                    std::max(0.0, seconds_between(job.queued_at, claimed_at)));
    auto fields = ids;
    fields["queue_wait_ms"] = std::chrono::duration_cast<milliseconds>(claimed_at - job.queued_at).count();
    obs::log(obs::level::info, "job.claimed", fields);

    if (job.attempt > options.max_attempts) {
      // Its earlier workers died mid-job: stop handing it out.
      finish_failed(job, {"worker_lost", "processing stopped repeatedly before finishing", true},
                    std::nullopt);
      return;
    }

    // Keeps the lease alive while the stages run (renewed every third of
    // it), and looks whether it is still held: a cancel must free the worker
    // and kill the extraction at once, not at the next renewal (up to 10 s
    // later). Without wake-ups it looks every second; with them, when the
    // job is announced stopped (or announcements may have been lost). Lost
    // (cancelled, deleted, taken over): stop at the next heartbeat and
    // record nothing.
    std::mutex m;
    std::condition_variable_any cv;
    bool look_now = false;
    std::optional<store::wakeups::subscription> stopped;
    if (auto* source = db.wakeups()) {
      stopped.emplace(source->subscribe(store::wakeup_topic::job_stopped,
                                        [&m, &cv, &look_now, &job](std::optional<std::string_view> id) {
                                          if (id && *id != job.job_id) return;
                                          {
                                            const std::lock_guard lock(m);
                                            look_now = true;
                                          }
                                          cv.notify_all();
                                        }));
      // A cancel committed between the claim and the subscription was
      // announced to nobody: look once now.
      try {
        if (!db.lease_held(job)) {
          obs::log(obs::level::info, "job.abandoned", ids);
          return;
        }
      } catch (const std::exception& e) {
        obs::log(obs::level::warn, "job.renew_failed", {{"job_id", job.job_id}, {"error", e.what()}});
      }
    }
    const auto look_every =
        stopped ? options.lease / 3 : std::min<milliseconds>(std::chrono::seconds(1), options.lease / 3);
    std::atomic<bool> lost{false};
    std::jthread keeper([this, &job, &lost, &m, &cv, &look_now, look_every](const std::stop_token& stop) {
      auto renewed_at = std::chrono::steady_clock::now();
      while (!stop.stop_requested()) {
        {
          std::unique_lock lock(m);
          cv.wait_for(lock, stop, look_every, [&look_now] { return look_now; });
          look_now = false;
        }
        if (stop.stop_requested()) return;
        try {
          const bool renew = std::chrono::steady_clock::now() - renewed_at >= options.lease / 3;
          const bool held = renew ? db.renew_lease(job, clock.now(), options.lease) : db.lease_held(job);
          if (!held) {
            lost = true;
            return;
          }
          if (renew) renewed_at = std::chrono::steady_clock::now();
        } catch (const std::exception& e) {
          obs::log(obs::level::warn, "job.renew_failed", {{"job_id", job.job_id}, {"error", e.what()}});
        }
      }
    });
    progress_writer progress(db, job, clock, lost);
    const auto heartbeat = [&lost, &progress] {
      progress.flush();
      if (lost) throw lease_lost{};
    };
    const auto report = [&heartbeat, &progress](const core::progress& p) {
      progress.report(p);
      heartbeat();
    };

    pipeline::result_data out;
    try {
      const auto copy = blobs.fetch(doc.id);
      const pipeline::job_input in{doc.id, doc.kind, doc.sha256, copy->path(), heartbeat, report};
      for (const auto& stage : stages) {
        report({stage->name(), std::nullopt, std::nullopt});
        // The simulated delay is spent in the first stage, so that what
        // watches a slow run sees the stage it would see in a real one.
        if (&stage == &stages.front()) {
          for (auto left = options.simulated_delay; left.count() > 0; left -= milliseconds{50}) {
            heartbeat();
            std::this_thread::sleep_for(std::min(left, milliseconds{50}));
          }
        }
        const auto started = clock.now();
        stage->run(in, out);
        metrics.observe("docflow_stage_duration_seconds", obs::metrics::label("stage", stage->name()),
                        seconds_between(started, clock.now()));
      }
      heartbeat();
    } catch (const lease_lost&) {
      obs::log(obs::level::info, "job.abandoned", ids);
      return;
    } catch (const pipeline::stage_error& e) {
      keeper.request_stop();
      handle_failure(job, e.failure(), jitter_sample);
      return;
    } catch (const blob::blob_error& e) {
      keeper.request_stop();
      obs::log(obs::level::warn, "job.storage_failed", {{"job_id", job.job_id}, {"error", e.what()}});
      handle_failure(job, {core::errc::storage_unavailable, "the stored file could not be read", true},
                     jitter_sample);
      return;
    } catch (const std::exception& e) {
      keeper.request_stop();
      obs::log(obs::level::error, "job.internal_error", {{"job_id", job.job_id}, {"error", e.what()}});
      handle_failure(job, {"internal_error", "processing failed unexpectedly", true}, jitter_sample);
      return;
    }
    keeper.request_stop();
    const auto now = clock.now();
    // attempts: every attempt at this document, as processing.attempts counts them.
    const store::stored_result result{options.pipeline_version,
                                      doc.started_at.value_or(claimed_at),
                                      now,
                                      doc.attempts,
                                      summary_json(out, options.pipeline_version, stages),
                                      std::move(out.extraction.text),
                                      {},
                                      0};
    const auto recorded = record(job, [&] { return db.complete_job(job, result); });
    if (!recorded) return;
    if (!*recorded) {
      obs::log(obs::level::info, "job.abandoned", ids);
      return;
    }
    metrics.add("docflow_jobs_total", obs::metrics::label("outcome", "completed"));
    metrics.observe("docflow_job_duration_seconds", "", seconds_between(claimed_at, now));
    obs::log(obs::level::info, "document.completed", ids);
  }

  // Records the job's outcome with `write` (fenced by the lease); nullopt
  // when it could not. A database that is away for a moment (restarting) is
  // waited for, for up to one lease: given up at once, the outcome would be
  // lost and the lease would lapse, so that the whole job ran again. Not
  // recorded at all, the lease lapses and another attempt runs: nothing is
  // lost.
  template <class Write>
  auto record(const store::claimed_job& job, Write write) -> std::optional<decltype(write())> {
    const auto give_up = std::chrono::steady_clock::now() + options.lease;
    for (milliseconds wait{100};; wait = std::min(2 * wait, milliseconds{2'000})) {
      try {
        return write();
      } catch (const store::store_unavailable& e) {
        if (std::chrono::steady_clock::now() + wait >= give_up) {
          obs::log(obs::level::error, "job.record_failed", {{"job_id", job.job_id}, {"error", e.what()}});
          return std::nullopt;
        }
        obs::log(obs::level::warn, "job.record_retry", {{"job_id", job.job_id}, {"error", e.what()}});
      } catch (const std::exception& e) {
        obs::log(obs::level::error, "job.record_failed", {{"job_id", job.job_id}, {"error", e.what()}});
        return std::nullopt;
      }
      std::unique_lock lock(mutex);
      if (wake.wait_for(lock, wait, [this] { return stopping; })) return std::nullopt;
    }
  }

  void handle_failure(const store::claimed_job& job, const core::failure& f, double jitter_sample) {
    if (retry_allowed(f, job.attempt, options.max_attempts)) {
      const auto delay =
          core::retry_delay(job.attempt, options.backoff_base, options.backoff_cap, jitter_sample);
      finish_failed(job, f, clock.now() + delay);
      return;
    }
    finish_failed(job, f, std::nullopt);
  }

  void finish_failed(const store::claimed_job& job, const core::failure& f,
                     std::optional<core::time_point> retry_at) {
    boost::json::object fields{{"document_id", job.document.id}, {"job_id", job.job_id},
                               {"attempt", job.attempt},         {"code", f.code},
                               {"message", f.message},           {"retryable", f.retryable}};
    const auto outcome = record(job, [&] { return db.fail_job(job, clock.now(), f, retry_at); });
    if (!outcome) return;
    switch (*outcome) {
      case store::failure_outcome::retry_scheduled:
        fields["retry_in_ms"] = std::chrono::duration_cast<milliseconds>(*retry_at - clock.now()).count();
        metrics.add("docflow_jobs_total", obs::metrics::label("outcome", "retried"));
        obs::log(obs::level::warn, "job.retry", fields);
        break;
      case store::failure_outcome::failed:
        metrics.add("docflow_jobs_total",
                    obs::metrics::label("outcome", "failed") + ',' + obs::metrics::label("code", f.code));
        obs::log(obs::level::warn, "document.failed", fields);
        break;
      case store::failure_outcome::lease_lost: obs::log(obs::level::info, "job.abandoned", fields); break;
    }
  }
};

worker_pool::worker_pool(store::database& db, blob::blob_store& blobs,
                         std::vector<std::unique_ptr<pipeline::stage>> stages, worker_options options,
                         obs::metrics& metrics, const core::clock& clock)
    : impl_(std::make_unique<impl>(db, blobs, std::move(stages), std::move(options), metrics, clock)) {
  if (auto* hints = db.wakeups()) {
    impl_->announced.emplace(
        hints->subscribe(store::wakeup_topic::job_available,
                         [pool = impl_.get()](auto payload) { pool->on_job_available(payload); }));
  }
  metrics.set("docflow_workers", "", impl_->options.workers);
  for (unsigned i = 0; i < impl_->options.workers; ++i) {
    impl_->threads.emplace_back([this, i] { impl_->loop(i); });
  }
}

worker_pool::~worker_pool() {
  stop();
  for (auto& t : impl_->threads) t.join();
}

void worker_pool::stop() noexcept {
  {
    const std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
}

void worker_pool::describe_metrics(obs::metrics& metrics) {
  metrics.describe("docflow_jobs_total", obs::metrics::kind::counter,
                   "Job attempts by outcome (completed, retried, failed by code).");
  metrics.describe("docflow_job_duration_seconds", obs::metrics::kind::histogram,
                   "Time from claim to completion of successful jobs.",
                   {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300});
  metrics.describe("docflow_job_queue_wait_seconds", obs::metrics::kind::histogram,
                   "Time a job waited between becoming available and being claimed.",
                   {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600});
  metrics.describe("docflow_stage_duration_seconds", obs::metrics::kind::histogram,
                   "Time one pipeline stage took, by stage, when it succeeded.",
                   {0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300});
  metrics.describe("docflow_job_lease_takeovers_total", obs::metrics::kind::counter,
                   "Jobs this process's workers claimed from a worker whose lease had lapsed.");
  metrics.describe("docflow_workers", obs::metrics::kind::gauge,
                   "Worker threads configured in this process.");
  metrics.describe("docflow_workers_busy", obs::metrics::kind::gauge,
                   "Worker threads of this process running a job now.");
  metrics.set("docflow_workers", "", 0);
  metrics.set("docflow_workers_busy", "", 0);
  metrics.add("docflow_job_lease_takeovers_total", "", 0);
}

}  // namespace docflow::jobs
