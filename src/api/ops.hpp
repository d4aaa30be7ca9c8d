#pragma once

#include <functional>
#include <vector>

#include "api/services.hpp"
#include "http/router.hpp"

namespace docflow::api::ops {

/// GET /healthz (200 while the process runs), /readyz (200 when the
/// database and the blob store answer, else a 503 problem whose `checks`
/// name what failed) and /metrics (Prometheus text; 401 without the metrics
/// token when one is configured). Each handler calls `get` for its context
/// when a request comes; what the context refers to must outlive the routes.
std::vector<http::route> routes(const std::function<ops_context()>& get);

/// Declares the metrics that /metrics reads when scraped.
void describe_metrics(const ops_context& c);

}  // namespace docflow::api::ops
