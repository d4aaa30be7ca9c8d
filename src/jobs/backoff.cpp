#include "jobs/backoff.hpp"

#include "core/document.hpp"
#include "pipeline/stage.hpp"

namespace docflow::jobs {

bool retry_allowed(const core::failure& f, unsigned attempt, unsigned max_attempts) {
  constexpr unsigned timeouts_allowed = 2;
  if (!f.retryable || attempt >= max_attempts) return false;
  return !f.is(core::errc::extractor_timeout) || attempt < timeouts_allowed;
}

}  // namespace docflow::jobs
