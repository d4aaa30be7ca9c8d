#include "api/uploads.hpp"

#include <charconv>
#include <chrono>
#include <map>

#include <boost/json/serialize.hpp>

#include "api/access.hpp"
#include "api/backend.hpp"
#include "api/document_json.hpp"
#include "api/errors.hpp"
#include "api/file_checks.hpp"
#include "api/idempotency.hpp"
#include "api/request_body.hpp"
#include "api/services.hpp"
#include "blob/blob_store.hpp"
#include "config/config.hpp"
#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"
#include "http/admission.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "store/database.hpp"

namespace docflow::api::uploads {

namespace {

using boost::asio::awaitable;

constexpr std::string_view tus_version = "1.0.0";
constexpr std::string_view chunk_type = "application/offset+octet-stream";
// Bytes handed to the blob store at a time: each hand-over is a hop to the
// blocking pool, so fewer and larger than a socket read.
constexpr std::size_t write_batch = 256 * 1024;
constexpr std::size_t read_chunk = 64 * 1024;
// A request holds its upload's lock this long past its last renewal, and
// renews it every third of that while it receives: a process that dies
// mid-request blocks the upload for at most the lease.
constexpr std::chrono::seconds lock_lease{30};
constexpr std::chrono::seconds lock_renewal{10};

core::error bad_request(std::string detail) { return {core::errc::invalid_request, std::move(detail)}; }

http::response refuse(const http::request& req, const core::error& e) {
  auto res = error_response(req, e);
  if (e.code == core::errc::tus_version_unsupported) res.fields.set("Tus-Version", std::string(tus_version));
  return res;
}

std::optional<core::error> version_problem(const http::request& req) {
  if (req.fields.get("Tus-Resumable") == tus_version) return std::nullopt;
  return core::error(core::errc::tus_version_unsupported);
}

// Upload-Metadata: comma-separated pairs of a key and its base64 value
// (which may be left out); keys unique, without spaces or commas.
core::result<std::map<std::string, std::string, std::less<>>> parse_metadata(std::string_view header) {
  std::map<std::string, std::string, std::less<>> out;
  const auto malformed = [] {
    return bad_request("Upload-Metadata must be comma-separated pairs of a key and a base64 value.");
  };
  while (!header.empty()) {
    const auto comma = header.find(',');
    const auto pair = core::trim_ows(header.substr(0, comma));
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    const auto space = pair.find(' ');
    const auto key = pair.substr(0, space);
    if (key.empty()) return malformed();
    std::string value;
    if (space != std::string_view::npos) {
      auto decoded = core::base64_decode(pair.substr(space + 1));
      if (!decoded) return malformed();
      value = std::move(*decoded);
    }
    if (!out.emplace(std::string(key), std::move(value)).second) {
      return bad_request("Upload-Metadata names the key '" + std::string(key) + "' twice.");
    }
  }
  return out;
}

// The Document the upload's metadata describes, before any byte: its name,
// title and kind checked as POST /documents checks them.
core::result<core::document> described_file(const store::upload_record& u) {
  auto pairs = parse_metadata(u.metadata);
  if (!pairs) return pairs.error();
  const auto filename = pairs->find("filename");
  std::optional<std::string> title;
  if (const auto t = pairs->find("title"); t != pairs->end()) title = t->second;
  auto d =
      name_file(filename == pairs->end() ? std::string_view{} : std::string_view(filename->second), title);
  if (!d) return d.error();
  if (auto e = kind_problem(*d, std::nullopt)) return *e;
  d->id = u.id;
  d->owner_id = u.owner_id;
  d->size_bytes = u.length;
  return d;
}

// Upload-Checksum: an algorithm this server knows and the base64 digest of
// the request's body.
struct checksum_claim {
  std::unique_ptr<core::named_digest> digest;
  std::string expected;
};

core::result<std::optional<checksum_claim>> parse_checksum(const http::request& req) {
  const auto v = req.fields.get("Upload-Checksum");
  if (!v) return std::optional<checksum_claim>();
  const auto space = v->find(' ');
  if (space == std::string_view::npos) {
    return bad_request("Upload-Checksum must be an algorithm and a base64 digest.");
  }
  auto digest = core::named_digest::make(v->substr(0, space));
  if (!digest) return bad_request("Upload-Checksum's algorithm must be one of sha256, sha1, md5.");
  auto expected = core::base64_decode(core::trim_ows(v->substr(space + 1)));
  if (!expected) return bad_request("Upload-Checksum's digest is not base64.");
  return std::optional<checksum_claim>(checksum_claim{std::move(digest), std::move(*expected)});
}

// The headers that tell a tus client where an upload stands.
void describe(http::response& res, const store::upload_record& u) {
  res.fields.set("Upload-Offset", std::to_string(u.offset));
  res.fields.set("Upload-Expires", core::format_http_date(u.expires_at));
  res.fields.set("Cache-Control", "no-store");
}

// The stored answer of an upload that ended.
http::response ended(const store::upload_record& u) {
  http::response res;
  res.status = u.answer_status;
  res.body = u.answer_body;
  res.fields.set("Content-Type", u.answer_content_type);
  if (u.answer_status == 201) {
    res.status = 200;  // a GET: the Document as the upload's last byte made it
    res.fields.set("Location", "/documents/" + u.id);
  }
  return res;
}

// One request's hold on an upload (store::database::lock_upload).
struct held_upload {
  store::upload_record record;
  std::string token;
};

// Locks upload `id` for this request: the record, or 404 (a malformed id,
// another user's, none) or 423 (another request holds it).
awaitable<core::result<held_upload>> take_lock(services& s, const http::request& req, const std::string& id) {
  if (!core::is_uuid(id)) co_return core::errc::not_found;
  held_upload held;
  held.token = core::random_hex(16);
  const auto& owner = req.user->user_id;  // uploads are their creator's alone, admins' too
  auto got = co_await backend_call(
      s, cost::blocking, [&] { return s.db.lock_upload(id, owner, held.token, s.clock.now(), lock_lease); });
  switch (got.outcome) {
    case store::upload_lock::kind::not_found: co_return core::errc::not_found;
    case store::upload_lock::kind::busy: co_return core::errc::upload_locked;
    case store::upload_lock::kind::locked: break;
  }
  held.record = std::move(got.record);
  co_return held;
}

// Runs `work` under the upload's lock and releases it after, whatever
// happened (a lock left behind would only lapse after its lease).
template <class Work>
awaitable<http::response> locked(services& s, http::request& req, std::string id, Work work) {
  auto held = co_await take_lock(s, req, id);
  if (!held) co_return refuse(req, held.error());
  std::exception_ptr failure;
  http::response res;
  try {
    res = co_await work(*held);
  } catch (...) {
    failure = std::current_exception();
  }
  try {
    co_await backend_call(s, cost::blocking, [&] { s.db.unlock_upload(held->record.id, held->token); });
  } catch (const std::exception& e) {
    obs::log(obs::level::warn, "upload.unlock_failed",
             {{"request_id", req.request_id}, {"upload_id", held->record.id}, {"error", e.what()}});
  }
  if (failure) std::rethrow_exception(failure);
  co_return res;
}

awaitable<bool> renew(services& s, const held_upload& held) {
  co_return co_await backend_call(s, cost::blocking, [&] {
    return s.db.renew_upload_lock(held.record.id, held.token, s.clock.now(), lock_lease);
  });
}

// Frees what the store holds for an upload besides its committed blob; a
// failure is left to expiry and the maintenance sweeps.
awaitable<void> discard_bytes(services& s, const http::request& req, const store::upload_record& u) {
  try {
    co_await backend_call(s, cost::blocking, [&] { s.blobs.discard_resumable(u.id, u.store_state); });
  } catch (const std::exception& e) {
    obs::log(obs::level::warn, "upload.discard_failed",
             {{"request_id", req.request_id}, {"upload_id", u.id}, {"error", e.what()}});
  }
}

// Ends an upload whose file was refused: the problem recorded as its answer
// first, then its bytes removed (a crash in between leaves a blob no row
// names, which the orphan sweep removes).
awaitable<http::response> end_refused(services& s, const http::request& req, held_upload& held,
                                      const core::error& problem) {
  auto res = refuse(req, problem);
  auto& u = held.record;
  u.answer_status = res.status;
  u.answer_body = res.body;
  u.answer_content_type = std::string(res.fields.get("Content-Type").value_or("application/problem+json"));
  const bool ended_now = co_await backend_call(s, cost::blocking, [&] {
    if (!s.db.finish_upload(u, held.token, nullptr)) return false;
    s.blobs.remove(u.id);
    return true;
  });
  if (!ended_now) co_return refuse(req, core::errc::upload_locked);
  co_await discard_bytes(s, req, u);
  s.metrics.add("docflow_uploads_total", obs::metrics::label("outcome", "rejected"));
  obs::log(obs::level::info, "upload.refused",
           {{"request_id", req.request_id}, {"upload_id", u.id}, {"status", res.status}});
  co_return res;
}

// Turns an upload that has received every byte (recorded) into its
// Document: the blob committed, the file checked as POST /documents checks
// it, then the Document and the upload's answer in one transaction. A
// failure on the way leaves the upload as recorded, and the next request
// about it finishes it.
awaitable<http::response> finish(services& s, const http::request& req, held_upload& held,
                                 std::unique_ptr<blob::resumable_writer> writer) {
  auto& u = held.record;
  auto described = described_file(u);
  if (!described) co_return co_await end_refused(s, req, held, described.error());
  auto doc = std::move(*described);
  auto reader = co_await backend_call(s, cost::blocking, [&] {
    if (!writer) writer = s.blobs.resume(u.id, u.store_state, u.offset);
    writer->commit();
    return s.blobs.open(u.id);
  });
  if (!reader) throw blob::blob_error("the committed upload " + u.id + " cannot be opened");
  std::string head(core::sniff_bytes, '\0');
  head.resize(co_await backend_call(s, cost::blob_read,
                                    [&] { return reader->read_at(0, head.data(), head.size()); }));
  auto problem = kind_problem(doc, head);
  if (!problem) {
    problem = co_await docx_problem(s, req, doc, [&reader](std::uint64_t offset, char* out, std::size_t n) {
      return reader->read_at(offset, out, n);
    });
  }
  if (problem) co_return co_await end_refused(s, req, held, *problem);
  const auto hash = core::sha256::restore(u.hash_state);
  if (!hash) throw blob::blob_error("the upload " + u.id + " has no hash state it can resume");
  doc.sha256 = hash->hex_final();
  doc.status = core::status::uploaded;
  doc.created_at = doc.updated_at = s.clock.now();
  const auto made = http::response::json(201, document_json(doc));
  u.answer_status = made.status;
  u.answer_body = made.body;
  u.answer_content_type = "application/json";
  const auto finished =
      co_await backend_call(s, cost::blocking, [&] { return s.db.finish_upload(u, held.token, &doc); });
  if (!finished) {
    // Another upload of the same user took the room since this one began.
    if (finished.error().code == core::errc::quota_exceeded) {
      co_return co_await end_refused(s, req, held, finished.error());
    }
    co_return refuse(req, finished.error());
  }
  co_await discard_bytes(s, req, u);
  s.metrics.add("docflow_uploads_total", obs::metrics::label("outcome", "created"));
  announce_upload(s, req, doc);
  auto res = http::response::empty(204);
  describe(res, u);
  res.fields.set("Location", "/documents/" + u.id);
  co_return res;
}

// Appends the request's body at the upload's offset (checked by the
// caller) and records it. Returns a refusal to answer with, or nullopt with
// `held.record` advanced. When the client goes away mid-body, what arrived
// is kept (unless a checksum covers the body: then none) and the body_error
// passes on: nobody is left to answer.
awaitable<std::optional<http::response>> receive(services& s, http::request& req, held_upload& held,
                                                 std::optional<checksum_claim> checksum,
                                                 std::unique_ptr<blob::resumable_writer>& writer) {
  auto& u = held.record;
  const auto room = u.length - u.offset;
  if (const auto declared = count_field(req, "Content-Length"); declared && *declared > room) {
    co_return refuse(req, {core::errc::too_large,
                           "The request's " + std::to_string(*declared) +
                               " bytes go past Upload-Length: " + std::to_string(room) + " remain."});
  }
  auto hash = core::sha256::restore(u.hash_state);
  if (!hash) throw blob::blob_error("the upload " + u.id + " has no hash state it can resume");
  writer =
      co_await backend_call(s, cost::blocking, [&] { return s.blobs.resume(u.id, u.store_state, u.offset); });
  const bool at_start = u.offset == 0;
  std::string head;
  std::string batch;
  std::uint64_t received = 0;
  auto renew_at = std::chrono::steady_clock::now() + lock_renewal;
  std::exception_ptr cut;
  {
    auto turn = co_await s.uploads.enter();
    const auto chunk = std::make_unique_for_overwrite<char[]>(read_chunk);
    try {
      for (bool more = req.body_stream != nullptr; more;) {
        const auto n = co_await req.body_stream->read_some(chunk.get(), read_chunk);
        more = n > 0;
        const std::string_view bytes(chunk.get(), n);
        if (received + n > room) {
          co_return refuse(req, {core::errc::too_large, "The request's bytes go past Upload-Length."});
        }
        received += n;
        hash->update(bytes);
        if (checksum) checksum->digest->update(bytes);
        if (at_start && head.size() < core::sniff_bytes)
          head.append(bytes.substr(0, core::sniff_bytes - head.size()));
        batch.append(bytes);
        if (batch.size() >= write_batch || (!more && !batch.empty())) {
          // No byte is written unless the lock was renewed moments ago: a
          // client that paused past the lease may have lost it to another
          // request, whose bytes these must never land among.
          if (std::chrono::steady_clock::now() >= renew_at) {
            if (!co_await renew(s, held)) co_return refuse(req, core::errc::upload_locked);
            renew_at = std::chrono::steady_clock::now() + lock_renewal;
          }
          co_await backend_call(s, cost::blocking, [&] { writer->write(batch); });
          batch.clear();
        }
      }
    } catch (const http::body_error& e) {
      const auto kind = e.which();
      if (checksum ||
          (kind != http::body_error::kind::disconnected && kind != http::body_error::kind::timeout)) {
        throw;
      }
      cut = std::current_exception();
    }
  }
  if (cut && !batch.empty()) {
    if (std::chrono::steady_clock::now() >= renew_at && !co_await renew(s, held)) std::rethrow_exception(cut);
    co_await backend_call(s, cost::blocking, [&] { writer->write(batch); });
  }
  if (checksum && checksum->digest->final() != checksum->expected) {
    co_return refuse(req, core::errc::upload_checksum_failed);
  }
  // A file of no accepted kind is refused at its first bytes,
  // not after the rest of it has been sent.
  if (at_start && (head.size() >= core::sniff_bytes || received == u.length)) {
    auto doc = described_file(u);
    auto problem = doc ? kind_problem(*doc, head) : std::optional(doc.error());
    if (problem) co_return co_await end_refused(s, req, held, *problem);
  }
  if (received > 0) {
    auto next = u;
    next.store_state = co_await backend_call(s, cost::blocking, [&] { return writer->persist(); });
    next.offset = u.offset + received;
    next.hash_state = hash->save();
    next.expires_at = s.clock.now() + s.cfg.tus_expiry;
    const bool recorded =
        co_await backend_call(s, cost::blocking, [&] { return s.db.advance_upload(next, held.token); });
    if (!recorded) co_return refuse(req, core::errc::upload_locked);
    u = std::move(next);
  }
  if (cut) std::rethrow_exception(cut);
  co_return std::nullopt;
}

// The upload's answer when it has every byte: made now if no request made
// it yet (the one that brought the last byte failed after recording it).
awaitable<http::response> finished_answer(services& s, const http::request& req, held_upload& held,
                                          std::unique_ptr<blob::resumable_writer> writer) {
  if (held.record.answer_status == 0) co_return co_await finish(s, req, held, std::move(writer));
  if (held.record.answer_status != 201) co_return ended(held.record);
  auto res = http::response::empty(204);
  describe(res, held.record);
  res.fields.set("Location", "/documents/" + held.record.id);
  co_return res;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> response_fields() {
  return {{"Tus-Resumable", std::string(tus_version)}};
}

awaitable<http::response> options(services& s, http::request& /*req*/) {
  auto res = http::response::empty(204);
  res.fields.set("Tus-Version", std::string(tus_version));
  res.fields.set("Tus-Extension", "creation,creation-with-upload,termination,checksum,expiration");
  res.fields.set("Tus-Max-Size", std::to_string(s.cfg.max_upload_bytes));
  res.fields.set("Tus-Checksum-Algorithm", "sha256,sha1,md5");
  co_return res;
}

awaitable<http::response> create(services& s, http::request& req) {
  if (auto e = version_problem(req)) co_return refuse(req, *e);
  if (req.fields.contains("Upload-Defer-Length")) {
    co_return refuse(req, bad_request("Upload-Defer-Length is not supported: send Upload-Length."));
  }
  const auto length = count_field(req, "Upload-Length");
  if (!length) co_return refuse(req, bad_request("Upload-Length must be a whole number of bytes."));
  const bool with_bytes = req.body_stream != nullptr;
  if (with_bytes && media_type(req) != chunk_type) {
    co_return refuse(req,
                     {core::errc::unsupported_media_type,
                      "Bytes sent with the creation need Content-Type: application/offset+octet-stream."});
  }
  auto checksum = parse_checksum(req);
  if (!checksum) co_return refuse(req, checksum.error());
  const auto key = idempotency_key(req);
  if (!key) co_return refuse(req, key.error());

  const auto now = s.clock.now();
  held_upload held;
  auto& u = held.record;
  u.id = core::new_uuid_v7();
  u.owner_id = req.user->user_id;
  u.length = *length;
  u.metadata = std::string(req.fields.get("Upload-Metadata").value_or(""));
  u.idempotency_key = *key;
  u.fingerprint = "POST /uploads\n" + std::to_string(u.length) + '\n' + u.metadata;
  u.hash_state = core::sha256().save();
  u.created_at = now;
  u.expires_at = now + s.cfg.tus_expiry;
  // Whatever POST /documents would refuse without the bytes is refused
  // before any byte, with the same problem.
  auto described = described_file(u);
  if (!described) co_return refuse(req, described.error());
  if (auto e = size_problem(u.length, s.cfg.max_upload_bytes)) co_return refuse(req, *e);
  if (auto e = co_await quota_refusal(s, req, u.length)) co_return refuse(req, *e);

  u.store_state = co_await backend_call(s, cost::blocking, [&] { return s.blobs.begin_resumable(u.id); });
  auto stored = co_await backend_call(s, cost::blocking, [&] { return s.db.create_upload(u); });
  if (stored.id != u.id) {
    // The key named an upload already: this request's store state is not needed.
    co_await discard_bytes(s, req, u);
    if (stored.fingerprint != u.fingerprint) co_return refuse(req, core::errc::idempotency_key_reused);
    auto res = http::response::empty(201);
    res.fields.set("Location", "/uploads/" + stored.id);
    res.fields.set("Idempotent-Replayed", "true");
    describe(res, stored);
    co_return res;
  }
  obs::log(
      obs::level::info, "upload.created",
      {{"request_id", req.request_id}, {"upload_id", u.id}, {"user_id", u.owner_id}, {"length", u.length}});
  auto res = http::response::empty(201);
  if (with_bytes) {
    res = co_await locked(s, req, u.id, [&](held_upload& mine) -> awaitable<http::response> {
      std::unique_ptr<blob::resumable_writer> writer;
      if (auto refused = co_await receive(s, req, mine, std::move(*checksum), writer)) co_return *refused;
      if (mine.record.offset == mine.record.length) {
        auto done = co_await finished_answer(s, req, mine, std::move(writer));
        if (done.status != 204) co_return done;
      }
      auto created = http::response::empty(201);
      describe(created, mine.record);
      co_return created;
    });
  } else {
    res.fields.set("Upload-Expires", core::format_http_date(u.expires_at));
  }
  // On a refusal of the bytes too: the upload exists, and a client may resume it.
  res.fields.set("Location", "/uploads/" + u.id);
  co_return res;
}

awaitable<http::response> status(services& s, http::request& req) {
  const bool head = req.method == "HEAD";
  if (auto e = version_problem(req); e && head) co_return refuse(req, *e);
  const std::string id(req.param("id"));
  if (!core::is_uuid(id)) co_return refuse(req, core::errc::not_found);
  const auto& owner = req.user->user_id;
  auto found = co_await backend_call(s, cost::point_read,
                                     [&] { return s.db.find_upload(id, std::optional<std::string>(owner)); });
  if (!found) co_return refuse(req, core::errc::not_found);
  if (found->offset == found->length && found->answer_status == 0) {
    // Every byte is here but the Document is not: make it now.
    auto res = co_await locked(s, req, id, [&](held_upload& held) -> awaitable<http::response> {
      co_return co_await finished_answer(s, req, held, nullptr);
    });
    // HEAD still tells the offset, which is right; GET has no Document to show yet.
    if (!head && (res.status >= 500 || res.status == 423)) co_return res;
    found = co_await backend_call(s, cost::point_read,
                                  [&] { return s.db.find_upload(id, std::optional<std::string>(owner)); });
    if (!found) co_return refuse(req, core::errc::not_found);
  }
  if (found->answer_status != 0 && found->answer_status != 201) co_return ended(*found);
  if (head) {
    auto res = http::response::empty(200);
    describe(res, *found);
    res.fields.set("Upload-Length", std::to_string(found->length));
    if (!found->metadata.empty()) res.fields.set("Upload-Metadata", found->metadata);
    if (found->answer_status == 201) res.fields.set("Location", "/documents/" + found->id);
    co_return res;
  }
  if (found->answer_status == 201) co_return ended(*found);
  co_return refuse(
      req, {core::errc::upload_incomplete, "The upload has received " + std::to_string(found->offset) +
                                               " of " + std::to_string(found->length) + " bytes."});
}

awaitable<http::response> append(services& s, http::request& req) {
  if (auto e = version_problem(req)) co_return refuse(req, *e);
  if (media_type(req) != chunk_type) {
    co_return refuse(req, {core::errc::unsupported_media_type,
                           "A PATCH carries Content-Type: application/offset+octet-stream."});
  }
  const auto offset = count_field(req, "Upload-Offset");
  if (!offset) co_return refuse(req, bad_request("Upload-Offset must be a whole number of bytes."));
  auto checksum = parse_checksum(req);
  if (!checksum) co_return refuse(req, checksum.error());
  co_return co_await locked(
      s, req, std::string(req.param("id")), [&](held_upload& held) -> awaitable<http::response> {
        auto& u = held.record;
        if (u.answer_status != 0 || u.offset == u.length) {
          // Nothing more to receive: a retry of the last PATCH whose answer was lost hears it again.
          if (*offset == u.length && (!req.body_stream || u.answer_status != 0)) {
            co_return co_await finished_answer(s, req, held, nullptr);
          }
          if (u.answer_status != 0 && u.answer_status != 201) co_return ended(u);
        }
        if (*offset != u.offset) {
          co_return refuse(req, {core::errc::upload_offset_mismatch,
                                 "Upload-Offset is " + std::to_string(*offset) +
                                     " but the upload has received " + std::to_string(u.offset) + " bytes."});
        }
        std::unique_ptr<blob::resumable_writer> writer;
        if (auto refused = co_await receive(s, req, held, std::move(*checksum), writer)) co_return *refused;
        if (u.offset == u.length) {
          crash_point("upload_received");
          co_return co_await finished_answer(s, req, held, std::move(writer));
        }
        auto res = http::response::empty(204);
        describe(res, u);
        co_return res;
      });
}

awaitable<http::response> terminate(services& s, http::request& req) {
  if (auto e = version_problem(req)) co_return refuse(req, *e);
  co_return co_await locked(
      s, req, std::string(req.param("id")), [&](held_upload& held) -> awaitable<http::response> {
        const auto& u = held.record;
        const bool deleted = co_await backend_call(s, cost::blocking, [&] {
          // Before its answer no Document names the blob: a commit that ran
          // (the last byte's request failing after it) leaves nothing behind.
          if (u.answer_status == 0) s.blobs.remove(u.id);
          return s.db.delete_upload(u.id, held.token);
        });
        if (!deleted) co_return refuse(req, core::errc::upload_locked);
        co_await discard_bytes(s, req, u);
        obs::log(obs::level::info, "upload.terminated",
                 {{"request_id", req.request_id}, {"upload_id", u.id}, {"offset", u.offset}});
        co_return http::response::empty(204);
      });
}

}  // namespace docflow::api::uploads
