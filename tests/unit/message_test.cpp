#include <gtest/gtest.h>

#include "http/message.hpp"

namespace docflow::http {
namespace {

TEST(accepts_gzip, by_name_or_by_star) {
  for (const char* header : {"gzip", "GZIP", "x-gzip", "deflate, gzip", "gzip;q=0.5", "gzip; q=1.0", "*",
                             "br, *;q=0.1", "identity, gzip ;q=0.001"}) {
    EXPECT_TRUE(accepts_gzip(header)) << header;
  }
}

TEST(accepts_gzip, refused_by_weight_or_absent) {
  for (const char* header : {"", "identity", "br", "deflate, br", "gzip;q=0", "gzip; q=0.000", "*;q=0",
                             "gzip;q=0, *", "*, gzip;q=0", "deflate, *;q=0", "gzipx", "notgzip"}) {
    EXPECT_FALSE(accepts_gzip(header)) << header;
  }
}

}  // namespace
}  // namespace docflow::http
