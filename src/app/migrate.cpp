#include "app/migrate.hpp"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <set>
#include <sstream>
#include <string_view>
#include <unordered_set>

#include "app/backends.hpp"
#include "blob/blob_store.hpp"
#include "config/config.hpp"
#include "core/crypto.hpp"
#include "obs/log.hpp"
#include "store/database.hpp"
#include "store/transfer.hpp"

namespace docflow::app {

namespace {

namespace transfer = store::transfer;

// Documents read from the source at a time: their rows are small, their
// blobs are copied one by one.
constexpr std::size_t document_page = 200;
// Keys listed from the target store at a time, in the check for foreign blobs.
constexpr std::size_t key_page = 1000;
constexpr std::size_t chunk_bytes = std::size_t{1} << 20;

std::size_t column_index(const transfer::table& t, std::string_view name) {
  for (std::size_t i = 0; i < t.columns.size(); ++i) {
    if (t.columns[i].name == name) return i;
  }
  throw std::logic_error("table " + std::string(t.name) + " has no column " + std::string(name));
}

const std::string& text_of(const transfer::row& r, std::size_t i) {
  if (!r.at(i)) throw std::logic_error("a NOT NULL column read as NULL");
  return *r[i];
}

struct digest {
  std::uint64_t size = 0;
  std::string sha256;
  bool operator==(const digest&) const = default;
};

// Reads the blob from start to end, a chunk at a time, handing each chunk
// to `each` after hashing it; its size and SHA-256.
template <class F>
digest read_through(blob::blob_reader& reader, F&& each) {
  core::sha256 hash;
  std::string buffer(chunk_bytes, '\0');
  std::uint64_t offset = 0;
  for (;;) {
    const auto n = reader.read_at(offset, buffer.data(), buffer.size());
    if (n == 0) break;
    const std::string_view bytes(buffer.data(), n);
    hash.update(bytes);
    each(bytes);
    offset += n;
  }
  return digest{offset, hash.hex_final()};
}

// Reads a blob whole through the store's read API; nullopt when it is missing.
std::optional<digest> digest_of(blob::blob_store& store, const std::string& key) {
  const auto reader = store.open(key);
  if (!reader) return std::nullopt;
  return read_through(*reader, [](std::string_view) {});
}

// Streams the source blob to the target, hashing what it reads.
digest copy_blob(blob::blob_store& from, blob::blob_store& to, const std::string& key) {
  const auto reader = from.open(key);
  if (!reader) throw blob::blob_error("the source has no blob " + key);
  const auto writer = to.begin(key);
  auto read = read_through(*reader, [&](std::string_view bytes) { writer->write(bytes); });
  writer->commit();
  return read;
}

// Brings the document's blob onto the target and checks it there: the
// document's rows may be written only after this returns `copied` or
// `present`. The row's size and SHA-256 are what the upload measured.
document_progress move_blob(blob::blob_store& from, blob::blob_store& to, const std::string& key,
                            const digest& expected) {
  document_progress p{key, expected.size, blob_fate::copied, {}};
  try {
    if (const auto there = digest_of(to, key)) {
      if (*there == expected) {
        p.fate = blob_fate::present;
        return p;
      }
      // Not ours as it should be (a store that let a partial write be
      // seen): replaced, since begin() is for a key no blob has.
      to.remove(key);
    }
    const auto read = copy_blob(from, to, key);
    if (read != expected) {
      p.fate = blob_fate::failed;
      p.problem = "document " + key + ": the source blob (" + std::to_string(read.size) + " bytes, sha256 " +
                  read.sha256 + ") does not match its row (" + std::to_string(expected.size) +
                  " bytes, sha256 " + expected.sha256 + ")";
      to.remove(key);
      return p;
    }
    const auto written = digest_of(to, key);
    if (!written || *written != read) {
      p.fate = blob_fate::failed;
      p.problem = "document " + key + ": the blob read back from the target does not match the source";
    }
  } catch (const blob::blob_error& e) {
    p.fate = blob_fate::failed;
    p.problem = "document " + key + ": " + e.what();
  }
  return p;
}

std::vector<std::string> first_column(const std::vector<transfer::row>& rows) {
  std::vector<std::string> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(text_of(r, 0));
  return out;
}

std::unordered_set<std::string> source_document_ids(transfer::source& source) {
  std::unordered_set<std::string> ids;
  std::string after;
  for (;;) {
    const auto page = source.documents_after(after, document_page);
    if (page.empty()) break;
    for (auto& id : first_column(page)) ids.insert(std::move(id));
    after = text_of(page.back(), 0);
  }
  return ids;
}

const char* fate_name(blob_fate f) {
  switch (f) {
    case blob_fate::copied: return "copied";
    case blob_fate::present: return "present";
    case blob_fate::failed: return "failed";
  }
  return "failed";
}

}  // namespace

std::vector<std::string> unhandled_schema(transfer::source& source) {
  std::vector<std::string> out;
  for (const auto& name : source.table_names()) {
    const auto& skipped = transfer::not_copied();
    if (std::any_of(skipped.begin(), skipped.end(), [&](const auto& s) { return s.name == name; })) continue;
    const auto& known = transfer::tables();
    const auto t = std::find_if(known.begin(), known.end(), [&](const auto& k) { return k.name == name; });
    if (t == known.end()) {
      out.push_back(name);
      continue;
    }
    const auto columns = source.column_names(name);
    for (const auto& c : columns) {
      if (std::none_of(t->columns.begin(), t->columns.end(), [&](const auto& k) { return k.name == c; })) {
        out.push_back(name + '.' += c);
      }
    }
    for (const auto& k : t->columns) {
      if (std::find(columns.begin(), columns.end(), k.name) == columns.end()) {
        out.push_back(name + '.' += k.name);
      }
    }
  }
  return out;
}

std::optional<std::string> foreign_data(transfer::source& source, transfer::sink& target,
                                        blob::blob_store& target_blobs) {
  const auto& users = transfer::table_named("users");
  const auto source_users = first_column(source.read(users));
  const std::unordered_set<std::string> known_users(source_users.begin(), source_users.end());
  for (const auto& id : target.keys(users)) {
    if (!known_users.contains(id))
      return "the target database holds user " + id + ", which the source does not";
  }
  const auto documents = source_document_ids(source);
  for (const auto& id : target.keys(transfer::table_named("documents"))) {
    if (!documents.contains(id)) {
      return "the target database holds document " + id + ", which the source does not";
    }
  }
  // Every blob stored so far (an hour ahead covers any clock skew).
  const auto cutoff = std::chrono::system_clock::now() + std::chrono::hours{1};
  std::string after;
  for (;;) {
    const auto keys = target_blobs.keys_stored_before(cutoff, key_page, after);
    if (keys.empty()) break;
    for (const auto& k : keys) {
      if (!documents.contains(k))
        return "the target storage holds blob " + k + ", which no source document names";
    }
    after = keys.back();
  }
  return std::nullopt;
}

bool migration_summary::complete() const {
  return problems.empty() &&
         std::all_of(tables.begin(), tables.end(), [](const table_rows& t) { return t.target == t.source; });
}

migration_summary copy_everything(transfer::source& source, blob::blob_store& source_blobs,
                                  transfer::sink& target, blob::blob_store& target_blobs,
                                  const std::function<void(const document_progress&)>& on_document) {
  migration_summary summary;
  const auto& all = transfer::tables();
  std::vector<std::size_t> written(all.size(), 0);
  const auto index_of = [&](const transfer::table& t) { return static_cast<std::size_t>(&t - all.data()); };

  const auto& documents = transfer::table_named("documents");
  std::vector<const transfer::table*> hanging;
  for (const auto& t : all) {
    if (t.per_document) hanging.push_back(&t);
  }
  const auto id_col = column_index(documents, "id");
  const auto size_col = column_index(documents, "size_bytes");
  const auto sha_col = column_index(documents, "sha256");

  const auto copy_documents = [&] {
    const auto present = target.keys(documents);
    const std::unordered_set<std::string> done(present.begin(), present.end());
    std::string after;
    for (;;) {
      auto page = source.documents_after(after, document_page);
      if (page.empty()) break;
      after = text_of(page.back(), id_col);
      for (auto& row : page) {
        const auto id = text_of(row, id_col);
        const digest expected{std::stoull(text_of(row, size_col)), text_of(row, sha_col)};
        auto progress = move_blob(source_blobs, target_blobs, id, expected);
        if (progress.fate == blob_fate::failed) {
          summary.problems.push_back(progress.problem);
        } else {
          (progress.fate == blob_fate::copied ? summary.blobs_copied : summary.blobs_present) += 1;
          (progress.fate == blob_fate::copied ? summary.bytes_copied : summary.bytes_present) +=
              progress.bytes;
          summary.blobs_verified += 1;
          summary.bytes_verified += progress.bytes;
          // Its transaction committed whole in an earlier run.
          if (!done.contains(id)) {
            std::vector<transfer::rows> batch;
            batch.push_back({&documents, {std::move(row)}});
            for (const auto* t : hanging) batch.push_back({t, source.read_for_document(*t, id)});
            const auto n = target.insert(batch);
            for (std::size_t i = 0; i < batch.size(); ++i) written[index_of(*batch[i].of)] += n[i];
          }
        }
        on_document(progress);
      }
    }
  };

  for (const auto& t : all) {
    if (&t == &documents) {
      copy_documents();
    } else if (!t.per_document) {
      const std::vector<transfer::rows> batch{{&t, source.read(t)}};
      written[index_of(t)] += target.insert(batch).at(0);
    }
  }

  for (const auto& t : all) {
    summary.tables.push_back({std::string(t.name), source.count(t), written[index_of(t)], target.count(t)});
  }
  return summary;
}

std::string format_summary(const migration_summary& s) {
  const auto padded = [](const std::string& text, std::size_t width, bool left) {
    const std::string pad(text.size() < width ? width - text.size() : 1, ' ');
    return left ? text + pad : pad + text;
  };
  std::ostringstream out;
  out << padded("table", 18, true) << padded("source", 10, false) << padded("written", 10, false)
      << padded("target", 10, false) << '\n';
  for (const auto& t : s.tables) {
    out << padded(t.name, 18, true);
    for (const auto n : {t.source, t.written, t.target}) out << padded(std::to_string(n), 10, false);
    out << (t.target == t.source ? "" : "  INCOMPLETE") << '\n';
  }
  out << "blobs copied:   " << s.blobs_copied << " (" << s.bytes_copied << " bytes)\n"
      << "blobs present:  " << s.blobs_present << " (" << s.bytes_present << " bytes, from an earlier run)\n"
      << "blobs verified: " << s.blobs_verified << " (" << s.bytes_verified << " bytes, SHA-256 read back)\n";
  for (const auto& p : s.problems) out << "FAILED: " << p << '\n';
  return out.str();
}

int migrate_data(const config::config& source_cfg, const config::config& target_cfg) {
  obs::set_level(obs::parse_level(source_cfg.log_level).value_or(obs::level::info));
  obs::set_node(source_cfg.node_name.value_or(obs::default_node_name()));
  const auto started = std::chrono::steady_clock::now();
  try {
    // The source's schema at this docflow's version, as `serve` would make it.
    {
      const auto db = make_database(source_cfg);
      const int version = db->schema_version();
      if (version > db->known_schema_version()) {
        std::cerr << "docflow: migrate-data: the source database is at schema version " << version
                  << ", newer than this docflow's: use the docflow that wrote it\n";
        return exit_migration_incomplete;
      }
      if (version < db->known_schema_version()) db->migrate();
    }
    std::unique_ptr<store::transfer::source> source;
    try {
      source = make_transfer_source(source_cfg);
    } catch (const store::transfer::source_busy& e) {
      std::cerr << "docflow: migrate-data: " << e.what() << "; stop the node first\n";
      return exit_source_in_use;
    }
    if (const auto unknown = unhandled_schema(*source); !unknown.empty()) {
      std::string names;
      for (const auto& u : unknown) names += (names.empty() ? "" : ", ") + u;
      std::cerr << "docflow: migrate-data: this docflow does not know how to copy " << names << '\n';
      return exit_migration_incomplete;
    }

    const auto target_db = make_database(target_cfg);
    const int version = target_db->migrate();
    if (version != source->schema_version()) {
      std::cerr << "docflow: migrate-data: the target's schema is at version " << version
                << ", the source's at " << source->schema_version() << '\n';
      return exit_migration_incomplete;
    }
    const auto target = make_transfer_sink(target_cfg);
    const auto source_blobs = make_blob_store(source_cfg);
    const auto target_blobs = make_blob_store(target_cfg);
    target_blobs->check();

    if (const auto foreign = foreign_data(*source, *target, *target_blobs)) {
      std::cerr << "docflow: migrate-data: " << *foreign
                << "; the target must be empty or hold a partial copy of this same source\n";
      return exit_target_not_ours;
    }
    obs::log(obs::level::info, "migrate.start",
             {{"from_database", config::describe_database(source_cfg)},
              {"from_storage", config::describe_storage(source_cfg)},
              {"to_database", config::describe_database(target_cfg)},
              {"to_storage", config::describe_storage(target_cfg)}});
    const auto summary =
        copy_everything(*source, *source_blobs, *target, *target_blobs, [](const document_progress& p) {
          boost::json::object fields{{"document_id", p.id}, {"bytes", p.bytes}, {"blob", fate_name(p.fate)}};
          if (!p.problem.empty()) fields["error"] = p.problem;
          obs::log(p.fate == blob_fate::failed ? obs::level::error : obs::level::info, "migrate.document",
                   fields);
        });
    const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    boost::json::object tables;
    for (const auto& t : summary.tables) {
      tables[t.name] = {{"source", t.source}, {"written", t.written}, {"target", t.target}};
    }
    obs::log(summary.complete() ? obs::level::info : obs::level::error, "migrate.done",
             {{"complete", summary.complete()},
              {"tables", tables},
              {"blobs_copied", summary.blobs_copied},
              {"bytes_copied", summary.bytes_copied},
              {"blobs_present", summary.blobs_present},
              {"bytes_present", summary.bytes_present},
              {"blobs_verified", summary.blobs_verified},
              {"bytes_verified", summary.bytes_verified},
              {"problems", summary.problems.size()},
              {"seconds", seconds}});
    std::cerr << format_summary(summary);
    if (!summary.complete()) {
      std::cerr << "docflow: migrate-data: incomplete; run it again once the failures above are fixed\n";
      return exit_migration_incomplete;
    }
    std::cerr << "docflow: migrate-data: done; every blob verified on the target\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "docflow: migrate-data failed: " << e.what() << "; run it again to resume\n";
    return exit_migration_incomplete;
  }
}

}  // namespace docflow::app
