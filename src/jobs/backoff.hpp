#pragma once

#include <chrono>

namespace docflow::core {
struct failure;
}

namespace docflow::jobs {

/// Whether a job that failed with `f` on attempt number `attempt` (1 = the
/// first) runs again: a transient failure while attempts remain, except that
/// a document that ran past the extraction deadline twice is taken to be too
/// slow, not unlucky (each try costs the whole deadline).
bool retry_allowed(const core::failure& f, unsigned attempt, unsigned max_attempts);

/// The wait before retry number `attempt` (1 = after the first failure):
/// base · 2^(attempt-1), capped, then "equal jitter": half fixed, half
/// scaled by `jitter` in [0, 1], so retries of many jobs spread out.
std::chrono::milliseconds retry_delay(unsigned attempt, std::chrono::milliseconds base,
                                      std::chrono::milliseconds cap, double jitter);

}  // namespace docflow::jobs
