#include "api/processing.hpp"

#include <charconv>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "api/access.hpp"
#include "api/backend.hpp"
#include "api/document_json.hpp"
#include "api/errors.hpp"
#include "api/idempotency.hpp"
#include "api/request_body.hpp"
#include "api/services.hpp"
#include "api/stream_limit.hpp"
#include "config/config.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"
#include "obs/log.hpp"
#include "store/change_feed.hpp"
#include "store/database.hpp"

namespace docflow::api::processing {

namespace {

using boost::asio::awaitable;
using namespace std::chrono_literals;

constexpr auto heartbeat_every = 15s;

// The 409 for a document whose result cannot be shown (yet).
core::error not_ready(const core::document& d) {
  core::error e(d.status == core::status::failed ? core::errc::processing_failed
                                                 : core::errc::result_not_ready);
  e.document_status = d.status;
  e.document_error = d.error;
  return e;
}

// The caller's document and, when it is COMPLETED, its result; the error
// to answer otherwise.
struct loaded {
  core::document document;
  store::stored_result result;
};

awaitable<core::result<loaded>> load_with_result(services& s, const http::request& req) {
  auto doc = co_await caller_document(s, req);
  if (!doc) co_return doc.error();
  if (doc->status != core::status::completed) co_return not_ready(*doc);
  const auto& id = doc->id;
  auto found = co_await backend_call(s, cost::blocking, [&s, &id] { return s.db.find_result(id); });
  if (!found) co_return not_ready(*doc);  // processed again meanwhile
  co_return loaded{std::move(*doc), std::move(*found)};
}

boost::json::value optional_count(std::optional<unsigned> n) {
  return n ? boost::json::value(*n) : boost::json::value(nullptr);
}

std::string sse_event(const std::string& document_id, const store::document_event& e) {
  if (const auto& p = e.progress) {
    const boost::json::object data{{"document_id", document_id},
                                   {"stage", p->stage},
                                   {"pages_done", optional_count(p->pages_done)},
                                   {"pages_total", optional_count(p->pages_total)},
                                   {"at", core::format_rfc3339(e.at)}};
    return "id: " + std::to_string(e.seq) + "\nevent: progress\ndata: " + boost::json::serialize(data) +
           "\n\n";
  }
  const boost::json::object data{{"document_id", document_id},
                                 {"status", core::to_string(e.status)},
                                 {"at", core::format_rfc3339(e.at)},
                                 {"error", failure_json(e.error)}};
  return "id: " + std::to_string(e.seq) + "\nevent: status\ndata: " + boost::json::serialize(data) + "\n\n";
}

bool terminal(core::status st) { return st == core::status::completed || st == core::status::failed; }

// Streams a document's status events: the latest one (or every one after
// Last-Event-ID), then each new one as the database records it, with a
// comment heartbeat so proxies keep the stream open; ends after a terminal
// status, when the document is deleted, and when the caller's access token
// expires (the client reconnects with a fresh one and Last-Event-ID).
//
// A stream asks the database for its events only when the change feed says
// its document has a new one (one query for every open stream, also seeing
// changes made by other processes), and at each heartbeat, which also
// catches a change the feed missed.
class event_stream final : public http::body_source {
public:
  event_stream(services& s, std::string document_id, std::optional<std::int64_t> last_event_id,
               std::chrono::system_clock::time_point expires_at, stream_limit::ticket place)
      : s_(s),
        id_(std::move(document_id)),
        last_seq_(last_event_id.value_or(0)),
        resume_(last_event_id),
        expires_at_(expires_at),
        place_(std::move(place)) {}

  awaitable<std::size_t> read(char* out, std::size_t max) override {
    while (pending_.empty()) {
      if (finished_ || s_.shutting_down || s_.clock.now() >= expires_at_) co_return 0;
      if (!wake_) {
        co_await start();
        continue;
      }
      const bool heartbeat_due = std::chrono::steady_clock::now() - last_write_ >= heartbeat_every;
      if (wake_->pending || heartbeat_due) {
        wake_->pending = false;
        queue(
            co_await backend_call(s_, cost::blocking, [this] { return s_.db.events_after(id_, last_seq_); }));
        if (!pending_.empty()) break;
        // Woken with nothing new (a deletion leaves no event), or quiet for a while.
        const bool exists = co_await backend_call(
            s_, cost::point_read, [this] { return s_.db.find_document(id_, std::nullopt).has_value(); });
        if (!exists) co_return 0;  // deleted while watched
        if (heartbeat_due) {
          pending_ = ": heartbeat\n\n";
          break;
        }
        continue;
      }
      // Sleep until the feed wakes us, the heartbeat is due or the token expires.
      const auto until_expiry =
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(expires_at_ - s_.clock.now());
      wake_->timer.expires_at(
          std::min(last_write_ + heartbeat_every, std::chrono::steady_clock::now() + until_expiry));
      co_await wake_->timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    }
    const auto n = std::min(max, pending_.size());
    std::copy_n(pending_.data(), n, out);
    pending_.erase(0, n);
    last_write_ = std::chrono::steady_clock::now();
    co_return n;
  }

private:
  // Lives as long as the stream; the feed's listener holds it weakly and
  // touches it only on the stream's own event loop.
  struct wake_state {
    explicit wake_state(const boost::asio::any_io_executor& ex) : timer(ex) {}
    boost::asio::steady_timer timer;
    bool pending = false;
  };

  // Subscribes to the feed first, so that no event recorded during the first
  // read is missed, then reads: a fresh stream begins with the current
  // status; a resumed one with everything after Last-Event-ID. Either way, a
  // document already in a terminal status ends the stream once that is sent,
  // even when nothing is left to send.
  awaitable<void> start() {
    wake_ = std::make_shared<wake_state>(co_await boost::asio::this_coro::executor);
    subscription_.emplace(s_.changes.watch(id_, [weak = std::weak_ptr<wake_state>(wake_)] {
      if (const auto w = weak.lock()) {
        boost::asio::post(w->timer.get_executor(), [weak] {
          if (const auto again = weak.lock()) {
            again->pending = true;
            again->timer.cancel();
          }
        });
      }
    }));
    const auto all = co_await backend_call(s_, cost::blocking, [this] { return s_.db.events_after(id_, 0); });
    if (all.empty()) co_return;
    if (resume_) {
      std::vector<store::document_event> later;
      std::copy_if(all.begin(), all.end(), std::back_inserter(later),
                   [this](const auto& e) { return e.seq > last_seq_; });
      queue(later);
    } else {
      // The current status, and how far its run has got when it is running.
      const auto status = std::find_if(all.rbegin(), all.rend(), [](const auto& e) { return !e.progress; });
      std::vector<store::document_event> now{*status};
      if (status != all.rbegin()) now.push_back(all.back());
      queue(now);
    }
    finished_ = finished_ || terminal(all.back().status);
  }

  void queue(const std::vector<store::document_event>& events) {
    for (const auto& e : events) {
      pending_ += sse_event(id_, e);
      last_seq_ = e.seq;
      finished_ = finished_ || terminal(e.status);
    }
  }

  services& s_;
  std::string id_;
  std::int64_t last_seq_;
  bool resume_;
  std::chrono::system_clock::time_point expires_at_;
  stream_limit::ticket place_;
  std::shared_ptr<wake_state> wake_;
  std::optional<store::change_feed::subscription> subscription_;
  bool finished_ = false;
  std::string pending_;
  std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();
};

}  // namespace

namespace {
// An empty body, or {"force": bool}: whether a COMPLETED document runs again.
core::result<bool> force_requested(const http::request& req) {
  if (req.body.empty()) return false;
  const auto body = json_object_body(req);
  if (!body) return body.error();
  std::vector<core::field_error> errors;
  bool force = false;
  for (const auto& [name, value] : *body) {
    if (name != "force") {
      errors.push_back({std::string(name), "is not a field of this request"});
    } else if (!value.is_bool()) {
      errors.push_back({"force", "must be true or false"});
    } else {
      force = value.get_bool();
    }
  }
  if (!errors.empty()) return core::invalid_fields(std::move(errors));
  return force;
}

awaitable<http::response> request_processing(services& s, const http::request& req, const std::string& id,
                                             bool force) {
  const auto owner = owner_scope(req);
  const auto job_id = core::new_uuid_v7();
  const auto now = s.clock.now();
  const auto requested = co_await backend_call(s, cost::blocking, [&] {
    return s.db.request_processing(id, owner, job_id, now, s.cfg.queue_max_depth, force);
  });
  if (!requested) co_return error_response(req, requested.error());
  switch (requested->outcome) {
    case store::process_outcome::completed:
      co_return http::response::json(200, document_json(requested->document));
    case store::process_outcome::accepted:
      // `attempt` is the number the coming attempt will carry: attempts count
      // across every processing request of the document.
      obs::log(obs::level::info, "document.process_requested",
               {{"request_id", req.request_id},
                {"document_id", id},
                {"job_id", job_id},
                {"attempt", requested->document.attempts + 1},
                {"force", force}});
      break;
    case store::process_outcome::already_processing: break;
  }
  co_return http::response::json(202, document_json(requested->document));
}

awaitable<http::response> lookup_and_request_processing(services& s, const http::request& req, bool force) {
  const auto doc = co_await caller_document(s, req);
  if (!doc) co_return error_response(req, doc.error());
  co_return co_await request_processing(s, req, doc->id, force);
}
}  // namespace

// The key comes before the lookup: a retry gets the first answer even once
// the document is gone, and a 404 is kept like any other answer.
awaitable<http::response> process(services& s, http::request& req) {
  const auto key = idempotency_key(req);
  if (!key) co_return error_response(req, key.error());
  const auto force = force_requested(req);
  if (!force) co_return error_response(req, force.error());
  if (*key) {
    // Ids are lowercase: an id written in capitals names the same document.
    // A forced run is another request than a plain one under the same key.
    co_return co_await once(
        s, req, **key,
        "POST /documents/{id}/process " + core::ascii_lower(req.param("id")) + (*force ? " force" : ""),
        [&s, &req, force = *force](idempotent_scope&) {
          return lookup_and_request_processing(s, req, force);
        });
  }
  co_return co_await lookup_and_request_processing(s, req, *force);
}

awaitable<http::response> cancel(services& s, http::request& req) {
  const auto doc = co_await caller_document(s, req);
  if (!doc) co_return error_response(req, doc.error());
  const auto& id = doc->id;
  const auto owner = owner_scope(req);
  const auto now = s.clock.now();
  const core::failure cancelled{core::errc::cancelled, "processing was cancelled at the owner's request",
                                true};
  const auto done = co_await backend_call(s, cost::blocking,
                                          [&] { return s.db.cancel_processing(id, owner, cancelled, now); });
  if (!done) co_return error_response(req, done.error());
  obs::log(obs::level::info, "document.failed",
           {{"request_id", req.request_id},
            {"document_id", id},
            {"job_id", done->job_id},
            {"attempt", done->document.attempts},
            {"code", cancelled.code},
            {"retryable", true}});
  co_return http::response::json(202, document_json(done->document));
}

awaitable<http::response> result(services& s, http::request& req) {
  const auto found = co_await load_with_result(s, req);
  if (!found) co_return error_response(req, found.error());
  const auto& r = found->result;
  boost::json::error_code ec;
  auto summary = boost::json::parse(r.summary_json, ec);
  if (ec || !summary.is_object()) throw std::runtime_error("unreadable result summary");
  auto& body = summary.as_object();
  const auto& id = found->document.id;
  body["document_id"] = id;
  body["pipeline_version"] = r.pipeline_version;
  body["started_at"] = core::format_rfc3339(r.started_at);
  body["completed_at"] = core::format_rfc3339(r.completed_at);
  body["duration_ms"] =
      std::chrono::duration_cast<std::chrono::milliseconds>(r.completed_at - r.started_at).count();
  body["attempts"] = r.attempts;
  body["text_preview"] = r.text_preview;
  body["text_bytes"] = r.text_bytes;
  if (!body.contains("truncated")) body["truncated"] = false;  // results stored before the limit
  if (!body.contains("page_sources")) body["page_sources"] = boost::json::array();  // and before OCR
  if (!body.contains("ocr")) body["ocr"] = nullptr;
  if (!body.contains("pipeline")) {  // results stored before it was recorded: the stages are not known
    body["pipeline"] = boost::json::object{{"version", r.pipeline_version}, {"stages", nullptr}};
  }
  body["links"] = boost::json::object{{"text", "/documents/" + id + "/result/text"}};
  co_return http::response::json(200, body);
}

// The result text from the store, a piece at a time: never all of it in
// memory. A result replaced meanwhile (the document processed again) ends
// the body short, which the client sees as a cut connection.
class result_text_source final : public http::body_source {
public:
  result_text_source(services& s, std::string document_id, core::time_point completed_at)
      : s_(s), id_(std::move(document_id)), completed_at_(completed_at) {}

  awaitable<std::size_t> read(char* out, std::size_t max) override {
    auto piece = co_await backend_call(s_, cost::blocking, [this, max] {
      return s_.db.read_result_text(id_, completed_at_, offset_, std::min(max, piece_bytes));
    });
    if (!piece) throw std::runtime_error("the result changed while its text was sent");
    std::copy(piece->begin(), piece->end(), out);
    offset_ += piece->size();
    co_return piece->size();
  }

private:
  static constexpr std::size_t piece_bytes = 64 * 1024;
  services& s_;
  std::string id_;
  core::time_point completed_at_;
  std::uint64_t offset_ = 0;
};

awaitable<http::response> result_text(services& s, http::request& req) {
  const auto found = co_await load_with_result(s, req);
  if (!found) co_return error_response(req, found.error());
  http::response res;
  res.status = 200;
  res.fields.set("Content-Type", "text/plain; charset=utf-8");
  res.stream = std::make_shared<result_text_source>(s, found->document.id, found->result.completed_at);
  res.stream_size = found->result.text_bytes;
  co_return res;
}

awaitable<http::response> events(services& s, http::request& req) {
  const auto doc = co_await caller_document(s, req);
  if (!doc) co_return error_response(req, doc.error());
  auto place = s.streams.try_open(req.user->user_id);
  if (!place) co_return error_response(req, core::errc::too_many_streams);
  std::optional<std::int64_t> last_event_id;
  if (const auto h = req.fields.get("Last-Event-ID")) {
    std::int64_t n = 0;
    const auto [end, ec] = std::from_chars(h->data(), h->data() + h->size(), n);
    if (ec == std::errc{} && end == h->data() + h->size() && n >= 0) last_event_id = n;
  }
  http::response res;
  res.fields.set("Content-Type", "text/event-stream");
  res.fields.set("Cache-Control", "no-cache");
  res.fields.set("X-Accel-Buffering", "no");  // nginx: pass events through at once
  res.stream =
      std::make_shared<event_stream>(s, doc->id, last_event_id, req.user->expires_at, std::move(*place));
  co_return res;
}

}  // namespace docflow::api::processing
