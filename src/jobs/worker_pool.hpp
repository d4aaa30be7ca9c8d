#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace docflow::core {
class clock;
}
namespace docflow::store {
class database;
}
namespace docflow::blob {
class blob_store;
}
namespace docflow::obs {
class metrics;
}
namespace docflow::pipeline {
class stage;
}

namespace docflow::jobs {

struct worker_options {
  unsigned workers = 1;
  std::chrono::milliseconds lease{30000};
  unsigned max_attempts = 3;
  /// Jobs of one owner running at once, over every process; 0: no limit.
  unsigned max_running_per_owner = 0;
  std::chrono::milliseconds simulated_delay{0};
  /// How often an idle worker looks for a job when the database gives no
  /// wake-ups (SQLite).
  std::chrono::milliseconds poll_interval{250};
  /// The same when it does (PostgreSQL): a new job or a retry is announced,
  /// so this poll only finds what nothing announces, a job whose worker
  /// died (its lease lapsed).
  std::chrono::milliseconds woken_poll_interval{5000};
  std::chrono::milliseconds backoff_base{1000};
  std::chrono::milliseconds backoff_cap{60000};
  std::string pipeline_version;
};

/// Threads that claim jobs from the database, run the pipeline under a
/// renewed lease, and record the outcome with the lease token checked. The
/// same loop serves `docflow serve` (in-process workers) and `docflow worker`.
/// Idle workers poll, and a job's keeper looks every second whether a
/// cancel took it; when the database hands out wake-ups (PostgreSQL), both
/// act on them instead, the moment the change commits in any process, and
/// poll only rarely, as a safety net.
class worker_pool {
public:
  /// Starts `options.workers` threads at once. `stages` run in order.
  worker_pool(store::database& db, blob::blob_store& blobs,
              std::vector<std::unique_ptr<pipeline::stage>> stages, worker_options options,
              obs::metrics& metrics, const core::clock& clock);
  /// Stops claiming, lets running jobs finish, joins. A job cut short by
  /// the process dying is taken over once its lease lapses.
  ~worker_pool();
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  /// Asks the threads to stop after their current job; does not wait.
  void stop() noexcept;

  /// Declares the job metrics (call once per registry).
  static void describe_metrics(obs::metrics& metrics);

  struct impl;  ///< defined in worker_pool.cpp

private:
  std::unique_ptr<impl> impl_;
};

}  // namespace docflow::jobs
