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
  std::chrono::milliseconds simulated_delay{0};
  std::chrono::milliseconds poll_interval{250};
  std::chrono::milliseconds backoff_base{1000};
  std::chrono::milliseconds backoff_cap{60000};
  std::string pipeline_version;
};

/// Threads that claim jobs from the database, run the pipeline under a
/// renewed lease, and record the outcome with the lease token checked. The
/// same loop serves `docflow serve` (in-process workers) and `docflow worker`.
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
