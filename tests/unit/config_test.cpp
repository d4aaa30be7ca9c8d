#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "config/units.hpp"

using namespace docflow;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

namespace {

using values_map = std::map<std::string, std::string>;

config::config load_with(const std::string& env, const std::string& value, unsigned cores = 4) {
  return config::load({{env, value}}, cores);
}

bool listed_in_settings(const std::string& env) {
  for (const auto& s : config::settings()) {
    if (s.env == env) {
      return true;
    }
  }
  return false;
}

}  // namespace

// -----------------------------------------------------------------------------------------------------------
// Defaults

TEST(config_defaults, every_setting_has_its_documented_default) {
  const auto c = config::load({}, 3);
  EXPECT_EQ(c.listen.host, "127.0.0.1");
  EXPECT_EQ(c.listen.port, 8000);
  EXPECT_EQ(c.data_dir, std::filesystem::path("./data"));
  EXPECT_EQ(c.database, config::database_kind::sqlite);
  EXPECT_EQ(c.sqlite_path, std::filesystem::path("./data/docflow.db"));
  EXPECT_EQ(c.storage, config::storage_kind::file);
  EXPECT_EQ(c.blob_dir, std::filesystem::path("./data/blobs"));
  EXPECT_EQ(c.scratch_dir, std::filesystem::path("./data/scratch"));
  EXPECT_EQ(c.s3.part_size, 8ULL * 1024 * 1024);
  EXPECT_FALSE(c.s3.presigned_downloads);
  EXPECT_TRUE(c.auto_migrate);  // the embedded database migrates itself
  EXPECT_FALSE(c.worker_listen.has_value());
  EXPECT_FALSE(c.jwt_secret.has_value());
  EXPECT_EQ(c.jwt_issuer, "docflow");
  EXPECT_EQ(c.access_ttl, 15min);
  EXPECT_EQ(c.refresh_ttl, 7 * 24h);
  EXPECT_EQ(c.refresh_reuse_grace, 0ms);
  EXPECT_EQ(c.login_max_failures, 5U);
  EXPECT_EQ(c.max_concurrent_hashes, 3U);
  EXPECT_TRUE(c.signup_open);
  EXPECT_EQ(c.max_upload_bytes, 100ULL * 1024 * 1024);
  EXPECT_EQ(c.max_active_uploads, 96U);
  EXPECT_EQ(c.workers, 3U);
  EXPECT_EQ(c.job_lease, 30s);
  EXPECT_EQ(c.job_max_attempts, 3U);
  EXPECT_EQ(c.max_running_per_user, 0U) << "no limit";
  EXPECT_EQ(c.idempotency_ttl, 24h);
  EXPECT_EQ(c.queue_max_depth, 10000U);
  EXPECT_EQ(c.simulated_delay, 0ms);
  EXPECT_FALSE(c.sandbox_strict);
  EXPECT_FALSE(c.ml_url.has_value());
  EXPECT_EQ(c.ml_timeout, 30s);
  EXPECT_EQ(c.ocr, "auto");
  EXPECT_EQ(c.ocr_languages, "eng");
  EXPECT_EQ(c.ocr_dpi, 300U);
  EXPECT_EQ(c.ocr_min_page_chars, 16U);
  EXPECT_EQ(c.ocr_max_pages, 100U);
  EXPECT_EQ(c.ocr_page_cpu_seconds, 30U);
  EXPECT_EQ(c.ocr_page_timeout, 60s);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.header_timeout, 30s);
  EXPECT_EQ(c.body_timeout, 60s);
  EXPECT_EQ(c.idle_timeout, 60s);
  EXPECT_EQ(c.shutdown_timeout, 30s);
  EXPECT_EQ(c.io_threads, 2U);
  EXPECT_EQ(c.blocking_threads, 32U);
  EXPECT_FALSE(c.metrics_token.has_value());
  EXPECT_TRUE(c.trusted_proxies.empty());
  EXPECT_FALSE(c.node_name.has_value());
  EXPECT_TRUE(c.webhook_allowed_networks.empty());
  EXPECT_EQ(c.webhook_timeout, 10s);
  EXPECT_EQ(c.webhook_concurrency, 4U);
  EXPECT_EQ(c.webhook_retry_base, 30s);
  EXPECT_EQ(c.webhook_retry_for, 24h);
}

TEST(config_defaults, core_scaled_defaults_follow_the_core_count) {
  const auto c = config::load({}, 7);
  EXPECT_EQ(c.workers, 7U);
  EXPECT_EQ(c.max_concurrent_hashes, 7U);
  EXPECT_EQ(c.blocking_threads, 32U);
  EXPECT_EQ(c.max_active_uploads, 7U * 32);
  EXPECT_EQ(config::load({}, 16).blocking_threads, 64U);
}

TEST(config_defaults, zero_cores_counts_as_one) {
  const auto c = config::load({}, 0);
  EXPECT_EQ(c.workers, 1U);
  EXPECT_EQ(c.max_concurrent_hashes, 1U);
  EXPECT_EQ(c.blocking_threads, 32U);
  EXPECT_EQ(c.max_active_uploads, 32U);
}

TEST(config_defaults, data_dir_moves_the_derived_paths) {
  const auto c = load_with("DOCFLOW_DATA_DIR", "/srv/docflow");
  EXPECT_EQ(c.data_dir, std::filesystem::path("/srv/docflow"));
  EXPECT_EQ(c.sqlite_path, std::filesystem::path("/srv/docflow/docflow.db"));
  EXPECT_EQ(c.blob_dir, std::filesystem::path("/srv/docflow/blobs"));
  EXPECT_EQ(c.scratch_dir, std::filesystem::path("/srv/docflow/scratch"));
}

TEST(config_defaults, explicit_urls_win_over_the_data_dir) {
  const auto c = config::load({{"DOCFLOW_DATA_DIR", "/srv/docflow"},
                               {"DOCFLOW_DATABASE_URL", "sqlite:///var/lib/df/main.db"},
                               {"DOCFLOW_STORAGE_URL", "file:///mnt/blobs"}},
                              4);
  EXPECT_EQ(c.data_dir, std::filesystem::path("/srv/docflow"));
  EXPECT_EQ(c.sqlite_path, std::filesystem::path("/var/lib/df/main.db"));
  EXPECT_EQ(c.blob_dir, std::filesystem::path("/mnt/blobs"));
}

// -----------------------------------------------------------------------------------------------------------
// Accepted values

TEST(config_accepts, ipv4_and_hostname_listen_addresses) {
  const auto a = load_with("DOCFLOW_LISTEN", "0.0.0.0:65535").listen;
  EXPECT_EQ(a.host, "0.0.0.0");
  EXPECT_EQ(a.port, 65535);
  const auto b = load_with("DOCFLOW_LISTEN", "localhost:1").listen;
  EXPECT_EQ(b.host, "localhost");
  EXPECT_EQ(b.port, 1);
}

TEST(config_accepts, bracketed_ipv6_listen_address) {
  const auto a = load_with("DOCFLOW_LISTEN", "[::1]:8000").listen;
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 8000);
  const auto b = load_with("DOCFLOW_LISTEN", "[2001:db8::7]:443").listen;
  EXPECT_EQ(b.host, "2001:db8::7");
  EXPECT_EQ(b.port, 443);
}

TEST(config_accepts, jwt_secret_of_exactly_32_bytes) {
  const std::string secret(32, 'k');
  EXPECT_EQ(load_with("DOCFLOW_JWT_SECRET", secret).jwt_secret, secret);
}

TEST(config_accepts, quotas_unset_are_unlimited_and_set_are_limits) {
  const auto none = config::load({}, 4);
  EXPECT_FALSE(none.default_quota.bytes);
  EXPECT_FALSE(none.default_quota.documents);
  const auto c = config::load({{"DOCFLOW_QUOTA_BYTES", "10GiB"}, {"DOCFLOW_QUOTA_DOCUMENTS", "0"}}, 4);
  EXPECT_EQ(c.default_quota.bytes, 10ULL << 30);
  EXPECT_EQ(c.default_quota.documents, 0u);
}

TEST(config_accepts, empty_optional_strings_mean_unset) {
  const auto c = config::load({{"DOCFLOW_JWT_SECRET", ""},
                               {"DOCFLOW_ML_URL", ""},
                               {"DOCFLOW_METRICS_TOKEN", ""},
                               {"DOCFLOW_WORKER_LISTEN", ""}},
                              4);
  EXPECT_FALSE(c.jwt_secret.has_value());
  EXPECT_FALSE(c.ml_url.has_value());
  EXPECT_FALSE(c.metrics_token.has_value());
  EXPECT_FALSE(c.worker_listen.has_value());
}

TEST(config_accepts, a_worker_listen_address) {
  const auto c = load_with("DOCFLOW_WORKER_LISTEN", "[::1]:0");
  ASSERT_TRUE(c.worker_listen.has_value());
  EXPECT_EQ(c.worker_listen->host, "::1");
  EXPECT_EQ(c.worker_listen->port, 0);
}

TEST(config_accepts, auto_migrate_on_and_off) {
  EXPECT_FALSE(load_with("DOCFLOW_AUTO_MIGRATE", "off").auto_migrate);
  EXPECT_TRUE(load_with("DOCFLOW_AUTO_MIGRATE", "on").auto_migrate);
}

TEST(config_accepts, explicit_values_are_parsed) {
  const auto c = config::load({{"DOCFLOW_SIGNUP", "closed"},
                               {"DOCFLOW_WORKERS", "0"},
                               {"DOCFLOW_MAX_UPLOAD_BYTES", "64KiB"},
                               {"DOCFLOW_HEADER_TIMEOUT", "500ms"},
                               {"DOCFLOW_ACCESS_TTL", "2s"},
                               {"DOCFLOW_JOB_LEASE", "15m"},
                               {"DOCFLOW_IDEMPOTENCY_TTL", "7d"},
                               {"DOCFLOW_QUEUE_MAX_DEPTH", "4294967295"},
                               {"DOCFLOW_MAX_RUNNING_PER_USER", "2"},
                               {"DOCFLOW_SANDBOX", "strict"},
                               {"DOCFLOW_ML_URL", "https://ml.internal:9000/enrich"},
                               {"DOCFLOW_ML_TIMEOUT", "2m"},
                               {"DOCFLOW_OCR", "never"},
                               {"DOCFLOW_OCR_LANGUAGES", " eng , deu,chi_sim"},
                               {"DOCFLOW_OCR_PAGE_TIMEOUT", "2m"},
                               {"DOCFLOW_LOG_LEVEL", "debug"},
                               {"DOCFLOW_METRICS_TOKEN", "t0k3n"}},
                              4);
  EXPECT_FALSE(c.signup_open);
  EXPECT_EQ(c.workers, 0U);
  EXPECT_EQ(c.max_upload_bytes, 65536U);
  EXPECT_EQ(c.header_timeout, 500ms);
  EXPECT_EQ(c.access_ttl, 2s);
  EXPECT_EQ(c.job_lease, 15min);
  EXPECT_EQ(c.idempotency_ttl, 7 * 24h);
  EXPECT_EQ(c.queue_max_depth, 4294967295U);
  EXPECT_EQ(c.max_running_per_user, 2U);
  EXPECT_TRUE(c.sandbox_strict);
  EXPECT_EQ(c.ml_url, "https://ml.internal:9000/enrich");
  EXPECT_EQ(c.ml_timeout, 2min);
  EXPECT_EQ(c.ocr, "never");
  EXPECT_EQ(c.ocr_languages, "eng+deu+chi_sim");  // as Tesseract takes them
  EXPECT_EQ(c.ocr_page_timeout, 2min);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.metrics_token, "t0k3n");
}

// -----------------------------------------------------------------------------------------------------------
// Rejected values: each must throw config_error naming the offending environment variable, and only it.

namespace {

struct bad_value {
  std::string env;
  std::string value;
};

void PrintTo(const bad_value& b, std::ostream* os) { *os << b.env << "='" << b.value << "'"; }

class config_rejects : public testing::TestWithParam<bad_value> {};

std::vector<bad_value> bad(const std::string& env, const std::vector<std::string>& values) {
  std::vector<bad_value> out;
  for (const auto& v : values) {
    out.push_back({env, v});
  }
  return out;
}

template <typename... Parts>
std::vector<bad_value> join(const Parts&... parts) {
  std::vector<bad_value> out;
  (out.insert(out.end(), parts.begin(), parts.end()), ...);
  return out;
}

}  // namespace

TEST_P(config_rejects, with_config_error_naming_the_setting) {
  const auto& [env, value] = GetParam();
  ASSERT_TRUE(listed_in_settings(env)) << env << " is not in settings()";
  try {
    load_with(env, value);
    FAIL() << "accepted " << env << "='" << value << "'";
  } catch (const config::config_error& e) {
    ASSERT_EQ(e.problems().size(), 1U) << e.what();
    EXPECT_EQ(e.problems()[0].setting, env);
    EXPECT_NE(std::string(e.what()).find(env), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(listen, config_rejects,
                         testing::ValuesIn(bad("DOCFLOW_LISTEN",
                                               {"", "127.0.0.1", "127.0.0.1:", ":8000", "127.0.0.1:70000",
                                                "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:http",
                                                "127.0.0.1:80 ", "::1:8000", "[::1]", "[::1]8000",
                                                "[::1]:", "[]:8000", "[::1:8000"})));

INSTANTIATE_TEST_SUITE_P(
    storage, config_rejects,
    testing::ValuesIn(
        join(bad("DOCFLOW_DATA_DIR", {""}),
             bad("DOCFLOW_DATABASE_URL", {"", "sqlite://", "/var/lib/docflow.db", "mysql://db/docflow",
                                          "host=db dbname=docflow", "postgresql:/db"}),
             bad("DOCFLOW_STORAGE_URL", {"", "file://", "/var/blobs", "S3://bucket", "gs://bucket"}),
             bad("DOCFLOW_SCRATCH_DIR", {"", "./data/blobs", "./data/blobs/tmp", "./data", "data/"}),
             bad("DOCFLOW_AUTO_MIGRATE", {"", "yes", "On", "true"}))));

INSTANTIATE_TEST_SUITE_P(auth, config_rejects,
                         testing::ValuesIn(join(bad("DOCFLOW_JWT_SECRET", {std::string(31, 'k'), "x"}),
                                                bad("DOCFLOW_JWT_SECRET_PREVIOUS", {std::string(31, 'k')}),
                                                bad("DOCFLOW_API_KEY_SECRET", {std::string(31, 'k')}),
                                                bad("DOCFLOW_QUOTA_BYTES", {"-1", "lots", "10 apples"}),
                                                bad("DOCFLOW_QUOTA_DOCUMENTS", {"-1", "1.5", "many"}),
                                                bad("DOCFLOW_DATABASE_POOL", {"0", "10001", "many"}),
                                                bad("DOCFLOW_JWT_ISSUER", {""}),
                                                bad("DOCFLOW_ACCESS_TTL", {"5", "5x", "", "0s", "25h"}),
                                                bad("DOCFLOW_REFRESH_TTL", {"367d", "-1d"}),
                                                bad("DOCFLOW_REFRESH_REUSE_GRACE", {"6m"}),
                                                bad("DOCFLOW_LOGIN_MAX_FAILURES", {"0", "1001", "five"}),
                                                bad("DOCFLOW_MAX_CONCURRENT_HASHES", {"0", "257"}),
                                                bad("DOCFLOW_SIGNUP", {"Open", "yes", ""}))));

INSTANTIATE_TEST_SUITE_P(
    jobs, config_rejects,
    testing::ValuesIn(join(
        bad("DOCFLOW_MAX_ACTIVE_UPLOADS", {"0", "-1", "100001", "many"}),
        bad("DOCFLOW_MAX_UPLOAD_BYTES",
            {"0", "-1", "100 MiB", "100mib", "1.5GiB", "18446744073709551616", "17179869184GiB"}),
        bad("DOCFLOW_WORKERS", {"", "-1", "257", "4 ", "0x4"}),
        bad("DOCFLOW_WORKER_LISTEN", {"9100", "127.0.0.1", "[::1]", "localhost:http"}),
        bad("DOCFLOW_JOB_LEASE", {"0s", "30"}), bad("DOCFLOW_JOB_MAX_ATTEMPTS", {"0", "101"}),
        bad("DOCFLOW_IDEMPOTENCY_TTL", {"1d2h"}), bad("DOCFLOW_QUEUE_MAX_DEPTH", {"0", "4294967296"}),
        bad("DOCFLOW_MAX_RUNNING_PER_USER", {"-1", "100001", "two", ""}),
        bad("DOCFLOW_SIMULATED_DELAY_MS", {"3600001", "10ms"}),
        bad("DOCFLOW_SANDBOX", {"Strict", "best_effort", "off", ""}),
        bad("DOCFLOW_ML_URL", {"ftp://ml", "ml.internal:9000"}),
        bad("DOCFLOW_ML_TIMEOUT", {"0s", "2h", "30"}), bad("DOCFLOW_OCR", {"Auto", "on", "yes", ""}),
        bad("DOCFLOW_OCR_LANGUAGES", {"", "eng,", "eng+deu", "../eng", "eng deu", "en/g"}),
        bad("DOCFLOW_OCR_DPI", {"71", "1201", "300dpi"}), bad("DOCFLOW_OCR_MIN_PAGE_CHARS", {"-1", "many"}),
        bad("DOCFLOW_OCR_MAX_PAGES", {"0", "10001"}), bad("DOCFLOW_OCR_PAGE_CPU_SECONDS", {"0", "3601"}),
        bad("DOCFLOW_OCR_PAGE_TIMEOUT", {"0s", "2h", "60"}))));

INSTANTIATE_TEST_SUITE_P(
    server, config_rejects,
    testing::ValuesIn(join(bad("DOCFLOW_LOG_LEVEL", {"verbose", "INFO", ""}),
                           bad("DOCFLOW_HEADER_TIMEOUT", {"0ms", "2h"}), bad("DOCFLOW_BODY_TIMEOUT", {"61m"}),
                           bad("DOCFLOW_IDLE_TIMEOUT", {"5"}), bad("DOCFLOW_SHUTDOWN_TIMEOUT", {"5x", "2h"}),
                           bad("DOCFLOW_IO_THREADS", {"0"}),
                           bad("DOCFLOW_BLOCKING_THREADS", {"0", "1025"}))));

INSTANTIATE_TEST_SUITE_P(proxies, config_rejects,
                         testing::ValuesIn(join(bad("DOCFLOW_TRUSTED_PROXIES",
                                                    {"nginx", "127.0.0.1,,::1", "127.0.0.1,", "10.0.0.0/33",
                                                     "::/129", "10.0.0.0/", "10.0.0.0/8x", "10.0.0.0/-1",
                                                     "10.0.0.1/8", "fd00::1/8", "127.0.0.1:8080", "[::1]",
                                                     "10.0.0.0/8;::1", "256.0.0.1", "fe80::1%eth0"}),
                                                bad("DOCFLOW_NODE_NAME", {"", std::string(65, 'n'), "api\n1",
                                                                          "caf\xc3\xa9", "a\tb"}))));

INSTANTIATE_TEST_SUITE_P(webhooks, config_rejects,
                         testing::ValuesIn(join(bad("DOCFLOW_WEBHOOK_ALLOWED_NETWORKS",
                                                    {"localhost", "127.0.0.1,,::1", "10.0.0.1/8", "::/129"}),
                                                bad("DOCFLOW_WEBHOOK_TIMEOUT", {"0s", "50ms", "6m", "10"}),
                                                bad("DOCFLOW_WEBHOOK_CONCURRENCY", {"-1", "257", "four"}),
                                                bad("DOCFLOW_WEBHOOK_RETRY_BASE", {"0s", "2h", "1x"}),
                                                bad("DOCFLOW_WEBHOOK_RETRY_FOR", {"0s", "31d", "1"}))));

TEST(config_webhooks, the_allow_list_reads_addresses_and_blocks) {
  const auto c = load_with("DOCFLOW_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32, 10.1.0.0/16,fd00::/8");
  ASSERT_EQ(c.webhook_allowed_networks.size(), 3U);
  EXPECT_EQ(c.webhook_allowed_networks[1].prefix, 16U);
  EXPECT_EQ(load_with("DOCFLOW_WEBHOOK_RETRY_BASE", "200ms").webhook_retry_base, 200ms);
  EXPECT_EQ(load_with("DOCFLOW_WEBHOOK_CONCURRENCY", "0").webhook_concurrency, 0U);
}

INSTANTIATE_TEST_SUITE_P(
    s3, config_rejects,
    testing::ValuesIn(join(bad("DOCFLOW_STORAGE_URL", {"s3://",
                                                       "s3:///prefix",
                                                       "s3://Bucket",
                                                       "s3://ab",
                                                       "s3://my_bucket",
                                                       "s3://-bucket",
                                                       "s3://bucket-",
                                                       "s3://a..b",
                                                       "s3://192.168.5.4",
                                                       "s3://" + std::string(64, 'b'),
                                                       "s3://b%41cket",
                                                       "s3://bucket:9000",
                                                       "s3://bucket#x",
                                                       "s3://bucket//a",
                                                       "s3://bucket/a//b",
                                                       "s3://bucket/a/../b",
                                                       "s3://bucket/./a",
                                                       "s3://bucket/a%0Ab",
                                                       "s3://bucket/%FF",
                                                       "s3://bucket/100%",
                                                       "s3://bucket?foo=1",
                                                       "s3://bucket?Region=eu-west-1",
                                                       "s3://bucket?region=",
                                                       "s3://bucket?region",
                                                       "s3://bucket?region=a&region=b",
                                                       "s3://bucket?region=eu%20west",
                                                       "s3://bucket?region=eu/west",
                                                       "s3://bucket?path_style=yes",
                                                       "s3://bucket?path_style=True",
                                                       "s3://bucket?endpoint=ftp://h",
                                                       "s3://bucket?endpoint=minio:9000",
                                                       "s3://bucket?endpoint=http://",
                                                       "s3://bucket?endpoint=http://h/path",
                                                       "s3://bucket?endpoint=http://h:0",
                                                       "s3://bucket?endpoint=http://h:70000",
                                                       "s3://bucket?endpoint=http://h:",
                                                       "s3://bucket?endpoint=http://h%3Fx%3D1",
                                                       "s3://bucket?endpoint=http://h%23x",
                                                       "s3://bucket?endpoint=http://127.0.0.1:9000",
                                                       "s3://bucket?endpoint=http://[::1]:9000"}),
                           bad("DOCFLOW_S3_PART_SIZE",
                               {"0", "4MiB", "5242879", "5368709121", "6GiB", "8 MiB", "lots"}),
                           bad("DOCFLOW_S3_PRESIGNED_DOWNLOADS", {"", "yes", "On", "true", "on"}))));

TEST(config_database, postgresql_url_selects_the_shared_database) {
  for (const auto* url : {"postgresql://docflow@db:5432/docflow?sslmode=require", "postgres://db/docflow"}) {
    const auto c = config::load({{"DOCFLOW_DATABASE_URL", url}}, 4);
    EXPECT_EQ(c.database, config::database_kind::postgres);
    EXPECT_EQ(c.postgres_url, url);  // libpq reads it as given
    EXPECT_FALSE(c.auto_migrate);    // a shared schema is migrated once, by the operator
    // workers + 2 x cores + 2
    EXPECT_EQ(c.database_pool, 4U + 2 * 4 + 2);
  }
  // Not the blocking threads: most of those do not use the database at once.
  const auto sized = config::load({{"DOCFLOW_DATABASE_URL", "postgresql://db/docflow"},
                                   {"DOCFLOW_WORKERS", "1"},
                                   {"DOCFLOW_BLOCKING_THREADS", "200"}},
                                  2);
  EXPECT_EQ(sized.database_pool, 1U + 2 * 2 + 2);
  EXPECT_EQ(load_with("DOCFLOW_DATABASE_POOL", "3").database_pool, 3U);
}

TEST(config_database, the_password_comes_apart_from_the_url_and_is_never_shown) {
  const auto c = config::load({{"DOCFLOW_DATABASE_URL", "postgresql://docflow:hunter2@db:5432/docflow"},
                               {"DOCFLOW_DATABASE_PASSWORD", "s3cret"}},
                              4);
  EXPECT_EQ(c.database_password, "s3cret");
  EXPECT_EQ(config::describe_database(c), "postgresql://docflow:***@db:5432/docflow");
  const auto plain = load_with("DOCFLOW_DATABASE_URL", "postgresql://docflow@db/docflow");
  EXPECT_EQ(config::describe_database(plain), "postgresql://docflow@db/docflow");
  EXPECT_EQ(config::describe_database(load_with("DOCFLOW_DATA_DIR", "/srv")), "sqlite:///srv/docflow.db");
  // SQLite has no password: one set for it is a mistake worth hearing of.
  EXPECT_THROW(load_with("DOCFLOW_DATABASE_PASSWORD", "s3cret"), config::config_error);
}

TEST(config_database, serve_and_worker_need_a_shared_jwt_secret_with_postgresql) {
  const auto shared = load_with("DOCFLOW_DATABASE_URL", "postgresql://db/docflow");
  for (const auto command : {config::for_serve, config::for_worker}) {
    try {
      config::require_for(shared, command);
      ADD_FAILURE() << "started without DOCFLOW_JWT_SECRET on PostgreSQL, command " << command;
    } catch (const config::config_error& e) {
      ASSERT_EQ(e.problems().size(), 1U);
      EXPECT_EQ(e.problems()[0].setting, "DOCFLOW_JWT_SECRET");
    }
  }
  // Neither migrate nor user signs anything.
  EXPECT_NO_THROW(config::require_for(shared, config::for_migrate));
  EXPECT_NO_THROW(config::require_for(shared, config::for_user));
  // SQLite is one node: a generated secret is fine.
  EXPECT_NO_THROW(config::require_for(config::load({}, 4), config::for_serve));
  const auto keyed = config::load(
      {{"DOCFLOW_DATABASE_URL", "postgresql://db/docflow"}, {"DOCFLOW_JWT_SECRET", std::string(32, 'k')}}, 4);
  EXPECT_NO_THROW(config::require_for(keyed, config::for_serve));
}

TEST(config_rejects_message, every_bad_setting_is_reported_in_table_order) {
  try {
    config::load({{"DOCFLOW_LOG_LEVEL", "loud"}, {"DOCFLOW_LISTEN", "nope"}, {"DOCFLOW_WORKERS", "-1"}}, 4);
    FAIL() << "bad values accepted";
  } catch (const config::config_error& e) {
    ASSERT_EQ(e.problems().size(), 3U) << e.what();
    EXPECT_EQ(e.problems()[0].setting, "DOCFLOW_LISTEN");
    EXPECT_EQ(e.problems()[1].setting, "DOCFLOW_WORKERS");
    EXPECT_EQ(e.problems()[2].setting, "DOCFLOW_LOG_LEVEL");
    EXPECT_EQ(std::string(e.what()),
              "DOCFLOW_LISTEN: 'nope' is not HOST:PORT (e.g. 127.0.0.1:8000, [::1]:8000)\n"
              "DOCFLOW_WORKERS: '-1' must be between 0 and 256\n"
              "DOCFLOW_LOG_LEVEL: 'loud' must be debug, info, warn or error");
  }
}

namespace {

// The one message load() gives for a single bad value.
std::string message_for(const std::string& env, const std::string& value) {
  try {
    load_with(env, value);
  } catch (const config::config_error& e) {
    return e.problems().size() == 1 ? e.problems()[0].message : e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(config_rejects_message, says_what_is_allowed) {
  EXPECT_EQ(message_for("DOCFLOW_WORKERS", "-1"), "'-1' must be between 0 and 256");
  EXPECT_EQ(message_for("DOCFLOW_WORKERS", "many"), "'many' must be a whole number between 0 and 256");
  EXPECT_EQ(message_for("DOCFLOW_QUEUE_MAX_DEPTH", "99999999999999999999"),
            "'99999999999999999999' must be between 1 and 4294967295");
  EXPECT_EQ(message_for("DOCFLOW_ACCESS_TTL", "25h"), "'25h' must be between 1s and 24h");
  EXPECT_EQ(message_for("DOCFLOW_REFRESH_REUSE_GRACE", "6m"), "'6m' must be between 0s and 5m");
  EXPECT_EQ(message_for("DOCFLOW_REFRESH_TTL", "367d"), "'367d' must be between 1s and 366d");
  EXPECT_EQ(message_for("DOCFLOW_HEADER_TIMEOUT", "2h"), "'2h' must be between 1ms and 1h");
  EXPECT_EQ(message_for("DOCFLOW_ACCESS_TTL", "5x"),
            "'5x' must be a duration between 1s and 24h, written like 500ms, 2s, 15m or 7d");
  EXPECT_EQ(message_for("DOCFLOW_MAX_UPLOAD_BYTES", "0"), "'0' must be at least 1 byte");
  EXPECT_EQ(message_for("DOCFLOW_MAX_UPLOAD_BYTES", "lots"),
            "'lots' must be a size of at least 1 byte, written like 64KiB or 100MiB");
}

// -----------------------------------------------------------------------------------------------------------
// Secrets from files (<NAME>_FILE)

namespace {

// A file holding `content`, removed with the object.
class temp_file {
public:
  explicit temp_file(const std::string& content)
      : path_(std::filesystem::temp_directory_path() /
              ("docflow-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(next_++))) {
    std::ofstream(path_, std::ios::binary) << content;
  }
  ~temp_file() { std::filesystem::remove(path_); }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  std::string path() const { return path_.string(); }

private:
  static inline int next_ = 0;
  std::filesystem::path path_;
};

std::vector<config::invalid_setting> problems_of(const values_map& values) {
  try {
    config::load(values, 4);
  } catch (const config::config_error& e) {
    return e.problems();
  }
  return {};
}

}  // namespace

TEST(config_secrets, are_the_keys_the_database_password_the_metrics_token_and_the_aws_credentials) {
  std::set<std::string> secrets;
  for (const auto& s : config::settings()) {
    if (s.secret) secrets.insert(s.env);
  }
  EXPECT_EQ(secrets, (std::set<std::string>{"DOCFLOW_DATABASE_PASSWORD", "DOCFLOW_JWT_SECRET",
                                            "DOCFLOW_JWT_SECRET_PREVIOUS", "DOCFLOW_API_KEY_SECRET",
                                            "DOCFLOW_METRICS_TOKEN", "AWS_ACCESS_KEY_ID",
                                            "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}));
}

TEST(config_secrets, come_from_the_file_without_one_trailing_newline) {
  const temp_file token("t0k3n\n");
  EXPECT_EQ(config::load({{"DOCFLOW_METRICS_TOKEN_FILE", token.path()}}, 4).metrics_token, "t0k3n");
  const temp_file two_newlines("t0k3n\n\n");
  EXPECT_EQ(config::load({{"DOCFLOW_METRICS_TOKEN_FILE", two_newlines.path()}}, 4).metrics_token, "t0k3n\n");
  const std::string secret(40, 'k');
  const temp_file no_newline(secret);
  EXPECT_EQ(config::load({{"DOCFLOW_JWT_SECRET_FILE", no_newline.path()}}, 4).jwt_secret, secret);
}

TEST(config_secrets, empty_variable_counts_as_unset) {
  const temp_file token("t0k3n");
  const auto c =
      config::load({{"DOCFLOW_METRICS_TOKEN", ""}, {"DOCFLOW_METRICS_TOKEN_FILE", token.path()}}, 4);
  EXPECT_EQ(c.metrics_token, "t0k3n");
  EXPECT_FALSE(config::load({{"DOCFLOW_METRICS_TOKEN_FILE", ""}}, 4).metrics_token.has_value());
}

TEST(config_secrets, both_forms_are_an_error_naming_both) {
  const temp_file token("t0k3n");
  const auto problems =
      problems_of({{"DOCFLOW_METRICS_TOKEN", "t0k3n"}, {"DOCFLOW_METRICS_TOKEN_FILE", token.path()}});
  ASSERT_EQ(problems.size(), 1U);
  EXPECT_EQ(problems[0].setting, "DOCFLOW_METRICS_TOKEN");
  EXPECT_NE(problems[0].message.find("DOCFLOW_METRICS_TOKEN_FILE"), std::string::npos) << problems[0].message;
}

TEST(config_secrets, unreadable_or_empty_file_is_an_error_naming_variable_and_path) {
  const auto missing = (std::filesystem::temp_directory_path() / "docflow-config-test-missing").string();
  const temp_file empty("\n");
  for (const auto& path : {missing, empty.path(), std::filesystem::temp_directory_path().string()}) {
    const auto problems = problems_of({{"DOCFLOW_JWT_SECRET_FILE", path}});
    ASSERT_EQ(problems.size(), 1U) << path;
    EXPECT_EQ(problems[0].setting, "DOCFLOW_JWT_SECRET_FILE");
    EXPECT_NE(problems[0].message.find("'" + path + "'"), std::string::npos) << problems[0].message;
  }
}

TEST(config_secrets, a_secret_from_a_file_is_validated_like_any_other) {
  const temp_file short_secret("too short\n");
  const auto problems = problems_of({{"DOCFLOW_JWT_SECRET_FILE", short_secret.path()}});
  ASSERT_EQ(problems.size(), 1U);
  EXPECT_EQ(problems[0].setting, "DOCFLOW_JWT_SECRET");
}

TEST(config_secrets, only_secrets_have_a_file_form) {
  const temp_file listen("0.0.0.0:9");
  EXPECT_EQ(config::load({{"DOCFLOW_LISTEN_FILE", listen.path()}}, 4).listen.port, 8000);
}

// -----------------------------------------------------------------------------------------------------------
// DOCFLOW_* variables that name no setting

namespace {

std::map<std::string, std::optional<std::string>> unknown(const std::vector<std::string>& names) {
  values_map environment;
  for (const auto& n : names) {
    environment[n] = "1";
  }
  std::map<std::string, std::optional<std::string>> out;
  for (const auto& u : config::unknown_variables(environment)) {
    out[u.name] = u.suggestion;
  }
  return out;
}

}  // namespace

TEST(config_unknown_variables, are_reported_with_the_closest_setting) {
  const auto found =
      unknown({"DOCFLOW_WORKER", "DOCFLOW_LOGLEVEL", "DOCFLOW_JWT_SECRET_FIL", "DOCFLOW_LISTEN_FILE"});
  EXPECT_EQ(found, (std::map<std::string, std::optional<std::string>>{
                       {"DOCFLOW_WORKER", "DOCFLOW_WORKERS"},
                       {"DOCFLOW_LOGLEVEL", "DOCFLOW_LOG_LEVEL"},
                       {"DOCFLOW_JWT_SECRET_FIL", "DOCFLOW_JWT_SECRET_FILE"},
                       {"DOCFLOW_LISTEN_FILE", "DOCFLOW_LISTEN"},
                   }));
}

TEST(config_unknown_variables, far_from_every_setting_get_no_suggestion) {
  EXPECT_EQ(unknown({"DOCFLOW_PORT", "DOCFLOW_ZZZZZZZZZZZZ"}),
            (std::map<std::string, std::optional<std::string>>{{"DOCFLOW_PORT", std::nullopt},
                                                               {"DOCFLOW_ZZZZZZZZZZZZ", std::nullopt}}));
}

TEST(config_unknown_variables, settings_secret_files_test_hooks_and_other_names_are_known) {
  std::vector<std::string> names{"DOCFLOW_JWT_SECRET_FILE", "DOCFLOW_METRICS_TOKEN_FILE",
                                 "DOCFLOW_TEST_EXTRACTOR_FAULT", "HOME", "XDOCFLOW_WORKER"};
  for (const auto& s : config::settings()) {
    names.push_back(s.env);
  }
  EXPECT_TRUE(unknown(names).empty());
}

// -----------------------------------------------------------------------------------------------------------
// S3 storage (DOCFLOW_STORAGE_URL=s3://..., AWS_*, DOCFLOW_S3_*)

namespace {

config::s3_settings s3_of(const std::string& url, values_map more = {}) {
  more["DOCFLOW_STORAGE_URL"] = url;
  const auto c = config::load(more, 4);
  EXPECT_EQ(c.storage, config::storage_kind::s3) << url;
  return c.s3;
}

// The one problem load() finds, as "SETTING: message".
std::string problem_of(const values_map& values) {
  const auto problems = problems_of(values);
  if (problems.size() != 1) return std::to_string(problems.size()) + " problems";
  return problems[0].setting + ": " + problems[0].message;
}

const values_map aws_credentials{{"AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"},
                                 {"AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
                                 {"AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN"}};

}  // namespace

TEST(config_s3, the_aws_form_names_a_bucket_and_nothing_else) {
  const auto s = s3_of("s3://docflow-blobs.example");
  EXPECT_EQ(s.bucket, "docflow-blobs.example");
  EXPECT_EQ(s.prefix, "");
  EXPECT_EQ(s.endpoint, "");
  EXPECT_EQ(s.region, "us-east-1");
  EXPECT_FALSE(s.path_style);
  EXPECT_EQ(s.part_size, 8ULL << 20);
  EXPECT_FALSE(s.presigned_downloads);
}

TEST(config_s3, a_compatible_service_has_an_endpoint_region_and_path_style) {
  const auto s =
      s3_of("s3://bucket/optional/prefix?endpoint=http://127.0.0.1:9000&region=eu-central-1&path_style=true");
  EXPECT_EQ(s.bucket, "bucket");
  EXPECT_EQ(s.prefix, "optional/prefix/");
  EXPECT_EQ(s.endpoint, "http://127.0.0.1:9000");
  EXPECT_EQ(s.region, "eu-central-1");
  EXPECT_TRUE(s.path_style);
  EXPECT_FALSE(s3_of("s3://bucket?endpoint=https://minio.internal&path_style=false").path_style);
  EXPECT_EQ(s3_of("s3://bucket?path_style=true&endpoint=http://%5B::1%5D:9000").endpoint,
            "http://[::1]:9000");
  // A name, not an address: virtual-hosted addressing (bucket.minio.internal) works.
  EXPECT_EQ(s3_of("s3://bucket?endpoint=https://minio.internal:9443").endpoint,
            "https://minio.internal:9443");
}

TEST(config_s3, the_endpoint_is_normalised_to_scheme_host_and_port) {
  EXPECT_EQ(s3_of("s3://bucket?endpoint=http%3A%2F%2F127.0.0.1%3A9000&path_style=true").endpoint,
            "http://127.0.0.1:9000");
  EXPECT_EQ(s3_of("s3://bucket?endpoint=https%3a%2f%2fs3.example.com%2f").endpoint, "https://s3.example.com");
  EXPECT_EQ(s3_of("s3://bucket?endpoint=HTTPS://s3.example.com:443/").endpoint, "https://s3.example.com:443");
}

TEST(config_s3, the_prefix_ends_with_one_slash_and_never_starts_with_one) {
  EXPECT_EQ(s3_of("s3://bucket/").prefix, "");
  EXPECT_EQ(s3_of("s3://bucket/docs").prefix, "docs/");
  EXPECT_EQ(s3_of("s3://bucket/a/b").prefix, "a/b/");
  EXPECT_EQ(s3_of("s3://bucket/a/b/").prefix, "a/b/");
  EXPECT_EQ(s3_of("s3://bucket/tenant%20one/2026").prefix, "tenant one/2026/");
  EXPECT_EQ(s3_of("s3://bucket/a+b/?region=x").prefix, "a+b/");
}

TEST(config_s3, the_region_falls_back_to_aws_region_then_aws_default_region) {
  const values_map both{{"AWS_REGION", "eu-west-1"}, {"AWS_DEFAULT_REGION", "ap-south-1"}};
  EXPECT_EQ(s3_of("s3://bucket?region=us-west-2", both).region, "us-west-2");
  EXPECT_EQ(s3_of("s3://bucket", both).region, "eu-west-1");
  EXPECT_EQ(s3_of("s3://bucket", {{"AWS_DEFAULT_REGION", "ap-south-1"}}).region, "ap-south-1");
  EXPECT_EQ(s3_of("s3://bucket", {{"AWS_REGION", ""}, {"AWS_DEFAULT_REGION", "ap-south-1"}}).region,
            "ap-south-1");
  EXPECT_EQ(s3_of("s3://bucket", {{"AWS_REGION", ""}}).region, "us-east-1");
  // Ceph RGW and Garage name their regions freely.
  EXPECT_EQ(s3_of("s3://bucket?region=garage").region, "garage");
  // A bad region is blamed on where it came from.
  EXPECT_EQ(problem_of({{"DOCFLOW_STORAGE_URL", "s3://bucket"}, {"AWS_REGION", "eu west"}}),
            "AWS_REGION: region 'eu west' may hold only letters, digits, '-', '_' and '.'");
  EXPECT_EQ(problems_of({{"DOCFLOW_STORAGE_URL", "s3://bucket?region=eu-west-1"}, {"AWS_REGION", "eu west"}})
                .size(),
            0U);
}

TEST(config_s3, unknown_parameters_are_named_all_at_once) {
  EXPECT_EQ(
      problem_of({{"DOCFLOW_STORAGE_URL", "s3://bucket?regoin=eu-west-1&pathstyle=true&region=x"}}),
      "DOCFLOW_STORAGE_URL: unknown parameter 'regoin', 'pathstyle' (known: endpoint, region, path_style)");
}

TEST(config_s3, errors_say_what_is_wrong) {
  const auto storage = [](const std::string& url) { return problem_of({{"DOCFLOW_STORAGE_URL", url}}); };
  EXPECT_EQ(storage("s3://"), "DOCFLOW_STORAGE_URL: names no bucket (s3://BUCKET[/PREFIX])");
  EXPECT_EQ(storage("s3://My_Bucket"),
            "DOCFLOW_STORAGE_URL: bucket 'My_Bucket' may hold only a-z, 0-9, '.' and '-'");
  EXPECT_EQ(
      storage("s3://bucket?endpoint=http://127.0.0.1:9000"),
      "DOCFLOW_STORAGE_URL: ?endpoint='http://127.0.0.1:9000' is an IP address, which a bucket cannot be a "
      "subdomain of; add &path_style=true");
  EXPECT_EQ(
      storage("s3://bucket?endpoint=http://minio:9000/s3&path_style=true"),
      "DOCFLOW_STORAGE_URL: ?endpoint='http://minio:9000/s3' must be scheme://host[:port] only, without a "
      "path or a query (expected http(s)://HOST[:PORT])");
  EXPECT_EQ(storage("s3://bucket?region=a&region=b"), "DOCFLOW_STORAGE_URL: ?region= is given twice");
  EXPECT_EQ(problem_of({{"DOCFLOW_S3_PART_SIZE", "4MiB"}}),
            "DOCFLOW_S3_PART_SIZE: '4MiB' must be between 5MiB and 5GiB");
  EXPECT_EQ(problem_of({{"DOCFLOW_S3_PART_SIZE", "big"}}),
            "DOCFLOW_S3_PART_SIZE: 'big' must be a size between 5MiB and 5GiB, written like 64KiB or 100MiB");
  EXPECT_EQ(problem_of({{"DOCFLOW_S3_PRESIGNED_DOWNLOADS", "on"}}),
            "DOCFLOW_S3_PRESIGNED_DOWNLOADS: is for an s3:// DOCFLOW_STORAGE_URL; a local directory has no "
            "presigned URLs");
}

TEST(config_s3, part_size_is_within_s3s_limits_and_read_with_either_store) {
  EXPECT_EQ(s3_of("s3://bucket", {{"DOCFLOW_S3_PART_SIZE", "5MiB"}}).part_size, 5ULL << 20);
  EXPECT_EQ(s3_of("s3://bucket", {{"DOCFLOW_S3_PART_SIZE", "5GiB"}}).part_size, 5ULL << 30);
  EXPECT_EQ(s3_of("s3://bucket", {{"DOCFLOW_S3_PART_SIZE", "16777216"}}).part_size, 16ULL << 20);
  EXPECT_EQ(load_with("DOCFLOW_S3_PART_SIZE", "64MiB").s3.part_size, 64ULL << 20);
}

TEST(config_s3, the_largest_upload_must_fit_in_ten_thousand_parts) {
  const values_map big{{"DOCFLOW_STORAGE_URL", "s3://bucket"}, {"DOCFLOW_MAX_UPLOAD_BYTES", "80000MiB"}};
  EXPECT_EQ(s3_of("s3://bucket", big).part_size, 8ULL << 20);  // exactly 10,000 parts
  auto bigger = big;
  bigger["DOCFLOW_MAX_UPLOAD_BYTES"] = "83886080001";
  EXPECT_EQ(problem_of(bigger),
            "DOCFLOW_S3_PART_SIZE: S3 takes at most 10000 parts: DOCFLOW_MAX_UPLOAD_BYTES needs parts of at "
            "least 8388609 bytes");
  bigger["DOCFLOW_S3_PART_SIZE"] = "8388609";
  EXPECT_TRUE(problems_of(bigger).empty());
  // A local directory has no parts.
  EXPECT_EQ(load_with("DOCFLOW_MAX_UPLOAD_BYTES", "100GiB").max_upload_bytes, 100ULL << 30);
}

TEST(config_s3, presigned_downloads_and_a_scratch_directory) {
  EXPECT_TRUE(s3_of("s3://bucket", {{"DOCFLOW_S3_PRESIGNED_DOWNLOADS", "on"}}).presigned_downloads);
  EXPECT_FALSE(s3_of("s3://bucket", {{"DOCFLOW_S3_PRESIGNED_DOWNLOADS", "off"}}).presigned_downloads);
  EXPECT_FALSE(load_with("DOCFLOW_S3_PRESIGNED_DOWNLOADS", "off").s3.presigned_downloads);
  EXPECT_EQ(load_with("DOCFLOW_SCRATCH_DIR", "/var/tmp/docflow").scratch_dir,
            std::filesystem::path("/var/tmp/docflow"));
  // With S3 there is no blob directory to keep apart from.
  EXPECT_EQ(config::load({{"DOCFLOW_STORAGE_URL", "s3://bucket"}, {"DOCFLOW_SCRATCH_DIR", "./data/blobs"}}, 4)
                .scratch_dir,
            std::filesystem::path("./data/blobs"));
  EXPECT_EQ(
      problem_of(
          {{"DOCFLOW_STORAGE_URL", "file:///srv/blobs"}, {"DOCFLOW_SCRATCH_DIR", "/srv/blobs/../blobs/x"}}),
      "DOCFLOW_SCRATCH_DIR: '/srv/blobs/../blobs/x' must be apart from the blob directory, neither in it nor "
      "holding it");
  EXPECT_TRUE(
      problems_of({{"DOCFLOW_STORAGE_URL", "file:///srv/blobs"}, {"DOCFLOW_SCRATCH_DIR", "/srv/blobs2"}})
          .empty());
}

TEST(config_s3, credentials_come_from_the_aws_variables) {
  const auto s = s3_of("s3://bucket", aws_credentials);
  EXPECT_EQ(s.access_key_id, "AKIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(s.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  EXPECT_EQ(s.session_token, "FwoGZXIvYXdzEXAMPLETOKEN");
  EXPECT_EQ(s3_of("s3://bucket", {{"AWS_SESSION_TOKEN", ""}}).session_token, "");
  // Without S3 they belong to some other tool in the environment.
  auto local = aws_credentials;
  local["AWS_SECRET_ACCESS_KEY"] = "with a space";
  const auto c = config::load(local, 4);
  EXPECT_EQ(c.storage, config::storage_kind::file);
  EXPECT_EQ(c.s3.access_key_id, "");
  EXPECT_EQ(c.s3.secret_access_key, "");
}

TEST(config_s3, credentials_are_required_by_serve_and_worker_only) {
  const auto bare = config::load({{"DOCFLOW_STORAGE_URL", "s3://bucket"}}, 4);
  for (const auto command : {config::for_serve, config::for_worker}) {
    try {
      config::require_for(bare, command);
      ADD_FAILURE() << "started without credentials, command " << command;
    } catch (const config::config_error& e) {
      EXPECT_EQ(
          std::string(e.what()),
          "AWS_ACCESS_KEY_ID: must be set (or AWS_ACCESS_KEY_ID_FILE) with an s3:// DOCFLOW_STORAGE_URL\n"
          "AWS_SECRET_ACCESS_KEY: must be set (or AWS_SECRET_ACCESS_KEY_FILE) with an s3:// "
          "DOCFLOW_STORAGE_URL");
    }
  }
  // Neither opens the blob store.
  EXPECT_NO_THROW(config::require_for(bare, config::for_migrate));
  EXPECT_NO_THROW(config::require_for(bare, config::for_user));
  const auto key_only = config::load(
      {{"DOCFLOW_STORAGE_URL", "s3://bucket"}, {"AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"}}, 4);
  try {
    config::require_for(key_only, config::for_serve);
    ADD_FAILURE() << "started without a secret key";
  } catch (const config::config_error& e) {
    ASSERT_EQ(e.problems().size(), 1U) << e.what();
    EXPECT_EQ(e.problems()[0].setting, "AWS_SECRET_ACCESS_KEY");
  }
  // Both problems at once when PostgreSQL lacks its key too.
  auto shared = aws_credentials;
  shared.erase("AWS_ACCESS_KEY_ID");
  shared["DOCFLOW_STORAGE_URL"] = "s3://bucket";
  shared["DOCFLOW_DATABASE_URL"] = "postgresql://db/docflow";
  try {
    config::require_for(config::load(shared, 4), config::for_worker);
    ADD_FAILURE() << "started without a JWT secret and an access key";
  } catch (const config::config_error& e) {
    ASSERT_EQ(e.problems().size(), 2U) << e.what();
    EXPECT_EQ(e.problems()[0].setting, "DOCFLOW_JWT_SECRET");
    EXPECT_EQ(e.problems()[1].setting, "AWS_ACCESS_KEY_ID");
  }
  auto complete = aws_credentials;
  complete["DOCFLOW_STORAGE_URL"] = "s3://bucket";
  complete.erase("AWS_SESSION_TOKEN");  // optional
  EXPECT_NO_THROW(config::require_for(config::load(complete, 4), config::for_serve));
}

TEST(config_s3, each_credential_may_come_from_a_file) {
  const temp_file key("AKIAIOSFODNN7EXAMPLE\n");
  const temp_file secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n");
  const temp_file token("FwoGZXIvYXdzEXAMPLETOKEN");
  const auto s = s3_of("s3://bucket", {{"AWS_ACCESS_KEY_ID_FILE", key.path()},
                                       {"AWS_SECRET_ACCESS_KEY_FILE", secret.path()},
                                       {"AWS_SESSION_TOKEN_FILE", token.path()}});
  EXPECT_EQ(s.access_key_id, "AKIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(s.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  EXPECT_EQ(s.session_token, "FwoGZXIvYXdzEXAMPLETOKEN");
  for (const std::string name : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}) {
    const auto both =
        problems_of({{"DOCFLOW_STORAGE_URL", "s3://bucket"}, {name, "x"}, {name + "_FILE", token.path()}});
    ASSERT_EQ(both.size(), 1U) << name;
    EXPECT_EQ(both[0].setting, name);
  }
}

TEST(config_s3, secrets_are_never_shown) {
  const std::string secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  const std::string token = "FwoGZXIvYXdzEXAMPLETOKEN";
  const auto shown = [&](const std::string& text) {
    return text.find(secret) != std::string::npos || text.find(token) != std::string::npos ||
           text.find("wJalrXUtnFEMI") != std::string::npos;
  };
  auto values = aws_credentials;
  values["DOCFLOW_STORAGE_URL"] = "s3://bucket/p?endpoint=https://s3.example.com&region=eu-west-1";
  const auto c = config::load(values, 4);
  EXPECT_FALSE(shown(config::describe_storage(c))) << config::describe_storage(c);
  EXPECT_FALSE(shown(config::describe_database(c)));
  // In the URL (where they do not belong) or malformed, they are refused without being quoted.
  for (const auto& url : {"s3://AKIAIOSFODNN7EXAMPLE:" + secret + "@bucket",
                          std::string("s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@bucket"),
                          "s3://AKIAIOSFODNN7EXAMPLE:" + secret + "@bucket/%zz",
                          "s3://bucket?endpoint=https://AKIA:" + secret + "@s3.example.com",
                          "s3://bucket?endpoint=https://AKIA:" + secret + "@s3.example.com/x"}) {
    const auto problems = problems_of({{"DOCFLOW_STORAGE_URL", url}});
    ASSERT_FALSE(problems.empty()) << url;
    for (const auto& p : problems) EXPECT_FALSE(shown(p.message)) << p.message;
  }
  for (const std::string name : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}) {
    auto with_cr = values;
    with_cr[name] = secret + token + "\r";
    const auto problems = problems_of(with_cr);
    ASSERT_EQ(problems.size(), 1U) << name;
    EXPECT_EQ(problems[0].setting, name);
    EXPECT_FALSE(shown(problems[0].message)) << problems[0].message;
  }
}

TEST(config_s3, the_description_is_the_normal_url_and_reads_back_the_same) {
  auto values = aws_credentials;
  values["AWS_REGION"] = "eu-west-1";
  for (const auto& [url, described] : std::vector<std::pair<std::string, std::string>>{
           {"s3://bucket", "s3://bucket?region=eu-west-1"},
           {"s3://bucket/a?path_style=false", "s3://bucket/a/?region=eu-west-1"},
           {"s3://bucket/tenant%20one/x?endpoint=http%3A%2F%2F127.0.0.1%3A9000%2F&path_style=true&region=r1",
            "s3://bucket/tenant%20one/x/?endpoint=http://127.0.0.1:9000&region=r1&path_style=true"}}) {
    values["DOCFLOW_STORAGE_URL"] = url;
    const auto first = config::load(values, 4);
    EXPECT_EQ(config::describe_storage(first), described) << url;
    values["DOCFLOW_STORAGE_URL"] = config::describe_storage(first);
    const auto again = config::load(values, 4).s3;
    EXPECT_EQ(again.bucket, first.s3.bucket);
    EXPECT_EQ(again.prefix, first.s3.prefix);
    EXPECT_EQ(again.endpoint, first.s3.endpoint);
    EXPECT_EQ(again.region, first.s3.region);
    EXPECT_EQ(again.path_style, first.s3.path_style);
  }
  EXPECT_EQ(config::describe_storage(load_with("DOCFLOW_DATA_DIR", "/srv")), "file:///srv/blobs");
}

TEST(config_s3, the_aws_variables_are_read_from_the_environment_and_are_no_unknown_docflow_variables) {
  for (const auto* name :
       {"DOCFLOW_STORAGE_URL", "DOCFLOW_TYPO", "AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID_FILE",
        "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY_FILE", "AWS_SESSION_TOKEN", "AWS_SESSION_TOKEN_FILE",
        "AWS_REGION", "AWS_DEFAULT_REGION"}) {
    EXPECT_TRUE(config::read_from_environment(name)) << name;
  }
  for (const auto* name :
       {"HOME", "AWS_PROFILE", "AWS_REGION_FILE", "AWS_ENDPOINT_URL", "XDOCFLOW_WORKERS"}) {
    EXPECT_FALSE(config::read_from_environment(name)) << name;
  }
  EXPECT_TRUE(
      unknown({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY_FILE", "AWS_REGION", "AWS_PROFILE"}).empty());
  // The DOCFLOW_ prefix added by habit is a typo like any other.
  EXPECT_EQ(unknown({"DOCFLOW_AWS_SECRET_ACCESS_KEY"}),
            (std::map<std::string, std::optional<std::string>>{
                {"DOCFLOW_AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"}}));
}

// -----------------------------------------------------------------------------------------------------------
// The settings table

TEST(config_settings, env_names_and_flags_are_unique_and_well_formed) {
  const auto& all = config::settings();
  ASSERT_FALSE(all.empty());
  std::set<std::string> envs;
  std::set<std::string> flags;
  for (const auto& s : all) {
    // The AWS_* names are the standard ones every S3 tool reads; as secrets they have no flag.
    const std::string prefix = s.env.starts_with("AWS_") && s.secret ? "AWS_" : "DOCFLOW_";
    EXPECT_EQ(s.env.rfind(prefix, 0), 0U) << s.env;
    EXPECT_GT(s.env.size(), prefix.size()) << s.env;
    EXPECT_EQ(s.flag.rfind("--", 0), 0U) << s.flag;
    EXPECT_GT(s.flag.size(), 2U) << s.flag;
    EXPECT_FALSE(s.help.empty()) << s.env;
    EXPECT_TRUE(envs.insert(s.env).second) << "duplicate env " << s.env;
    EXPECT_TRUE(flags.insert(s.flag).second) << "duplicate flag " << s.flag;
  }
}

TEST(config_settings, serve_reads_every_setting_but_the_worker_listener_and_the_others_their_own) {
  std::set<std::string> worker;
  std::set<std::string> migrate;
  std::set<std::string> user;
  for (const auto& s : config::settings()) {
    EXPECT_EQ(s.used_by & config::for_serve, s.env == "DOCFLOW_WORKER_LISTEN" ? 0U : config::for_serve)
        << s.env;
    if ((s.used_by & config::for_worker) != 0) worker.insert(s.env);
    if ((s.used_by & config::for_migrate) != 0) migrate.insert(s.env);
    if ((s.used_by & config::for_user) != 0) user.insert(s.env);
  }
  EXPECT_EQ(worker, (std::set<std::string>{"DOCFLOW_DATA_DIR",
                                           "DOCFLOW_DATABASE_URL",
                                           "DOCFLOW_DATABASE_PASSWORD",
                                           "DOCFLOW_DATABASE_POOL",
                                           "DOCFLOW_STORAGE_URL",
                                           "DOCFLOW_SCRATCH_DIR",
                                           "AWS_ACCESS_KEY_ID",
                                           "AWS_SECRET_ACCESS_KEY",
                                           "AWS_SESSION_TOKEN",
                                           "DOCFLOW_JWT_SECRET",
                                           "DOCFLOW_AUTO_MIGRATE",
                                           "DOCFLOW_WORKERS",
                                           "DOCFLOW_WORKER_LISTEN",
                                           "DOCFLOW_JOB_LEASE",
                                           "DOCFLOW_JOB_MAX_ATTEMPTS",
                                           "DOCFLOW_MAX_RUNNING_PER_USER",
                                           "DOCFLOW_MAX_TEXT_BYTES",
                                           "DOCFLOW_SIMULATED_DELAY_MS",
                                           "DOCFLOW_SANDBOX",
                                           "DOCFLOW_OCR",
                                           "DOCFLOW_OCR_LANGUAGES",
                                           "DOCFLOW_OCR_DPI",
                                           "DOCFLOW_OCR_MIN_PAGE_CHARS",
                                           "DOCFLOW_OCR_MAX_PAGES",
                                           "DOCFLOW_OCR_PAGE_CPU_SECONDS",
                                           "DOCFLOW_OCR_PAGE_TIMEOUT",
                                           "DOCFLOW_ML_URL",
                                           "DOCFLOW_ML_TIMEOUT",
                                           "DOCFLOW_LOG_LEVEL",
                                           "DOCFLOW_METRICS_TOKEN",
                                           "DOCFLOW_WEBHOOK_ALLOWED_NETWORKS",
                                           "DOCFLOW_WEBHOOK_TIMEOUT",
                                           "DOCFLOW_WEBHOOK_CONCURRENCY",
                                           "DOCFLOW_WEBHOOK_RETRY_BASE",
                                           "DOCFLOW_WEBHOOK_RETRY_FOR",
                                           "DOCFLOW_NODE_NAME"}));
  EXPECT_EQ(migrate,
            (std::set<std::string>{"DOCFLOW_DATA_DIR", "DOCFLOW_DATABASE_URL", "DOCFLOW_DATABASE_PASSWORD",
                                   "DOCFLOW_LOG_LEVEL", "DOCFLOW_NODE_NAME"}));
  EXPECT_EQ(user,
            (std::set<std::string>{"DOCFLOW_DATA_DIR", "DOCFLOW_DATABASE_URL", "DOCFLOW_DATABASE_PASSWORD",
                                   "DOCFLOW_AUTO_MIGRATE", "DOCFLOW_NODE_NAME"}));
}

// -----------------------------------------------------------------------------------------------------------
// parse_size

namespace {

struct size_case {
  std::string text;
  std::optional<std::uint64_t> expected;
};

void PrintTo(const size_case& c, std::ostream* os) { *os << "'" << c.text << "'"; }

class parse_size_test : public testing::TestWithParam<size_case> {};

constexpr auto u64_max = std::numeric_limits<std::uint64_t>::max();

}  // namespace

TEST_P(parse_size_test, parses_or_rejects) {
  EXPECT_EQ(config::parse_size(GetParam().text), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(valid, parse_size_test,
                         testing::Values(size_case{"0", 0}, size_case{"512", 512}, size_case{"7B", 7},
                                         size_case{"64KiB", 65536}, size_case{"100MiB", 104857600},
                                         size_case{"1GiB", 1073741824}, size_case{"1KB", 1000},
                                         size_case{"3MB", 3000000}, size_case{"1GB", 1000000000},
                                         size_case{"18446744073709551615", u64_max},
                                         size_case{"17179869183GiB", 17179869183ULL << 30}));

INSTANTIATE_TEST_SUITE_P(invalid, parse_size_test,
                         testing::Values(size_case{"", std::nullopt}, size_case{"KiB", std::nullopt},
                                         size_case{"-1", std::nullopt}, size_case{"+1", std::nullopt},
                                         size_case{" 1", std::nullopt}, size_case{"1 ", std::nullopt},
                                         size_case{"1.5MiB", std::nullopt}, size_case{"10 MiB", std::nullopt},
                                         size_case{"10kib", std::nullopt}, size_case{"10KiBB", std::nullopt},
                                         size_case{"10TiB", std::nullopt},
                                         size_case{"18446744073709551616", std::nullopt},
                                         size_case{"17179869184GiB", std::nullopt},
                                         size_case{"18446744073709552KB", std::nullopt}));

// -----------------------------------------------------------------------------------------------------------
// parse_duration

namespace {

struct duration_case {
  std::string text;
  std::optional<milliseconds> expected;
};

void PrintTo(const duration_case& c, std::ostream* os) { *os << "'" << c.text << "'"; }

class parse_duration_test : public testing::TestWithParam<duration_case> {};

}  // namespace

TEST_P(parse_duration_test, parses_or_rejects) {
  EXPECT_EQ(config::parse_duration(GetParam().text), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(valid, parse_duration_test,
                         testing::Values(duration_case{"500ms", 500ms}, duration_case{"2s", 2s},
                                         duration_case{"15m", 15min}, duration_case{"3h", 3h},
                                         duration_case{"7d", 7 * 24h}, duration_case{"0s", 0ms},
                                         duration_case{"0ms", 0ms},
                                         duration_case{"9223372036854775807ms", milliseconds::max()},
                                         duration_case{"106751991167d", 106751991167LL * 24h}));

INSTANTIATE_TEST_SUITE_P(
    invalid, parse_duration_test,
    testing::Values(duration_case{"5", std::nullopt}, duration_case{"5x", std::nullopt},
                    duration_case{"", std::nullopt}, duration_case{"ms", std::nullopt},
                    duration_case{"-5s", std::nullopt}, duration_case{"1.5s", std::nullopt},
                    duration_case{"5 s", std::nullopt}, duration_case{"5S", std::nullopt},
                    duration_case{"1m30s", std::nullopt}, duration_case{"2w", std::nullopt},
                    duration_case{"9223372036854775808ms", std::nullopt},
                    duration_case{"106751991168d", std::nullopt},
                    duration_case{"213503982335d", std::nullopt},
                    duration_case{"18446744073709551616ms", std::nullopt}));

// -----------------------------------------------------------------------------------------------------------
// Proxies and the node name

TEST(config_proxies, addresses_and_blocks_of_both_families_with_spaces_around_commas) {
  const auto c = load_with("DOCFLOW_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8 ,::1,fd00::/8,192.168.1.0/24");
  ASSERT_EQ(c.trusted_proxies.size(), 5U);
  const auto ip = [](const char* text) { return *core::parse_ip_address(text); };
  EXPECT_TRUE(core::any_contains(c.trusted_proxies, ip("127.0.0.1")));
  EXPECT_FALSE(core::any_contains(c.trusted_proxies, ip("127.0.0.2")));
  EXPECT_TRUE(core::any_contains(c.trusted_proxies, ip("10.255.1.2")));
  EXPECT_TRUE(core::any_contains(c.trusted_proxies, ip("::1")));
  EXPECT_TRUE(core::any_contains(c.trusted_proxies, ip("fd12:3456::9")));
  EXPECT_TRUE(core::any_contains(c.trusted_proxies, ip("192.168.1.200")));
  EXPECT_FALSE(core::any_contains(c.trusted_proxies, ip("192.168.2.1")));
  EXPECT_TRUE(load_with("DOCFLOW_TRUSTED_PROXIES", "").trusted_proxies.empty());
}

TEST(config_proxies, a_block_with_host_bits_names_both_meanings) {
  try {
    load_with("DOCFLOW_TRUSTED_PROXIES", "10.1.2.3/8");
    FAIL() << "accepted 10.1.2.3/8";
  } catch (const config::config_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("10.0.0.0/8"), std::string::npos) << what;
    EXPECT_NE(what.find("10.1.2.3 alone"), std::string::npos) << what;
  }
}

TEST(config_proxies, every_bad_entry_is_reported) {
  try {
    load_with("DOCFLOW_TRUSTED_PROXIES", "proxy-a,127.0.0.1,proxy-b");
    FAIL() << "accepted two host names";
  } catch (const config::config_error& e) {
    ASSERT_EQ(e.problems().size(), 2U) << e.what();
    EXPECT_NE(e.problems()[0].message.find("proxy-a"), std::string::npos);
    EXPECT_NE(e.problems()[1].message.find("proxy-b"), std::string::npos);
  }
}

TEST(config_node, any_printable_name_up_to_64_bytes) {
  EXPECT_EQ(load_with("DOCFLOW_NODE_NAME", "api-1").node_name, "api-1");
  EXPECT_EQ(load_with("DOCFLOW_NODE_NAME", "web 2 (eu-west/a)").node_name, "web 2 (eu-west/a)");
  EXPECT_EQ(load_with("DOCFLOW_NODE_NAME", std::string(64, 'n')).node_name, std::string(64, 'n'));
}
