#pragma once

// `docflow migrate-data`: moves a single node's data (SQLite and a local
// directory) into PostgreSQL and a blob store (S3), resumably. The command
// and the steps it is made of, apart so that tests can run each.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace docflow::config {
struct config;
}
namespace docflow::store::transfer {
class source;
class sink;
}  // namespace docflow::store::transfer
namespace docflow::blob {
class blob_store;
}

namespace docflow::app {

/// The exit codes of migrate-data besides 0 (done, every blob verified) and
/// 2 (bad configuration).
constexpr int exit_migration_incomplete = 1;  ///< something failed: run it again
constexpr int exit_target_not_ours = 3;       ///< the target holds data the source does not
constexpr int exit_source_in_use = 75;        ///< a docflow still runs on the source

/// Tables the source's schema holds that store::transfer::tables() neither
/// copies nor names as not copied, and tables whose columns differ from the
/// ones it copies ("table.column"): what this docflow cannot move whole.
std::vector<std::string> unhandled_schema(store::transfer::source& source);

/// Why the target is not empty nor a partial copy of this source: the
/// first user, document or blob it holds that the source does not, named;
/// nullopt when it holds only what the source does.
std::optional<std::string> foreign_data(store::transfer::source& source, store::transfer::sink& target,
                                        blob::blob_store& target_blobs);

/// What happened to one document's blob.
enum class blob_fate {
  copied,   ///< written to the target, read back and verified
  present,  ///< already on the target (an earlier run), read back and verified
  failed,   ///< not verified: the document's rows were not written
};

/// One document done (or failed), as copy_everything reports it.
struct document_progress {
  std::string id;
  std::uint64_t bytes = 0;
  blob_fate fate = blob_fate::copied;
  std::string problem;  ///< failed: why
};

/// What a run did, for the summary.
struct migration_summary {
  struct table_rows {
    std::string name;
    std::size_t source = 0;   ///< rows in the source
    std::size_t written = 0;  ///< rows this run wrote
    std::size_t target = 0;   ///< rows in the target at the end
  };
  std::vector<table_rows> tables;
  std::size_t blobs_copied = 0;
  std::uint64_t bytes_copied = 0;
  std::size_t blobs_present = 0;
  std::uint64_t bytes_present = 0;
  std::size_t blobs_verified = 0;
  std::uint64_t bytes_verified = 0;
  std::vector<std::string> problems;  ///< one line per failure

  /// Every blob verified, every table's rows all on the target.
  bool complete() const;
};

/// Copies every table and every document's blob from the source to the
/// target, whose schema is at the source's version: the rows of tables that
/// documents hang from first, then each document in id order (its blob
/// copied and verified by reading it back through `target_blobs`, then its
/// row and its jobs, result and events in one transaction), then the rest.
/// What the target already has is kept, not written twice, so a run after
/// an interrupted one finishes its work. `on_document` hears of each
/// document as it is done. Throws store::store_error and blob::blob_error
/// for what stops the whole copy (the target unreachable).
migration_summary copy_everything(store::transfer::source& source, blob::blob_store& source_blobs,
                                  store::transfer::sink& target, blob::blob_store& target_blobs,
                                  const std::function<void(const document_progress&)>& on_document);

/// The summary as the operator reads it: a line per table, then the blobs.
std::string format_summary(const migration_summary& s);

/// `docflow migrate-data`: `source` is the node's configuration (SQLite and
/// a local directory), `target` the same with the target's URLs (PostgreSQL
/// and any blob store). Returns the exit code.
int migrate_data(const config::config& source, const config::config& target);

}  // namespace docflow::app
