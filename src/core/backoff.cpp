#include "core/backoff.hpp"

#include <algorithm>
#include <cstdint>

namespace docflow::core {

std::chrono::milliseconds retry_delay(unsigned attempt, std::chrono::milliseconds base,
                                      std::chrono::milliseconds cap, double jitter) {
  const auto exponent = std::min(attempt == 0 ? 0U : attempt - 1, 30U);
  const auto full = std::min(base.count() * (std::int64_t{1} << exponent), cap.count());
  const auto half = full / 2;
  const auto spread =
      static_cast<std::int64_t>(static_cast<double>(full - half) * std::clamp(jitter, 0.0, 1.0));
  return std::chrono::milliseconds{half + spread};
}

}  // namespace docflow::core
