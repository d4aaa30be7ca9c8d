#include "api/ops.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <chrono>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "api/backend.hpp"
#include "blob/blob_store.hpp"
#include "config/config.hpp"
#include "core/clock.hpp"
#include "http/admission.hpp"
#include "http/problem.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "obs/process.hpp"
#include "store/database.hpp"

namespace docflow::api::ops {

namespace {
// Runs one readiness probe on the blocking pool: "ok" or a failure note.
// The failure's details go to the log only.
template <class F>
boost::asio::awaitable<std::string> probe(ops_context s, const http::request& req, const char* what, F f) {
  try {
    co_await backend_call(s, cost::blocking, f);
    co_return "ok";
  } catch (const std::exception& e) {
    obs::log(obs::level::warn, "readiness.failed",
             {{"request_id", req.request_id}, {"check", what}, {"error", e.what()}});
  }
  co_return "unavailable";
}

// Read from the database: the same figures whichever process reads them.
constexpr std::array<const char*, 4> shared_gauges{"docflow_jobs_queued", "docflow_jobs_running",
                                                   "docflow_jobs_oldest_queued_age_seconds",
                                                   "docflow_webhook_deliveries_pending"};

bool same_secret(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// The handlers take their context by value: it is a handful of references,
// and a coroutine must not hold a reference to the temporary it was called with.
boost::asio::awaitable<http::response> healthz(ops_context, http::request&) {
  co_return http::response::json(200, boost::json::object{{"status", "ok"}});
}

boost::asio::awaitable<http::response> readyz(ops_context s, http::request& req) {
  const auto database = co_await probe(s, req, "database", [&s] { s.db.check(); });
  const auto storage = co_await probe(s, req, "storage", [&s] { s.blobs.check(); });
  boost::json::object checks{{"database", database}, {"storage", storage}};
  if (database == "ok" && storage == "ok") {
    co_return http::response::json(200, boost::json::object{{"status", "ready"}, {"checks", checks}});
  }
  auto p = http::service_unavailable("A dependency of the service is not answering; see checks.");
  p.extensions["checks"] = checks;
  auto res = http::make_problem(req, p);
  res.fields.set("Retry-After", "5");
  co_return res;
}

boost::asio::awaitable<http::response> metrics(ops_context s, http::request& req) {
  if (s.cfg.metrics_token) {
    const auto token = http::bearer_token(req);
    if (!token || !same_secret(*token, *s.cfg.metrics_token)) {
      auto res = http::make_problem(req, http::unauthorized("This endpoint needs the metrics bearer token."));
      res.fields.set("WWW-Authenticate", token ? R"(Bearer realm="docflow", error="invalid_token")"
                                               : R"(Bearer realm="docflow")");
      co_return res;
    }
  }
  // Read when scraped, like the job gauges below: the gate keeps the count.
  if (s.uploads) s.metrics.set("docflow_uploads_waiting", "", static_cast<double>(s.uploads->waiting()));
  obs::sample_process(s.metrics);
  if (const auto pool = s.db.connection_pool()) {
    s.metrics.set("docflow_db_pool_connections", "", static_cast<double>(pool->size));
    s.metrics.set("docflow_db_pool_connections_in_use", "", static_cast<double>(pool->in_use));
    s.metrics.set("docflow_db_pool_waiting", "", static_cast<double>(pool->waiting));
    s.metrics.set("docflow_db_pool_waits_total", "", static_cast<double>(pool->waits));
    s.metrics.set("docflow_db_pool_wait_seconds_total", "", pool->wait_seconds);
  }
  // The queue is the database's to tell, the same for every process: only
  // the maintenance leader reports it, so that a sum over the cluster
  // counts it once. A process that stopped leading drops its series.
  const bool leader = s.maintenance_leader != nullptr && s.maintenance_leader->load();
  s.metrics.set("docflow_maintenance_leader", "", leader ? 1 : 0);
  if (!leader) {
    for (const auto* name : shared_gauges) s.metrics.remove(name, "");
  } else {
    try {
      const auto stats = co_await backend_call(s, cost::blocking, [&s] { return s.db.job_stats(); });
      s.metrics.set("docflow_jobs_queued", "", static_cast<double>(stats.queued));
      s.metrics.set("docflow_jobs_running", "", static_cast<double>(stats.running));
      const auto waited = stats.oldest_available ? core::system_clock().now() - *stats.oldest_available
                                                 : core::time_point::duration::zero();
      s.metrics.set("docflow_jobs_oldest_queued_age_seconds", "",
                    std::max(0.0, std::chrono::duration<double>(waited).count()));
      const auto pending =
          co_await backend_call(s, cost::blocking, [&s] { return s.db.pending_deliveries(); });
      s.metrics.set("docflow_webhook_deliveries_pending", "", static_cast<double>(pending));
    } catch (const store::store_error& e) {
      obs::log(obs::level::warn, "metrics.job_stats_failed",
               {{"request_id", req.request_id}, {"error", e.what()}});
    }
  }
  co_return http::response::text(200, s.metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
}
}  // namespace

std::vector<http::route> routes(const std::function<ops_context()>& get) {
  using http::auth_policy;
  const auto bind = [get](auto fn) { return [get, fn](http::request& r) { return fn(get(), r); }; };
  constexpr std::size_t no_body = 0;
  return {
      {"GET", "/healthz", bind(healthz), auth_policy::none, no_body},
      {"GET", "/readyz", bind(readyz), auth_policy::none, no_body},
      {"GET", "/metrics", bind(metrics), auth_policy::none, no_body},
  };
}

void describe_metrics(const ops_context& c) {
  c.metrics.describe("docflow_jobs_queued", obs::metrics::kind::gauge,
                     "Jobs waiting to be claimed (maintenance leader only: shared state).");
  c.metrics.describe("docflow_jobs_running", obs::metrics::kind::gauge,
                     "Jobs held by a worker now (maintenance leader only: shared state).");
  c.metrics.describe("docflow_jobs_oldest_queued_age_seconds", obs::metrics::kind::gauge,
                     "Age of the longest-waiting available job, 0 when none (maintenance leader only).");
  c.metrics.describe("docflow_webhook_deliveries_pending", obs::metrics::kind::gauge,
                     "Webhook deliveries waiting to be sent or being sent (maintenance leader only).");
  c.metrics.describe("docflow_db_pool_connections", obs::metrics::kind::gauge,
                     "PostgreSQL connections this process's pool may open (DOCFLOW_DATABASE_POOL).");
  c.metrics.describe("docflow_db_pool_connections_in_use", obs::metrics::kind::gauge,
                     "PostgreSQL connections of the pool lent to a call now.");
  c.metrics.describe("docflow_db_pool_waiting", obs::metrics::kind::gauge,
                     "Database calls waiting in line for a connection now.");
  c.metrics.describe("docflow_db_pool_waits_total", obs::metrics::kind::counter,
                     "Database calls that found every connection lent and waited for one.");
  c.metrics.describe("docflow_db_pool_wait_seconds_total", obs::metrics::kind::counter,
                     "Time database calls spent waiting for a connection, in all.");
  c.metrics.describe("docflow_maintenance_leader", obs::metrics::kind::gauge,
                     "1 in the one process that leads maintenance and reports the shared-state gauges.");
  if (c.uploads) {
    c.metrics.describe("docflow_uploads_waiting", obs::metrics::kind::gauge,
                       "Uploads waiting for a turn to receive their body (DOCFLOW_MAX_ACTIVE_UPLOADS).");
  }
}

}  // namespace docflow::api::ops
