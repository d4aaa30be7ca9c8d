#pragma once

#include <vector>

#include "http/router.hpp"

namespace docflow::api {

struct services;

/// The whole API on one screen: every route, its handler, auth policy and
/// body limit. `s` must outlive the returned routes.
std::vector<http::route> routes(services& s);

/// Declares the metrics the handlers maintain.
void describe_metrics(services& s);

}  // namespace docflow::api
