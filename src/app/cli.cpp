#include "app/cli.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string_view>
#include <thread>

#include <CLI/CLI.hpp>

#include "api/routes.hpp"
#include "app/migrate.hpp"
#include "app/wiring.hpp"
#include "config/config.hpp"
#include "config/units.hpp"
#include "pipeline/sandbox.hpp"
#include "pipeline/zygote.hpp"

namespace docflow::app {

namespace {

constexpr int exit_bad_config = 2;

// Registers one option per setting that `command` reads on `cmd`. A flag
// that is given overwrites the value read from the environment (see run_cli).
// Secrets have no flag; the help names their variables instead.
void add_settings(CLI::App& cmd, config::command command, std::map<std::string, std::string>& raw) {
  std::string secrets;
  for (const auto& s : config::settings()) {
    if ((s.used_by & command) == 0) {
      continue;
    }
    if (s.secret) {
      secrets += "  " + s.env + " or " + s.env + "_FILE\n      " + s.help + "\n";
      continue;
    }
    cmd.add_option_function<std::string>(
           s.flag, [&raw, env = s.env](const std::string& v) { raw[env] = v; },
           s.help + " [env " + s.env + "]")
        ->group("Settings (each also read from its environment variable; the flag wins)");
  }
  if (!secrets.empty()) {
    cmd.footer("Secrets (environment only; NAME_FILE is the path of a file holding the value):\n" + secrets);
  }
}

// A secret on the command line is visible to every user of the machine (ps,
// /proc/PID/cmdline), so its flag is refused, before CLI11 could echo the
// value in an error. Returns the message, if any.
std::optional<std::string> refuse_secret_flags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") {
      break;
    }
    for (const auto& s : config::settings()) {
      if (s.secret && (arg == s.flag || arg.starts_with(s.flag + "="))) {
        return s.flag + " is not accepted: a command line is visible to other users of the machine; set " +
               s.env + " or " + s.env + "_FILE (the path of a file holding it) instead";
      }
    }
  }
  return std::nullopt;
}

// For a mistyped command CLI11 says only "A subcommand is required": name
// the unknown word and the commands valid at that level (not the hidden
// internal ones). Returns the message, if any.
std::optional<std::string> unknown_command(CLI::App& app, int argc, char** argv) {
  const auto commands_of = [](CLI::App* a) {
    return a->get_subcommands([](const CLI::App*) { return true; });
  };
  CLI::App* level = &app;
  std::string path = "docflow";
  std::string unknown;
  for (int i = 1; i < argc; ++i) {
    const auto commands = commands_of(level);
    if (commands.empty()) {
      break;  // the rest are a command's own arguments
    }
    const std::string word = argv[i];
    if (word.starts_with('-')) {
      continue;
    }
    const auto match = std::find_if(commands.begin(), commands.end(),
                                    [&](const CLI::App* c) { return c->check_name(word); });
    if (match == commands.end()) {
      unknown = word;
      break;
    }
    level = *match;
    path += " " + word;
  }
  if (unknown.empty()) {
    return std::nullopt;
  }
  std::string valid;
  for (const auto* c : commands_of(level)) {
    if (!c->get_group().empty()) {
      valid += (valid.empty() ? "" : ", ") + c->get_name();
    }
  }
  return path + ": unknown command '" + unknown + "' (commands: " + valid + ")";
}

// Every DOCFLOW_* variable and the AWS_* ones config reads: the one place
// configuration is read from the environment. All DOCFLOW_* are kept, not
// only the settings' names: a secret may come as <NAME>_FILE, and an
// unknown name is warned about.
std::map<std::string, std::string> docflow_environment() {
  std::map<std::string, std::string> raw;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text = *entry;
    const auto eq = text.find('=');
    if (eq != std::string_view::npos && config::read_from_environment(text.substr(0, eq))) {
      raw.emplace(text.substr(0, eq), text.substr(eq + 1));
    }
  }
  return raw;
}

config::config load_or_exit(const std::map<std::string, std::string>& raw, config::command command) {
  // A misspelt name would otherwise silently leave its setting at the default.
  for (const auto& u : config::unknown_variables(raw)) {
    std::cerr << "docflow: warning: " << u.name << " is not a setting"
              << (u.suggestion ? " (did you mean " + *u.suggestion + "?)" : "") << '\n';
  }
  try {
    auto cfg = config::load(raw, std::max(1U, std::thread::hardware_concurrency()));
    config::require_for(cfg, command);
    return cfg;
  } catch (const config::config_error& e) {
    for (const auto& p : e.problems()) {
      std::cerr << "docflow: invalid configuration: " << p.setting << ": " << p.message << '\n';
    }
    std::exit(exit_bad_config);
  }
}

// The source is the node as its other commands see it; the target is the
// same configuration with the target's URLs, so that the settings a serve
// on it will read (the S3 region and endpoint, AWS_*, the database
// password) are the ones the copy uses. A single node has no password.
int migrate_data_command(const std::map<std::string, std::string>& raw, const std::string& to_database,
                         const std::string& to_storage) {
  auto source_raw = raw;
  source_raw.erase("DOCFLOW_DATABASE_PASSWORD");
  source_raw.erase("DOCFLOW_DATABASE_PASSWORD_FILE");
  const auto source = load_or_exit(source_raw, config::for_maintenance);
  auto target_raw = raw;
  target_raw["DOCFLOW_DATABASE_URL"] = to_database;
  target_raw["DOCFLOW_STORAGE_URL"] = to_storage;
  const auto target = load_or_exit(target_raw, config::for_maintenance);
  if (source.database != config::database_kind::sqlite || source.storage != config::storage_kind::file) {
    std::cerr << "docflow: migrate-data: the source must be a single node (sqlite:// and file://), not "
              << config::describe_database(source) << " and " << config::describe_storage(source) << '\n';
    return exit_bad_config;
  }
  if (target.database != config::database_kind::postgres) {
    std::cerr << "docflow: migrate-data: --to-database must be a postgresql:// URL\n";
    return exit_bad_config;
  }
  return migrate_data(source, target);
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"docflow: a document lifecycle service (upload, process, results)", "docflow"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show every command's options");
  const std::string version = std::string("docflow ") + DOCFLOW_VERSION;
  app.set_version_flag("--version,-V", version, "Print the version and exit");

  auto raw = docflow_environment();
  auto* serve_cmd = app.add_subcommand("serve", "Run the HTTP API and the in-process workers");
  add_settings(*serve_cmd, config::for_serve, raw);
  auto* migrate_cmd = app.add_subcommand("migrate", "Apply pending database migrations and exit");
  add_settings(*migrate_cmd, config::for_migrate, raw);
  auto* maintenance_cmd = app.add_subcommand(
      "maintenance",
      "Run one maintenance pass now: expired records, orphan blobs and uncommitted uploads older than "
      "--min-age");
  std::string maintenance_min_age = "1h";
  maintenance_cmd->add_option("--min-age", maintenance_min_age,
                              "leave orphan blobs and uploads younger than this (default 1h); 0s only "
                              "when no upload is in flight");
  add_settings(*maintenance_cmd, config::for_maintenance, raw);
  auto* migrate_data_cmd = app.add_subcommand(
      "migrate-data",
      "Copy this node's data (SQLite and its blob directory) into PostgreSQL and S3, resumably; stop the "
      "node "
      "first. Exit 0 when every blob is verified on the target, 1 when not (run it again), 3 when the target "
      "holds other data, 75 when a docflow still runs on the source");
  std::string to_database;
  std::string to_storage;
  migrate_data_cmd->add_option("--to-database", to_database, "the target: postgresql://USER@HOST:PORT/DB")
      ->required();
  migrate_data_cmd
      ->add_option("--to-storage", to_storage,
                   "the target blob store: s3://BUCKET[/PREFIX][?endpoint=...] (or file://PATH)")
      ->required();
  add_settings(*migrate_data_cmd, config::for_maintenance, raw);
  migrate_data_cmd->footer(
      "The source is this node as `serve` reads it (DOCFLOW_DATA_DIR, DOCFLOW_DATABASE_URL, "
      "DOCFLOW_STORAGE_URL). DOCFLOW_DATABASE_PASSWORD and AWS_* are the target's.");
  auto* version_cmd = app.add_subcommand("version", "Print the version and exit");
  auto* worker_cmd =
      app.add_subcommand("worker", "Run job workers only (no HTTP), against the same database");
  add_settings(*worker_cmd, config::for_worker, raw);
  // The zygote that forks the sandboxed child of each extraction and DOCX
  // check (--zygote), or one such child, its input on stdin (--task, for
  // profiling and debugging); not for people.
  std::string extract_task;
  std::string extract_sandbox = "best-effort";
  bool extract_zygote = false;
  auto* extract_cmd = app.add_subcommand("extract", "")->group("");
  extract_cmd->add_flag("--zygote", extract_zygote);
  extract_cmd->add_option("--task", extract_task);
  extract_cmd->add_option("--sandbox", extract_sandbox);
  std::uint64_t extract_max_text = std::uint64_t{16} << 20;
  extract_cmd->add_option("--max-text-bytes", extract_max_text);
  pipeline::ocr_request extract_ocr;
  std::string extract_ocr_pages;
  extract_cmd->add_option("--ocr-languages", extract_ocr.languages);
  extract_cmd->add_option("--ocr-dpi", extract_ocr.dpi);
  extract_cmd->add_option("--ocr-pages", extract_ocr_pages);
  extract_cmd->add_option("--blank-checks", extract_ocr.blank_checks);
  // The route table as "METHOD PATTERN" lines, for the OpenAPI contract test.
  auto* routes_cmd = app.add_subcommand("routes", "")->group("");
  auto* user_cmd = app.add_subcommand("user", "Manage accounts");
  user_cmd->require_subcommand(1);
  std::string user_name;
  bool user_admin = false;
  auto* user_add_cmd =
      user_cmd->add_subcommand("add",
                               "Create an account; the password is typed twice at a terminal, or else is "
                               "the first line of standard input");
  user_add_cmd->add_option("name", user_name, "Username (3-64 of A-Z a-z 0-9 . _ -)")->required();
  user_add_cmd->add_flag("--admin", user_admin, "Give the account the admin role");
  add_settings(*user_add_cmd, config::for_user, raw);
  auto* user_list_cmd = user_cmd->add_subcommand("list", "List accounts");
  add_settings(*user_list_cmd, config::for_user, raw);
  std::optional<std::string> quota_bytes;
  std::optional<std::string> quota_documents;
  auto* user_quota_cmd = user_cmd->add_subcommand(
      "set-quota", "Set an account's own limits (a number, 'unlimited', or 'default' for DOCFLOW_QUOTA_*)");
  user_quota_cmd->add_option("name", user_name, "Username")->required();
  user_quota_cmd->add_option("--bytes", quota_bytes, "Bytes of documents it may store, like 10GiB");
  user_quota_cmd->add_option("--documents", quota_documents, "Documents it may store");
  add_settings(*user_quota_cmd, config::for_user, raw);

  if (const auto refusal = refuse_secret_flags(argc, argv)) {
    std::cerr << "docflow: " << *refusal << '\n';
    return exit_bad_config;
  }
  if (const auto unknown = unknown_command(app, argc, argv)) {
    std::cerr << *unknown << '\n';
    return exit_bad_config;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end parsing with exit code 0; every real error is 2.
    return app.exit(e) == 0 ? 0 : exit_bad_config;
  }

  if (version_cmd->parsed()) {
    std::cout << version << '\n';
    return 0;
  }
  if (extract_cmd->parsed()) {
    if (extract_zygote) return pipeline::zygote_main();
    const auto task = pipeline::parse_task_argument(extract_task);
    auto pages = pipeline::parse_page_list(extract_ocr_pages);
    if (!task || !pages || (extract_sandbox != "strict" && extract_sandbox != "best-effort")) {
      return exit_bad_config;
    }
    extract_ocr.pages = std::move(*pages);
    return pipeline::child_main({*task, extract_sandbox == "strict", extract_max_text, extract_ocr, {}, 0});
  }
  if (routes_cmd->parsed()) {
    for (const auto& r : api::route_signatures()) {
      std::cout << r.method << ' ' << r.pattern << '\n';
    }
    return 0;
  }
  if (worker_cmd->parsed()) {
    return work(load_or_exit(raw, config::for_worker));
  }
  if (migrate_cmd->parsed()) {
    return migrate(load_or_exit(raw, config::for_migrate));
  }
  if (migrate_data_cmd->parsed()) {
    return migrate_data_command(raw, to_database, to_storage);
  }
  if (maintenance_cmd->parsed()) {
    const auto min_age = config::parse_duration(maintenance_min_age);
    if (!min_age) {
      std::cerr << "docflow: --min-age: expected a duration such as 0s, 30m or 1h\n";
      return exit_bad_config;
    }
    return maintain(load_or_exit(raw, config::for_maintenance),
                    std::chrono::duration_cast<std::chrono::seconds>(*min_age));
  }
  if (user_add_cmd->parsed()) {
    return user_add(load_or_exit(raw, config::for_user), user_name, user_admin);
  }
  if (user_quota_cmd->parsed()) {
    return user_set_quota(load_or_exit(raw, config::for_user), user_name, quota_bytes, quota_documents);
  }
  if (user_list_cmd->parsed()) {
    return user_list(load_or_exit(raw, config::for_user));
  }
  if (serve_cmd->parsed()) {
    return serve(load_or_exit(raw, config::for_serve));
  }
  return exit_bad_config;
}

}  // namespace docflow::app
