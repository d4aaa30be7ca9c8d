#pragma once

// Moving a whole database from one engine to another (`docflow
// migrate-data`): the tables as the copy sees them, a source that reads
// them and a sink that writes them. Rows travel as SQLite stores them (text
// cells), so the sink converts each column by its kind; nothing above the
// store names a column or writes SQL.

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/database.hpp"

namespace docflow::store::transfer {

/// What a column holds, as SQLite stores it, and so how a sink writes it.
enum class kind {
  id,       ///< a UUID as text
  text,     ///< text
  integer,  ///< an integer
  boolean,  ///< 0 or 1
  time,     ///< Unix milliseconds
  json,     ///< JSON text
  bytes,    ///< text kept as raw bytes (a result's text)
};

struct column {
  std::string_view name;
  transfer::kind kind;
};

struct table {
  std::string_view name;
  std::vector<column> columns;  ///< every column of the SQLite table, in order
  /// The row's identity: the primary key's columns (the first ones). A row
  /// whose key the target has is not written again.
  std::size_t key_columns = 1;
  /// Copied with its document (column document_id), in that document's
  /// transaction, after its blob: a table that hangs from one document.
  bool per_document = false;
};

/// Every table of the schema that holds data, in an order that keeps
/// references valid (users before what they own, a document before what
/// hangs from it). A test compares it with the SQLite schema.
const std::vector<table>& tables();

/// The table named `name` in tables(). Throws std::out_of_range.
const table& table_named(std::string_view name);

/// A table of the schema that is not copied, and why.
struct skipped_table {
  std::string_view name;
  std::string_view why;
};
const std::vector<skipped_table>& not_copied();

/// One cell as SQLite holds it; nullopt is NULL.
using cell = std::optional<std::string>;
using row = std::vector<cell>;

/// Rows of one table, for a sink's insert.
struct rows {
  const table* of = nullptr;
  std::vector<row> values;
};

/// The source database is open in another process (a docflow that still
/// runs on it): its data could change under the copy.
class source_busy : public store_error {
public:
  using store_error::store_error;
};

/// A consistent, read-only view of the source database, held for the
/// source's lifetime, during which no other process can write (nor open) it.
/// Every method throws store_error.
class source {
public:
  virtual ~source() = default;

  virtual int schema_version() = 0;

  /// The names of the tables the database holds (its catalogue), for the
  /// check that tables() is complete.
  virtual std::vector<std::string> table_names() = 0;

  /// The column names of `table_name` in the database, in order.
  virtual std::vector<std::string> column_names(std::string_view table_name) = 0;

  /// How many rows `t` holds.
  virtual std::size_t count(const table& t) = 0;

  /// Every row of `t`, in key order (not for per-document tables, whose
  /// rows come with their document).
  virtual std::vector<row> read(const table& t) = 0;

  /// Up to `limit` rows of the documents table with an id after `after`
  /// ("" for the first), in id order.
  virtual std::vector<row> documents_after(std::string_view after, std::size_t limit) = 0;

  /// The rows of per-document table `t` that hang from `document_id`.
  virtual std::vector<row> read_for_document(const table& t, std::string_view document_id) = 0;
};

/// Writes rows into the target database, whose schema is at the source's
/// version. Every method throws store_error.
class sink {
public:
  virtual ~sink() = default;

  /// The first key column of every row of `t` the target holds, as text.
  virtual std::vector<std::string> keys(const table& t) = 0;

  /// How many of the source's rows of `t` the target holds (for a table
  /// whose shape differs, the source rows they make).
  virtual std::size_t count(const transfer::table& t) = 0;

  /// Writes `batch` in one transaction, in order, each row unless the
  /// target has its key (a previous, interrupted run wrote it); returns the
  /// number of rows written for each entry. Derived state the target keeps
  /// beside the rows (a document's event counter) is brought up to date in
  /// the same transaction.
  virtual std::vector<std::size_t> insert(std::span<const rows> batch) = 0;
};

}  // namespace docflow::store::transfer
