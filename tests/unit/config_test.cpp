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
  EXPECT_EQ(c.idempotency_ttl, 24h);
  EXPECT_EQ(c.queue_max_depth, 10000U);
  EXPECT_EQ(c.simulated_delay, 0ms);
  EXPECT_FALSE(c.sandbox_strict);
  EXPECT_FALSE(c.ml_url.has_value());
  EXPECT_EQ(c.ml_timeout, 30s);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.header_timeout, 30s);
  EXPECT_EQ(c.body_timeout, 60s);
  EXPECT_EQ(c.idle_timeout, 60s);
  EXPECT_EQ(c.shutdown_timeout, 30s);
  EXPECT_EQ(c.io_threads, 2U);
  EXPECT_EQ(c.blocking_threads, 32U);
  EXPECT_FALSE(c.metrics_token.has_value());
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
                               {"DOCFLOW_SANDBOX", "strict"},
                               {"DOCFLOW_ML_URL", "https://ml.internal:9000/enrich"},
                               {"DOCFLOW_ML_TIMEOUT", "2m"},
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
  EXPECT_TRUE(c.sandbox_strict);
  EXPECT_EQ(c.ml_url, "https://ml.internal:9000/enrich");
  EXPECT_EQ(c.ml_timeout, 2min);
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
    testing::ValuesIn(join(bad("DOCFLOW_DATA_DIR", {""}),
                           bad("DOCFLOW_DATABASE_URL",
                               {"", "sqlite://", "/var/lib/docflow.db", "mysql://db/docflow",
                                "host=db dbname=docflow", "postgresql:/db"}),
                           bad("DOCFLOW_STORAGE_URL", {"", "file://", "/var/blobs", "s3://bucket/prefix"}),
                           bad("DOCFLOW_AUTO_MIGRATE", {"", "yes", "On", "true"}))));

INSTANTIATE_TEST_SUITE_P(auth, config_rejects,
                         testing::ValuesIn(join(bad("DOCFLOW_JWT_SECRET", {std::string(31, 'k'), "x"}),
                                                bad("DOCFLOW_JWT_SECRET_PREVIOUS", {std::string(31, 'k')}),
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
    testing::ValuesIn(
        join(bad("DOCFLOW_MAX_ACTIVE_UPLOADS", {"0", "-1", "100001", "many"}),
             bad("DOCFLOW_MAX_UPLOAD_BYTES",
                 {"0", "-1", "100 MiB", "100mib", "1.5GiB", "18446744073709551616", "17179869184GiB"}),
             bad("DOCFLOW_WORKERS", {"", "-1", "257", "4 ", "0x4"}),
             bad("DOCFLOW_WORKER_LISTEN", {"9100", "127.0.0.1", "[::1]", "localhost:http"}),
             bad("DOCFLOW_JOB_LEASE", {"0s", "30"}), bad("DOCFLOW_JOB_MAX_ATTEMPTS", {"0", "101"}),
             bad("DOCFLOW_IDEMPOTENCY_TTL", {"1d2h"}), bad("DOCFLOW_QUEUE_MAX_DEPTH", {"0", "4294967296"}),
             bad("DOCFLOW_SIMULATED_DELAY_MS", {"3600001", "10ms"}),
             bad("DOCFLOW_SANDBOX", {"Strict", "best_effort", "off", ""}),
             bad("DOCFLOW_ML_URL", {"ftp://ml", "ml.internal:9000"}),
             bad("DOCFLOW_ML_TIMEOUT", {"0s", "2h", "30"}))));

INSTANTIATE_TEST_SUITE_P(
    server, config_rejects,
    testing::ValuesIn(join(bad("DOCFLOW_LOG_LEVEL", {"verbose", "INFO", ""}),
                           bad("DOCFLOW_HEADER_TIMEOUT", {"0ms", "2h"}), bad("DOCFLOW_BODY_TIMEOUT", {"61m"}),
                           bad("DOCFLOW_IDLE_TIMEOUT", {"5"}), bad("DOCFLOW_SHUTDOWN_TIMEOUT", {"5x", "2h"}),
                           bad("DOCFLOW_IO_THREADS", {"0"}),
                           bad("DOCFLOW_BLOCKING_THREADS", {"0", "1025"}))));

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

TEST(config_rejects_message, s3_is_explained) {
  try {
    load_with("DOCFLOW_STORAGE_URL", "s3://bucket");
    FAIL() << "s3:// accepted";
  } catch (const config::config_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("S3"), std::string::npos) << what;
    EXPECT_NE(what.find("file://"), std::string::npos) << what;
  }
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

TEST(config_secrets, are_the_keys_the_database_password_and_the_metrics_token) {
  std::set<std::string> secrets;
  for (const auto& s : config::settings()) {
    if (s.secret) secrets.insert(s.env);
  }
  EXPECT_EQ(secrets, (std::set<std::string>{"DOCFLOW_DATABASE_PASSWORD", "DOCFLOW_JWT_SECRET",
                                            "DOCFLOW_JWT_SECRET_PREVIOUS", "DOCFLOW_METRICS_TOKEN"}));
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
// The settings table

TEST(config_settings, env_names_and_flags_are_unique_and_well_formed) {
  const auto& all = config::settings();
  ASSERT_FALSE(all.empty());
  std::set<std::string> envs;
  std::set<std::string> flags;
  for (const auto& s : all) {
    EXPECT_EQ(s.env.rfind("DOCFLOW_", 0), 0U) << s.env;
    EXPECT_GT(s.env.size(), std::string("DOCFLOW_").size()) << s.env;
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
  EXPECT_EQ(worker,
            (std::set<std::string>{"DOCFLOW_DATA_DIR", "DOCFLOW_DATABASE_URL", "DOCFLOW_DATABASE_PASSWORD",
                                   "DOCFLOW_DATABASE_POOL", "DOCFLOW_STORAGE_URL", "DOCFLOW_JWT_SECRET",
                                   "DOCFLOW_AUTO_MIGRATE", "DOCFLOW_WORKERS", "DOCFLOW_WORKER_LISTEN",
                                   "DOCFLOW_JOB_LEASE", "DOCFLOW_JOB_MAX_ATTEMPTS", "DOCFLOW_MAX_TEXT_BYTES",
                                   "DOCFLOW_SIMULATED_DELAY_MS", "DOCFLOW_SANDBOX", "DOCFLOW_ML_URL",
                                   "DOCFLOW_ML_TIMEOUT", "DOCFLOW_LOG_LEVEL", "DOCFLOW_METRICS_TOKEN"}));
  EXPECT_EQ(migrate, (std::set<std::string>{"DOCFLOW_DATA_DIR", "DOCFLOW_DATABASE_URL",
                                            "DOCFLOW_DATABASE_PASSWORD", "DOCFLOW_LOG_LEVEL"}));
  EXPECT_EQ(user, (std::set<std::string>{"DOCFLOW_DATA_DIR", "DOCFLOW_DATABASE_URL",
                                         "DOCFLOW_DATABASE_PASSWORD", "DOCFLOW_AUTO_MIGRATE"}));
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
