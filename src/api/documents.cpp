#include "api/documents.hpp"

#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include "api/access.hpp"
#include "api/backend.hpp"
#include "api/cursor.hpp"
#include "api/document_json.hpp"
#include "api/errors.hpp"
#include "api/file_checks.hpp"
#include "api/idempotency.hpp"
#include "api/range.hpp"
#include "api/request_body.hpp"
#include "api/services.hpp"
#include "blob/blob_store.hpp"
#include "config/config.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"
#include "http/admission.hpp"
#include "http/multipart.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "store/change_feed.hpp"
#include "store/database.hpp"

namespace docflow::api::documents {

namespace {

using boost::asio::awaitable;

constexpr std::size_t read_chunk = 64 * 1024;
constexpr std::size_t max_title_chars = 256;

core::error unsupported(std::string detail) {
  return {core::errc::unsupported_media_type, std::move(detail)};
}

core::error invalid_field(std::string field, std::string message) {
  return core::invalid_fields({{std::move(field), std::move(message)}});
}

// Receives the parts of an upload as they stream in: the file part goes to
// the blob writer with its SHA-256 computed on the way; the title part is
// kept (it is small). The first violation is remembered and everything
// after it ignored; the handler answers with it.
class upload_sink final : public http::multipart_handler {
public:
  upload_sink(blob::blob_writer& writer, std::uint64_t max_bytes) : writer_(writer), max_bytes_(max_bytes) {}

  void on_part_begin(const http::part_info& part) override {
    if (problem_) return;
    if (part.name == "file") {
      if (file_seen_) return reject(invalid_field("file", "exactly one file part is allowed"));
      if (!part.filename) return reject(invalid_field("file", "the file part needs a filename"));
      file_seen_ = true;
      filename_ = *part.filename;
      current_ = part_kind::file;
    } else if (part.name == "title") {
      if (title_) return reject(invalid_field("title", "only one title part is allowed"));
      title_.emplace();
      current_ = part_kind::title;
    } else {
      reject(invalid_field(part.name, "unexpected part: only 'file' and 'title' are accepted"));
    }
  }

  void on_part_data(std::string_view bytes) override {
    if (problem_) return;
    if (current_ == part_kind::title) {
      title_->append(bytes);
      if (title_->size() > max_title_chars * 4)
        reject(invalid_field("title", "must be at most 256 characters"));
      return;
    }
    size_ += bytes.size();
    if (size_ > max_bytes_) {
      return reject(
          {core::errc::too_large, "The file exceeds the limit of " + std::to_string(max_bytes_) + " bytes."});
    }
    if (head_.size() < core::sniff_bytes) head_.append(bytes.substr(0, core::sniff_bytes - head_.size()));
    sha_.update(bytes);
    writer_.write(bytes);
  }

  void on_part_end() override { current_ = part_kind::none; }

  const std::optional<core::error>& problem() const { return problem_; }
  bool file_seen() const { return file_seen_; }
  const std::string& filename() const { return filename_; }
  const std::optional<std::string>& title() const { return title_; }
  std::uint64_t size() const { return size_; }
  const std::string& head() const { return head_; }

  std::string sha256_hex() { return sha_.hex_final(); }

private:
  enum class part_kind { none, file, title };

  void reject(core::error e) { problem_ = std::move(e); }

  blob::blob_writer& writer_;
  std::uint64_t max_bytes_;
  core::sha256 sha_;
  part_kind current_ = part_kind::none;
  bool file_seen_ = false;
  std::string filename_;
  std::optional<std::string> title_;
  std::uint64_t size_ = 0;
  std::string head_;
  std::optional<core::error> problem_;
};

// Everything the form must satisfy once it has been read in full: the
// document to commit, or why not.
core::result<core::document> validate(upload_sink& sink, std::uint64_t max_bytes) {
  if (!sink.file_seen()) return invalid_field("file", "is required");
  auto named = name_file(sink.filename(), sink.title());
  if (!named) return named.error();
  auto d = std::move(*named);
  if (auto e = size_problem(sink.size(), max_bytes)) return *e;
  if (auto e = kind_problem(d, sink.head())) return *e;
  d.size_bytes = sink.size();
  d.sha256 = sink.sha256_hex();
  return d;
}

core::error malformed(http::multipart_error e, const http::multipart_parser& parser) {
  return {core::errc::invalid_request,
          "The multipart body is malformed: " + http::describe(e, parser.limits()) + '.'};
}

// Reads the body through the parser. Returns the error when the framing or
// the form is wrong; otherwise nullopt with the file written.
awaitable<std::optional<core::error>> stream_form(http::body_reader* body, http::multipart_parser& parser,
                                                  upload_sink& sink) {
  // Not zero-filled: a thousand uploads at once would clear 64 MiB for nothing.
  const auto chunk = std::make_unique_for_overwrite<char[]>(read_chunk);
  while (body) {
    const auto n = co_await body->read_some(chunk.get(), read_chunk);
    if (n == 0) break;
    if (const auto e = parser.feed(std::string_view(chunk.get(), n)); e != http::multipart_error::none) {
      co_return malformed(e, parser);
    }
    if (sink.problem()) co_return sink.problem();
  }
  if (const auto e = parser.finish(); e != http::multipart_error::none) co_return malformed(e, parser);
  co_return std::nullopt;
}

// Counts each upload once, by how it ended: from the final answer, or from
// the exception that ended the request without one. Every path passes here,
// whatever refused it (the form, the file, the Idempotency-Key, the database).
class upload_outcome {
public:
  explicit upload_outcome(obs::metrics& metrics) : metrics_(metrics) {}
  ~upload_outcome() { metrics_.add("docflow_uploads_total", obs::metrics::label("outcome", outcome_)); }
  upload_outcome(const upload_outcome&) = delete;
  upload_outcome& operator=(const upload_outcome&) = delete;

  void answered(const http::response& res) {
    if (res.fields.get("Idempotent-Replayed")) {
      outcome_ = "replayed";
    } else {
      outcome_ = res.status == 201 ? "created" : res.status >= 500 ? "failed" : "rejected";
    }
  }
  // The server answers 413 or 400 for these two; the others have no answer.
  void body_failed(const http::body_error& e) {
    const auto kind = e.which();
    const bool answered =
        kind == http::body_error::kind::too_large || kind == http::body_error::kind::malformed;
    outcome_ = answered ? "rejected" : "aborted";
  }

private:
  obs::metrics& metrics_;
  const char* outcome_ = "failed";  // an exception other than the body's: the server answers 500
};

// A byte range of a blob as a response body.
class blob_range final : public http::body_source {
public:
  blob_range(services& s, std::unique_ptr<blob::blob_reader> reader, std::uint64_t offset)
      : s_(s), reader_(std::move(reader)), offset_(offset) {}
  boost::asio::awaitable<std::size_t> read(char* out, std::size_t max) override {
    const auto n = co_await backend_call(s_, cost::blob_read,
                                         [this, out, max] { return reader_->read_at(offset_, out, max); });
    offset_ += n;
    co_return n;
  }

private:
  services& s_;
  std::unique_ptr<blob::blob_reader> reader_;
  std::uint64_t offset_;
};

// RFC 6266 / 8187: an ASCII fallback and the exact UTF-8 name.
std::string content_disposition(const std::string& filename) {
  std::string fallback;
  std::string encoded;
  static constexpr char hex[] = "0123456789ABCDEF";
  for (const char ch : filename) {
    const auto c = static_cast<unsigned char>(ch);
    fallback += (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') ? ch : '_';
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        std::string_view("!#$&+-.^_`|~").find(ch) != std::string_view::npos) {
      encoded += ch;
    } else {
      encoded += '%';
      encoded += hex[c >> 4];
      encoded += hex[c & 0x0F];
    }
  }
  return "attachment; filename=\"" + fallback + "\"; filename*=UTF-8''" + encoded;
}

}  // namespace

namespace {
// Publishes a validated upload: bytes first, row last, so a crash in
// between leaves an unreferenced blob, never a row without its bytes. With
// an Idempotency-Key (`scope`), the answer is stored in the row's
// transaction: a crash leaves the document and its answer, or neither, so a
// retry replays it or makes the only document.
awaitable<http::response> commit_upload(services& s, const http::request& req, blob::blob_writer& writer,
                                        core::document& doc, idempotent_scope* scope) {
  doc.owner_id = req.user->user_id;
  doc.status = core::status::uploaded;
  doc.created_at = doc.updated_at = s.clock.now();
  auto res = http::response::json(201, document_json(doc));
  res.fields.set("Location", "/documents/" + doc.id);
  std::optional<store::idempotent_answer> answer;
  if (scope) {
    answer =
        store::idempotent_answer{scope->user_id,
                                 scope->key,
                                 scope->claim,
                                 res.status,
                                 res.body,
                                 std::string(res.fields.get("Content-Type").value_or("application/json")),
                                 "/documents/" + doc.id};
  }
  const auto inserted = co_await backend_call(s, cost::blocking, [&s, &writer, &doc, &answer] {
    writer.commit();
    crash_point("blob_committed");
    core::result<void> done;
    try {
      done = s.db.insert_document(doc, answer ? &*answer : nullptr);
    } catch (const store::store_outcome_unknown&) {
      // The row may have committed as the connection went (the database
      // restarting): removing the file then would leave a document without
      // its bytes. It stays; if no row names it, the orphan sweep removes it.
      throw;
    } catch (...) {
      s.blobs.remove(doc.id);
      throw;
    }
    if (!done) s.blobs.remove(doc.id);
    crash_point("inserted");
    return done;
  });
  // Stored with the row, or (the claim lost to a retry) the retry's to
  // store; a refusal (over quota) is answered and stored like any other.
  if (scope && (inserted || inserted.error().code == core::errc::idempotency_key_in_flight)) {
    scope->recorded = true;
  }
  if (!inserted) co_return error_response(req, inserted.error());
  announce_upload(s, req, doc);
  co_return res;
}

// Streams, checks and stores one upload whose form boundary is known.
awaitable<http::response> receive_upload(services& s, http::request& req, const std::string& boundary,
                                         const std::optional<std::string>& key) {
  // The id is chosen before the first byte, so that a store across a
  // network can send the bytes under it while they arrive.
  const auto id = core::new_uuid_v7();
  auto writer = co_await backend_call(s, cost::blocking, [&s, &id] { return s.blobs.begin(id); });
  upload_sink sink(*writer, s.cfg.max_upload_bytes);
  http::multipart_parser parser(boundary, sink);
  std::optional<core::error> refused;
  {
    // The turn covers receiving only: the commit overlaps the next upload's.
    // A body_error passes up; the writer's destructor discards the bytes.
    auto turn = co_await s.uploads.enter();
    refused = co_await stream_form(req.body_stream, parser, sink);
  }
  core::document doc;
  if (!refused) {
    auto checked = validate(sink, s.cfg.max_upload_bytes);
    if (checked) {
      doc = std::move(*checked);
      doc.id = id;
    } else {
      refused = checked.error();
    }
  }
  if (!refused) {
    // The bytes are read back from the writer: an upload need not be a file.
    refused = co_await docx_problem(s, req, doc, [&writer](std::uint64_t offset, char* out, std::size_t n) {
      return writer->read_at(offset, out, n);
    });
  }
  if (refused) co_return error_response(req, *refused);
  if (key) {
    // Same key, same file, same name and title: the same Document again.
    const auto fingerprint =
        "POST /documents\n" + doc.sha256 + '\n' + doc.filename + '\n' + doc.title.value_or("");
    co_return co_await once(s, req, *key, fingerprint, [&s, &req, &writer, &doc](idempotent_scope& scope) {
      return commit_upload(s, req, *writer, doc, &scope);
    });
  }
  co_return co_await commit_upload(s, req, *writer, doc, nullptr);
}

awaitable<http::response> upload_request(services& s, http::request& req) {
  if (media_type(req) != "multipart/form-data") {
    co_return error_response(req,
                             unsupported("Upload a file as multipart/form-data with a part named 'file'."));
  }
  const auto boundary = http::form_data_boundary(req.fields.get("Content-Type").value_or(""));
  if (!boundary) {
    co_return error_response(req, {core::errc::invalid_request,
                                   "The multipart boundary is missing or invalid (1-70 characters)."});
  }
  const auto key = idempotency_key(req);
  if (!key) co_return error_response(req, key.error());
  // The file is at least the body less the rest of the form: no room for
  // that, and no byte needs reading. The commit checks the file's own size.
  const auto declared = count_field(req, "Content-Length").value_or(0);
  const auto least = declared > multipart_framing ? declared - multipart_framing : 0;
  if (auto e = co_await quota_refusal(s, req, least)) co_return error_response(req, *e);
  try {
    co_return co_await receive_upload(s, req, *boundary, *key);
  } catch (const blob::blob_full& e) {
    // A full disk is the operator's problem and passes: tell the client to come back.
    obs::log(obs::level::error, "document.storage_full",
             {{"request_id", req.request_id}, {"error", e.what()}});
  }
  co_return error_response(req, core::errc::storage_full);
}

}  // namespace

awaitable<http::response> upload(services& s, http::request& req) {
  upload_outcome outcome(s.metrics);
  try {
    auto res = co_await upload_request(s, req);
    outcome.answered(res);
    co_return res;
  } catch (const http::body_error& e) {
    outcome.body_failed(e);
    throw;
  }
}

awaitable<http::response> list(services& s, http::request& req) {
  store::document_query q;
  q.owner_id = owner_scope(req);
  const auto page = read_page_request(
      req.query, s.cursors, [&q](std::string_view key, std::string_view value, auto& errors) {
        if (key != "status") return;
        q.status = core::parse_status(value);
        if (!q.status) {
          errors.push_back({"status", "must be UPLOADED, PROCESSING, COMPLETED or FAILED"});
        }
      });
  if (!page) co_return error_response(req, page.error());
  q.limit = page->limit;
  q.after = page->after;
  const auto page_size = q.limit;
  ++q.limit;  // one more tells whether a next page exists
  // An indexed page of at most 201 rows: as cheap as a point read.
  auto docs = co_await backend_call(s, cost::point_read, [&s, &q] { return s.db.list_documents(q); });
  const auto next = close_page(docs, page_size, s.cursors);
  boost::json::array items;
  items.reserve(docs.size());
  for (const auto& d : docs) items.push_back(document_json(d));
  co_return http::response::json(
      200, boost::json::object{{"items", std::move(items)},
                               {"next_cursor", next ? boost::json::value(*next) : nullptr}});
}

awaitable<http::response> get(services& s, http::request& req) {
  const auto doc = co_await caller_document(s, req);
  if (!doc) co_return error_response(req, doc.error());
  co_return http::response::json(200, document_json(*doc));
}

awaitable<http::response> content(services& s, http::request& req) {
  const auto doc = co_await caller_document(s, req);
  if (!doc) co_return error_response(req, doc.error());
  const std::string etag = '"' + doc->sha256 + '"';
  http::response res;
  res.fields.set("ETag", etag);
  res.fields.set("Cache-Control", "private, no-cache");
  if (const auto inm = req.fields.get("If-None-Match"); inm && http::if_none_match_names(*inm, etag)) {
    res.status = 304;
    co_return res;
  }
  // With presigned downloads the bytes come from the store itself, which
  // answers Range too; the URL is signed here, without a request to it.
  if (auto url = s.blobs.download_url(
          doc->id, {std::string(core::content_type(doc->kind)), content_disposition(doc->filename)})) {
    res.status = 302;
    res.fields.set("Location", *url);
    res.fields.set("Cache-Control",
                   "private, no-store");  // the URL expires; a cached redirect would outlive it
    co_return res;
  }
  auto reader = co_await backend_call(s, cost::blob_read, [&s, &doc] { return s.blobs.open(doc->id); });
  if (!reader) {
    // Deleted since it was looked up (a DELETE took its bytes first): gone,
    // not broken.
    const auto still = co_await caller_document(s, req);
    if (!still) co_return error_response(req, still.error());
    obs::log(obs::level::error, "document.blob_missing",
             {{"request_id", req.request_id}, {"document_id", doc->id}});
    co_return error_response(req, core::errc::storage_unavailable);
  }
  const auto size = reader->size();
  res.fields.set("Accept-Ranges", "bytes");
  res.fields.set("Content-Type", core::content_type(doc->kind));
  res.fields.set("Content-Disposition", content_disposition(doc->filename));
  res.fields.set("X-Content-Type-Options", "nosniff");
  std::uint64_t first = 0;
  std::uint64_t length = size;
  res.status = 200;
  const auto if_range = req.fields.get("If-Range");
  if (const auto range = req.fields.get("Range"); range && (!if_range || *if_range == etag)) {
    if (const auto r = parse_range(*range, size)) {
      if (r->first > r->second) {
        auto unsatisfiable = error_response(req, core::errc::range_not_satisfiable);
        unsatisfiable.fields.set("Content-Range", "bytes */" + std::to_string(size));
        co_return unsatisfiable;
      }
      first = r->first;
      length = r->second - r->first + 1;
      res.status = 206;
      res.fields.set("Content-Range", "bytes " + std::to_string(r->first) + '-' + std::to_string(r->second) +
                                          '/' + std::to_string(size));
    }
  }
  res.stream = std::make_shared<blob_range>(s, std::move(reader), first);
  res.stream_size = length;
  co_return res;
}

awaitable<http::response> remove(services& s, http::request& req) {
  const auto doc = co_await caller_document(s, req);
  if (!doc) co_return error_response(req, doc.error());
  const auto owner = owner_scope(req);
  const auto& id = doc->id;
  const auto removed = co_await backend_call(s, cost::blocking, [&s, &id, &owner] {
    auto done = s.db.delete_document(id, owner);
    if (done) s.blobs.remove(id);
    return done;
  });
  if (!removed) co_return error_response(req, removed.error());
  s.changes.notify(id);  // its event streams end now: a deletion records no event to wake them
  obs::log(obs::level::info, "document.deleted",
           {{"request_id", req.request_id}, {"document_id", id}, {"user_id", req.user->user_id}});
  co_return http::response::empty(204);
}

void describe_metrics(services& s) {
  s.metrics.describe("docflow_uploads_total", obs::metrics::kind::counter,
                     "Uploads by outcome (created, replayed, rejected, aborted, failed).");
  s.metrics.describe("docflow_upload_bytes_total", obs::metrics::kind::counter,
                     "Bytes of documents stored by accepted uploads.");
  s.metrics.set("docflow_upload_bytes_total", "", 0);
}

}  // namespace docflow::api::documents
