#pragma once

namespace docflow::core {
struct failure;
}

namespace docflow::jobs {

/// Whether a job that failed with `f` on attempt number `attempt` (1 = the
/// first) runs again: a transient failure while attempts remain, except that
/// a document that ran past the extraction deadline twice is taken to be too
/// slow, not unlucky (each try costs the whole deadline).
bool retry_allowed(const core::failure& f, unsigned attempt, unsigned max_attempts);

}  // namespace docflow::jobs
