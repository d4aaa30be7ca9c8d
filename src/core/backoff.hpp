#pragma once

#include <chrono>

namespace docflow::core {

/// The wait before retry number `attempt` (1 = after the first failure):
/// base · 2^(attempt-1), capped, then "equal jitter": half fixed, half
/// scaled by `jitter` in [0, 1], so the retries of many callers that failed
/// together spread out. Used for jobs and for S3 requests.
std::chrono::milliseconds retry_delay(unsigned attempt, std::chrono::milliseconds base,
                                      std::chrono::milliseconds cap, double jitter);

}  // namespace docflow::core
