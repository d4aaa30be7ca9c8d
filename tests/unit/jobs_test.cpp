// The job rules that need no worker threads: the retry schedule. The lease
// protocol of the store is part of the store's contract
// (store_contract_test.cpp), run on every engine.
#include <gtest/gtest.h>

#include "core/backoff.hpp"
#include "core/document.hpp"
#include "jobs/backoff.hpp"

namespace {

using namespace std::chrono_literals;

TEST(retry_delay, doubles_per_attempt_within_the_jitter_band) {
  for (unsigned attempt = 1; attempt <= 5; ++attempt) {
    const auto full = 1000ms * (1 << (attempt - 1));
    EXPECT_EQ(docflow::core::retry_delay(attempt, 1s, 60s, 0.0), full / 2) << attempt;
    EXPECT_EQ(docflow::core::retry_delay(attempt, 1s, 60s, 1.0), full) << attempt;
    EXPECT_EQ(docflow::core::retry_delay(attempt, 1s, 60s, 0.5), full * 3 / 4) << attempt;
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
  EXPECT_EQ(docflow::core::retry_delay(20, 1s, 60s, 1.0), 60s);
  EXPECT_EQ(docflow::core::retry_delay(200, 1s, 60s, 0.0), 30s);  // huge attempts do not overflow
  EXPECT_EQ(docflow::core::retry_delay(1, 1s, 60s, 7.0), 1s);
  EXPECT_EQ(docflow::core::retry_delay(1, 1s, 60s, -3.0), 500ms);
}

}  // namespace
