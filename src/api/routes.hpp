#pragma once

#include <string>
#include <vector>

#include "http/router.hpp"

namespace docflow::api {

struct services;

/// The whole API on one screen: every route, its handler, auth policy and
/// body limit. `s` must outlive the returned routes.
std::vector<http::route> routes(services& s);

/// A route's method and pattern, for what needs the table without serving
/// it: the hidden `docflow routes` command and the OpenAPI contract test.
struct route_signature {
  std::string method;
  std::string pattern;
};

/// The method and pattern of every route routes() returns, in its order.
std::vector<route_signature> route_signatures();

/// Declares the metrics the handlers maintain.
void describe_metrics(services& s);

}  // namespace docflow::api
