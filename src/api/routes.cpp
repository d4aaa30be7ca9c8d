#include "api/routes.hpp"

#include "api/ops.hpp"
#include "api/services.hpp"

namespace docflow::api {

namespace {
constexpr std::size_t no_body = 0;
}  // namespace

std::vector<http::route> routes(services& s) {
  using http::auth_policy;
  // Each handler is a free coroutine; the lambdas only bind the services.
  return {
      {"GET", "/healthz", [&s](http::request& r) { return ops::healthz(s, r); }, auth_policy::none, no_body},
      {"GET", "/readyz", [&s](http::request& r) { return ops::readyz(s, r); }, auth_policy::none, no_body},
      {"GET", "/metrics", [&s](http::request& r) { return ops::metrics(s, r); }, auth_policy::none, no_body},
  };
}

void describe_metrics(services& s) { ops::describe_metrics(s); }

}  // namespace docflow::api
