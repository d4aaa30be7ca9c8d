#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/document.hpp"
#include "core/quota.hpp"
#include "core/refresh_rules.hpp"
#include "core/result.hpp"
#include "core/user.hpp"
#include "core/webhook.hpp"

namespace docflow::store {

class wakeups;

/// A new refresh token: the family it belongs to and its lifetime.
struct refresh_grant {
  std::string family_id;
  std::string user_id;
  std::string token_hash;  ///< SHA-256 hex of the opaque token
  core::time_point issued_at;
  core::time_point expires_at;
};

/// What presenting a refresh token did.
struct rotation_result {
  core::rotation_decision decision = core::rotation_decision::reject;
  std::optional<core::user> user;  ///< the token's owner, when rotated
};

/// A page request over documents, newest first.
struct document_query {
  std::optional<std::string> owner_id;  ///< nullopt: every owner (admins)
  std::optional<core::status> status;
  std::size_t limit = 50;
  /// Keyset position: only documents strictly older than (created_at, id).
  std::optional<std::pair<core::time_point, std::string>> after;
};

enum class process_outcome {
  accepted,            ///< moved to PROCESSING and one job enqueued
  already_processing,  ///< nothing new
  completed,           ///< nothing new
};

struct process_result {
  process_outcome outcome = process_outcome::accepted;
  core::document document;  ///< as it is after the call
};

/// A job a worker holds: valid while its lease token is the current one.
struct claimed_job {
  std::string job_id;
  std::string lease_token;
  unsigned attempt = 0;        ///< 1 for the first
  core::time_point queued_at;  ///< when the job became available
  core::document document;
  bool taken_over = false;  ///< claimed from a worker whose lease had lapsed
};

/// What processing produced, stored in one row.
struct stored_result {
  std::string pipeline_version;
  core::time_point started_at;
  core::time_point completed_at;
  unsigned attempts = 0;
  std::string summary_json;      ///< counts, language, keywords, metadata, ml
  std::string text;              ///< written by complete_job; find_result leaves it empty
  std::string text_preview;      ///< find_result: the first 500 characters of the text
  std::uint64_t text_bytes = 0;  ///< find_result: the text's size in bytes
};

enum class failure_outcome { retry_scheduled, failed, lease_lost };

struct cancel_result {
  core::document document;  ///< as it is after the call
  std::string job_id;       ///< the job that stopped being anyone's
};

/// One status change of a document, or a progress report of its run, as
/// /events streams it.
struct document_event {
  std::int64_t seq = 0;                          ///< 1, 2, ... per document; never changes
  core::status status = core::status::uploaded;  ///< PROCESSING for progress
  core::time_point at;
  std::optional<core::failure> error;
  std::optional<core::progress> progress;  ///< set for a progress event
};

/// An API key as its owner sees it: never the key itself.
struct api_key {
  std::string id;
  std::string user_id;
  std::string name;
  std::string prefix;  ///< "dfk_" and the key's next 8 characters
  core::time_point created_at;
  std::optional<core::time_point> expires_at;  ///< none: never
  std::optional<core::time_point> last_used_at;
};

/// A key found by its hash, with the account it acts for.
struct api_key_holder {
  api_key key;
  core::user user;
};

/// What a first request with an Idempotency-Key finds, when it may go on.
struct idempotency_claim {
  enum class kind {
    fresh,   ///< the key is now ours (in flight): run the request, then finish or abandon it
    replay,  ///< the key answered before: send that answer again
  };
  kind outcome = kind::fresh;
  int status = 0;            ///< replay: the stored status
  std::string body;          ///< replay: the stored body
  std::string content_type;  ///< replay
  std::string location;      ///< replay: the stored Location header, if any
  std::string token;         ///< fresh: names this claim to finish, abandon or insert_document
};

/// The answer of a request that holds a fresh claim, for replay to its retries.
struct idempotent_answer {
  std::string user_id;
  std::string key;
  std::string claim;  ///< the claim's token: the answer is stored only while the claim is this one
  int status = 0;
  std::string body;
  std::string content_type;
  std::string location;
};

/// A resumable upload (tus) between its requests: how much of it has
/// arrived, where the blob store keeps those bytes, and once it ended the
/// answer every later request about it gets.
struct upload_record {
  std::string id;  ///< the upload's; the document's and its blob's key once complete
  std::string owner_id;
  std::uint64_t length = 0;  ///< Upload-Length, declared at creation
  std::uint64_t offset = 0;  ///< bytes received and durable in the blob store
  std::string metadata;      ///< Upload-Metadata as the client sent it
  std::optional<std::string> idempotency_key;
  std::string fingerprint;  ///< what a creation under the same key must repeat
  std::string store_state;  ///< the blob store's record of the bytes (blob::resumable_writer::persist)
  std::string hash_state;   ///< core::sha256::save() over the bytes [0, offset)
  core::time_point created_at;
  core::time_point expires_at;
  /// Once the upload ended (its document made, or its file refused): the
  /// answer's status (201 or a problem's), body and type; 0 before.
  int answer_status = 0;
  std::string answer_body;
  std::string answer_content_type;
};

/// What trying to lock an upload found.
struct upload_lock {
  enum class kind {
    locked,     ///< the caller's token holds the lock now
    busy,       ///< another token holds it and its lease has not lapsed
    not_found,  ///< no such upload, or another owner's
  };
  kind outcome = kind::not_found;
  upload_record record;  ///< locked: the row as it is under the lock
};

/// An endpoint a user registered for webhooks.
struct webhook {
  std::string id;
  std::string owner_id;
  std::string url;
  unsigned events = 0;  ///< a mask of core::bit(core::webhook_event)
  std::string secret;   ///< the signing secret, as the user was shown it
  core::time_point created_at;
};

/// One event of the outbox: what its body reports, fixed when the status
/// changed, so that every attempt sends the same body.
struct webhook_event_record {
  std::string id;  ///< the body's `id`, the same in every delivery and attempt
  core::webhook_event type = core::webhook_event::document_uploaded;
  std::string document_id;
  core::status status = core::status::uploaded;
  std::optional<core::failure> error;
  core::time_point created_at;
};

/// One event on its way to one webhook. `state` is pending (waiting for
/// available_at), sending (a sender holds its lease), delivered or failed.
struct webhook_delivery {
  std::string id;
  std::string webhook_id;
  webhook_event_record event;
  std::string state = "pending";
  unsigned attempts = 0;
  core::time_point available_at;
  std::optional<int> last_status;         ///< the HTTP status of the last attempt that got one
  std::optional<std::string> last_error;  ///< why the last attempt failed, when it did
  core::time_point created_at;
  std::optional<core::time_point> delivered_at;
};

/// A delivery a sender holds: valid while its lease token is the current one.
struct claimed_delivery {
  webhook_delivery delivery;  ///< attempts counts this one
  std::string lease_token;
  std::string url;
  std::string secret;
};

/// What one attempt of a claimed delivery came to.
struct delivery_outcome {
  enum class kind { delivered, retry, failed };
  kind outcome = kind::retry;
  std::optional<int> status;         ///< the answer's HTTP status, when there was one
  std::optional<std::string> error;  ///< why it failed, when it did
  core::time_point retry_at;         ///< retry: when the next attempt may start
};

/// A page of a webhook's delivery log, newest first.
struct delivery_query {
  std::string webhook_id;
  std::string owner_id;
  std::size_t limit = 50;
  /// Keyset position: only deliveries strictly older than (created_at, id).
  std::optional<std::pair<core::time_point, std::string>> after;
};

/// A key attempts are counted against (a username, a client address), in
/// its scope (which throttle and which kind of key), with the number of
/// attempts it allows within the window.
struct attempt_key {
  std::string_view scope;
  std::string_view key;  ///< 1-128 bytes of printable ASCII: callers hash anything else
  unsigned limit = 1;
};

/// What to take back of a key's counted attempts.
struct attempt_release {
  std::string_view scope;
  std::string_view key;
  bool all = false;  ///< every attempt; otherwise the newest one
};

/// The right to run the maintenance passes (purges, sweeps) just now, or to
/// lead maintenance, held by one process at a time; given up when destroyed.
class maintenance_lease {
public:
  virtual ~maintenance_lease() = default;
  /// Whether it still holds: PostgreSQL's is lost with its connection
  /// (false once a round trip on it fails); a file lock cannot be lost.
  /// Blocks.
  virtual bool held() { return true; }
};

struct queue_stats {
  std::uint64_t queued = 0;
  std::uint64_t running = 0;
  /// When the longest-waiting queued job became (or becomes, after a retry
  /// delay) available; none when nothing is queued.
  std::optional<core::time_point> oldest_available;
};

/// How busy a pool of connections to a database server is.
struct pool_usage {
  std::size_t size = 0;     ///< connections it may open
  std::size_t in_use = 0;   ///< lent now, or being connected
  std::size_t waiting = 0;  ///< calls in line for one now
  std::uint64_t waits = 0;  ///< calls that found none free and waited, since start
  double wait_seconds = 0;  ///< how long those waited, in all
};

/// A database failure; `what()` is for the log, never for a client.
class store_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The database cannot be reached just now (down, restarting, every
/// connection busy past the wait, a lock or statement timeout): the call
/// may succeed if made again a little later, and a client is told so (503
/// with Retry-After), not that the service broke.
class store_unavailable : public store_error {
public:
  using store_error::store_error;
};

/// The connection was lost while the call was under way (the server
/// restarting, the network cut): what it wrote may have been committed
/// or not, and the caller cannot tell which. Keep whatever a committed
/// write would need (an upload's file), and let the client retry.
class store_outcome_unknown : public store_unavailable {
public:
  using store_unavailable::store_unavailable;
};

/// The database behind docflow, shaped so that SQLite and PostgreSQL can both
/// implement it without callers knowing which one they hold. Every method
/// blocks: call it from the blocking pool, never from an I/O thread.
///
/// Concurrency. Any number of processes may share one database. Every
/// method is correct under READ COMMITTED (PostgreSQL's default; SQLite's
/// single writer gives more): a method that decides from a row it read
/// either locks that row first (SELECT ... FOR UPDATE) or makes its write
/// conditional on what it read, as each method's "Isolation:" says. Rows
/// are locked document before job, everywhere, so writers do not deadlock;
/// a deadlock or serialization failure all the same is retried inside the
/// store a bounded number of times, never passed on. Times are the callers'
/// `now`, stored to the millisecond: the nodes' clocks must agree (NTP) to
/// well within a job lease.
class database {
public:
  virtual ~database() = default;

  /// Whether a read of one row by its key (find_document, find_user) is
  /// quick enough to run on an I/O thread: true for SQLite in WAL mode,
  /// which never waits for a writer and costs less than two thread hops;
  /// never for a database across a network. api::backend asks.
  virtual bool point_reads_inline() const noexcept { return false; }

  /// Hints that the database changed, from this process or any other
  /// (store/wakeups.hpp), or nullptr when the engine has none (SQLite):
  /// then the caller polls. Lives as long as the database. An engine that
  /// has them announces, in the transaction of the change itself:
  /// job_available from request_processing and a retry's re-queue in
  /// fail_job; document_changed from every status event and a deletion;
  /// job_stopped from cancel_processing.
  virtual store::wakeups* wakeups() noexcept { return nullptr; }

  /// Applies every migration newer than the schema's version, each in its own
  /// transaction; safe when several processes start at once. Returns the
  /// version reached. Throws store_error.
  /// Isolation: one migrator at a time (an advisory lock on PostgreSQL, the
  /// write lock on SQLite), which re-reads the version under it.
  virtual int migrate() = 0;

  /// The schema version recorded in the database (0 when none).
  virtual int schema_version() = 0;

  /// The version migrate() reaches: that of the newest migration this binary
  /// holds. A database at a higher version was migrated by a newer docflow.
  virtual int known_schema_version() const = 0;

  /// Answers a trivial query over a fresh connection, so that a database file
  /// that vanished or was damaged is noticed. Throws store_error.
  virtual void check() = 0;

  // --- users

  /// Inserts `u`; username_taken when the name is taken (ignoring case).
  /// Isolation: the unique key on the lowercased name decides; of two at
  /// once, the second waits for the first and is told username_taken.
  virtual core::result<void> create_user(const core::user& u) = 0;
  virtual std::optional<core::user> find_user_by_name(std::string_view username) = 0;
  virtual std::optional<core::user> find_user(std::string_view id) = 0;
  /// Every user, oldest first.
  virtual std::vector<core::user> list_users() = 0;

  // --- quotas

  /// The limits for users who have none of their own (DOCFLOW_QUOTA_*);
  /// none set: unlimited. Set once, before the database is shared.
  void set_default_quota(const core::quota_limits& q) { default_quota_ = q; }

  /// What `user_id` stores, and the limits that apply to them (their own
  /// settings over the defaults).
  virtual core::quota_state find_quota(std::string_view user_id) = 0;

  /// Changes the user's own limits; a limit not given stays as it is.
  /// False when there is no such user.
  virtual bool set_quota(std::string_view user_id, const std::optional<core::limit_setting>& bytes,
                         const std::optional<core::limit_setting>& documents) = 0;

  // --- API keys

  /// Inserts `k`, stored under `key_hash`, unless its user already holds
  /// `max_per_user` keys (limit_reached).
  /// Isolation: the user's row is locked while their keys are counted.
  virtual core::result<void> create_api_key(const api_key& k, std::string_view key_hash,
                                            std::size_t max_per_user) = 0;

  /// The user's keys, oldest first.
  virtual std::vector<api_key> list_api_keys(std::string_view user_id) = 0;

  /// Deletes the user's key `id`, so that it opens nothing from the next
  /// request on, in every process; false when they have no such key.
  virtual bool delete_api_key(std::string_view id, std::string_view user_id) = 0;

  /// The key stored under `key_hash`, with its account.
  virtual std::optional<api_key_holder> find_api_key(std::string_view key_hash) = 0;

  /// Stores key `id` under `key_hash` instead (after a rotation of the
  /// secret it was hashed with).
  virtual void rehash_api_key(std::string_view id, std::string_view key_hash) = 0;

  /// Records that key `id` was used at `now`, unless that was already
  /// recorded less than `interval` before: a conditional UPDATE.
  virtual void touch_api_key(std::string_view id, core::time_point now,
                             std::chrono::milliseconds interval) = 0;

  // --- refresh-token families

  /// Starts a family (a login) holding its first token.
  virtual void start_refresh_family(const refresh_grant& first) = 0;

  /// In one transaction: finds `presented_hash`, applies
  /// core::decide_rotation, and then either stores `successor` in the same
  /// family (rotate), revokes the family (reuse_detected), or does nothing
  /// (reject; also for an unknown token). successor.family_id and user_id are
  /// filled in by the store.
  /// Isolation: the token's row and its family's are locked while the rule
  /// decides: of concurrent presentations of one token (no grace), exactly
  /// one rotates.
  virtual rotation_result rotate_refresh_token(std::string_view presented_hash, refresh_grant successor,
                                               std::chrono::milliseconds grace) = 0;

  /// Revokes the family holding `token_hash`; unknown tokens are ignored.
  virtual void revoke_refresh_family(std::string_view token_hash, core::time_point now) = 0;

  /// Deletes families that expired before `now`; returns how many.
  virtual std::size_t purge_refresh_families(core::time_point now) = 0;

  // --- documents

  /// Inserts the document and its UPLOADED event (and the outbox's
  /// document.uploaded, with a delivery to each of the owner's webhooks
  /// subscribed to it), unless one more document of its size would take its
  /// owner past their quota: quota_exceeded, with the usage and limits in
  /// error().quota, and nothing inserted. With an `answer`, stores
  /// it for the claim in the same transaction, so that a crash leaves
  /// either both or neither: a retry then replays the answer, or makes the
  /// document. idempotency_key_in_flight (and nothing inserted) when the
  /// claim is no longer the answer's: a retry took the key over.
  /// Isolation: the answer is written only where the claim still names it
  /// (a conditional UPDATE); otherwise the whole transaction rolls back.
  /// The owner's users row is locked before their usage is read, so
  /// concurrent uploads of one user commit one after the other and cannot
  /// together pass the quota (usage is kept by triggers on documents).
  /// store_outcome_unknown: the row may be there all the same.
  virtual core::result<void> insert_document(const core::document& d, const idempotent_answer* answer) = 0;

  /// The document `id`, if it exists and (when `owner_id` is set) belongs to that owner.
  virtual std::optional<core::document> find_document(std::string_view id,
                                                      const std::optional<std::string>& owner_id) = 0;

  /// Up to q.limit documents in (created_at, id) descending order.
  virtual std::vector<core::document> list_documents(const document_query& q) = 0;

  /// Deletes the row unless core::can_delete refuses its status
  /// (document_busy); the check and the delete are one transaction.
  /// not_found for a missing document and another owner's.
  /// Isolation: the document's row is locked before its status is checked,
  /// so a concurrent request_processing either waits and finds it gone, or
  /// wins and the delete finds it busy.
  virtual core::result<void> delete_document(std::string_view id,
                                             const std::optional<std::string>& owner_id) = 0;

  // --- processing (the database is the queue)

  /// In one transaction: UPLOADED or FAILED → PROCESSING plus exactly one job
  /// `job_id` (unless `max_queued` jobs already wait: queue_full); PROCESSING
  /// changes nothing, nor does COMPLETED unless `force` (a new run on
  /// purpose, whose result replaces the old one when it completes).
  /// Isolation: the document's row is locked before its status is checked:
  /// of concurrent requests exactly one is accepted, the others wait and
  /// find PROCESSING. A unique index allows one live job per document
  /// besides. The max_queued bound is approximate across processes (requests
  /// for different documents may each see room for one more).
  virtual core::result<process_result> request_processing(std::string_view document_id,
                                                          const std::optional<std::string>& owner_id,
                                                          const std::string& job_id, core::time_point now,
                                                          std::uint64_t max_queued, bool force = false) = 0;

  /// Takes a job whose lease lapsed (taken_over), or else an available one,
  /// under a new lease `lease_token` until now + lease; counts the attempt.
  /// Fairness: the available job comes from the owner served least recently
  /// (by any claim, in any process) among the owners that have a job whose
  /// available_at has come, and is that owner's oldest; so owners take turns
  /// (round-robin), and with k such owners each one's next job is claimed
  /// within k claims, however many jobs the others queued. An owner whose
  /// jobs all wait for a retry's time is passed over, not waited for. With
  /// `max_running_per_owner` > 0, an owner holding that many unexpired
  /// leases is passed over too, until one of them ends; a lapsed lease is
  /// taken over whatever the limit (its job was counted while it ran). The
  /// cost grows with the number of owners that have queued jobs, never with
  /// the number of jobs.
  /// Isolation: the job and its document are locked together, skipping
  /// rows another transaction holds (FOR UPDATE SKIP LOCKED): concurrent
  /// claimers never wait on each other nor take the same job. The owners'
  /// "last served" marks are written only where no other claim holds the
  /// row (two claims at once may serve one owner twice in a row). With a
  /// limit, the owner's row is locked (SKIP LOCKED: an owner another claim
  /// is serving is passed over) before its running jobs are counted, so of
  /// concurrent claims at most the limit's worth hold leases: exact, on
  /// PostgreSQL as under SQLite's single writer.
  virtual std::optional<claimed_job> claim_job(core::time_point now, std::chrono::milliseconds lease_for,
                                               const std::string& lease_token,
                                               unsigned max_running_per_owner = 0) = 0;

  /// Whether `job` still holds its lease (not cancelled, deleted or taken
  /// over): a read, cheap enough to ask every second.
  virtual bool lease_held(const claimed_job& job) = 0;
  /// Extends the lease; false when the token is no longer current (taken
  /// over, cancelled or deleted). Isolation: a conditional UPDATE on the token.
  virtual bool renew_lease(const claimed_job& job, core::time_point now,
                           std::chrono::milliseconds lease_for) = 0;

  /// Records how far `job` has got: the document's stage becomes p.stage,
  /// and `p` is appended to its events (a progress event, status
  /// PROCESSING, under the next seq), which wakes its event streams. False,
  /// recording nothing, when the lease was lost. Isolation: as complete_job.
  virtual bool report_progress(const claimed_job& job, const core::progress& p, core::time_point now) = 0;

  /// In one transaction that checks the token: the result row, the job done,
  /// the document COMPLETED and the outbox's document.completed. False,
  /// writing none of them, when the lease was lost.
  /// Isolation: the document's row is locked, then the job moves on only
  /// where its lease token is still this one (the fence); a cancel or a
  /// takeover that got there first leaves nothing to write.
  virtual bool complete_job(const claimed_job& job, const stored_result& result) = 0;

  /// Requeues the job at `retry_at`, or (without one) fails it and the
  /// document with `failure` (and writes the outbox's document.failed);
  /// checks the token like complete_job.
  /// Isolation: as complete_job.
  virtual failure_outcome fail_job(const claimed_job& job, core::time_point now, const core::failure& failure,
                                   std::optional<core::time_point> retry_at) = 0;

  /// PROCESSING → FAILED with `failure` (code cancelled), with the outbox's
  /// document.failed; the job stops being anyone's. not_processing (with the document's status) otherwise.
  /// Isolation: the document's row is locked before its status is checked.
  virtual core::result<cancel_result> cancel_processing(std::string_view document_id,
                                                        const std::optional<std::string>& owner_id,
                                                        const core::failure& failure,
                                                        core::time_point now) = 0;

  /// The document's result without its text (a preview and its size
  /// instead): a text may be megabytes.
  virtual std::optional<stored_result> find_result(std::string_view document_id) = 0;

  /// Up to `max` bytes of the result text from `offset`, read without
  /// loading the rest; nullopt when the document has no result completed at
  /// `completed_at` any more (deleted, or processed again since).
  virtual std::optional<std::string> read_result_text(std::string_view document_id,
                                                      core::time_point completed_at, std::uint64_t offset,
                                                      std::size_t max) = 0;

  /// The document's events with seq > `after`, in order.
  virtual std::vector<document_event> events_after(std::string_view document_id, std::int64_t after) = 0;

  /// The ids of the documents that have had an event recorded, by any
  /// process, since `position` (opaque; a negative one means "from now":
  /// nothing is returned), at most `limit` of them, and the position to ask
  /// from next. One query however many documents are watched: what wakes
  /// event streams. An id may be reported more than once (a spurious
  /// wake-up); PostgreSQL reports no event out of commit order.
  struct changed_documents {
    std::vector<std::string> ids;
    std::int64_t next = 0;
  };
  virtual changed_documents documents_with_events_since(std::int64_t position, std::size_t limit) = 0;

  virtual queue_stats job_stats() = 0;

  // --- idempotency keys (scoped per user)

  /// Claims `key` for `fingerprint` until `now + ttl`, or finds its answer;
  /// idempotency_key_reused for another fingerprint, idempotency_key_in_flight
  /// while another request holds it. A claim still in flight after
  /// `abandoned_after` belongs to a request whose process died: it is taken over.
  /// Isolation: the insert of the claim is the check (INSERT ... ON
  /// CONFLICT DO NOTHING on the key): of concurrent first requests exactly
  /// one is fresh, the others wait for it and find the key in flight.
  virtual core::result<idempotency_claim> begin_idempotent(std::string_view user_id, std::string_view key,
                                                           std::string_view fingerprint, core::time_point now,
                                                           std::chrono::milliseconds ttl,
                                                           std::chrono::milliseconds abandoned_after) = 0;

  /// Stores the answer of a fresh claim for replay; nothing when the claim
  /// was taken over meanwhile. Isolation: a conditional UPDATE on the claim.
  virtual void finish_idempotent(const idempotent_answer& answer) = 0;

  /// Releases a fresh claim without an answer (the request failed in a way
  /// a retry should repeat); nothing when the claim was taken over.
  /// Isolation: a conditional DELETE on the claim.
  virtual void abandon_idempotent(std::string_view user_id, std::string_view key, std::string_view claim) = 0;

  /// Deletes keys past their retention; returns how many.
  virtual std::size_t purge_idempotency_keys(core::time_point now) = 0;

  // --- attempt throttles (logins, registrations), shared by every process

  /// Counts one attempt at `now` against every key of `keys` when each has
  /// fewer than its limit counted that have not yet left their window (an
  /// attempt counted at t leaves at t + window); then returns nullopt.
  /// Otherwise counts nothing and returns when a refusing key frees an
  /// attempt (its oldest counted one leaves), the latest of those when
  /// several refuse.
  /// Isolation: each key's row is locked by a conditional upsert, in the
  /// order of `keys` (callers keep one order of scopes), and a refusal rolls
  /// back the keys counted before it: of concurrent attempts on one key,
  /// exactly its limit's worth are counted.
  virtual std::optional<core::time_point> count_attempt(std::span<const attempt_key> keys,
                                                        core::time_point now,
                                                        std::chrono::milliseconds window) = 0;

  /// What count_attempt would answer at `now`, counting nothing.
  virtual std::optional<core::time_point> attempts_refused_until(std::span<const attempt_key> keys,
                                                                 core::time_point now) = 0;

  /// Takes back the newest attempt of each release's key, or all of them,
  /// in one transaction; unknown keys are ignored.
  virtual void release_attempts(std::span<const attempt_release> releases) = 0;

  /// Deletes the keys whose every attempt has left its window by `now`;
  /// returns how many.
  virtual std::size_t purge_attempts(core::time_point now) = 0;

  // --- resumable uploads (tus)

  /// Inserts `u`, unless u.idempotency_key is set and its owner already has
  /// an upload under that key: then returns that one as it is (the caller
  /// compares fingerprints); otherwise returns `u`.
  /// Isolation: a unique index on (owner_id, idempotency_key) decides; of
  /// two creations at once under one key, the second waits for the first
  /// and returns its row.
  virtual upload_record create_upload(const upload_record& u) = 0;

  /// The upload `id`, if it exists and (when `owner_id` is set) belongs to that owner.
  virtual std::optional<upload_record> find_upload(std::string_view id,
                                                   const std::optional<std::string>& owner_id) = 0;

  /// Locks the upload for one request under `token` until now + lease_for,
  /// when no token holds it or its holder's lease has lapsed (a process that
  /// died mid-request); busy otherwise. not_found for a missing upload and
  /// another owner's (when `owner_id` is set).
  /// Isolation: a conditional UPDATE on the lock's columns: of concurrent
  /// callers exactly one locks; the lock holds across processes.
  virtual upload_lock lock_upload(std::string_view id, const std::optional<std::string>& owner_id,
                                  std::string_view token, core::time_point now,
                                  std::chrono::milliseconds lease_for) = 0;

  /// Extends the lock to now + lease_for; false when `token` no longer holds it.
  virtual bool renew_upload_lock(std::string_view id, std::string_view token, core::time_point now,
                                 std::chrono::milliseconds lease_for) = 0;

  /// Records bytes received: u.offset, u.store_state, u.hash_state and
  /// u.expires_at, where `token` holds the upload's lock (kept); false,
  /// writing nothing, otherwise. Isolation: a conditional UPDATE on the token.
  virtual bool advance_upload(const upload_record& u, std::string_view token) = 0;

  /// Releases the lock if `token` holds it.
  virtual void unlock_upload(std::string_view id, std::string_view token) = 0;

  /// Ends the upload where `token` holds its lock, in one transaction:
  /// u.offset and u.answer_* recorded, the lock released and, with `doc`,
  /// the document and its UPLOADED event inserted as insert_document does
  /// (wakeups included) and with its quota check. upload_locked, writing
  /// nothing, when the lock was lost; quota_exceeded as insert_document.
  /// store_outcome_unknown: it may have committed all the same.
  virtual core::result<void> finish_upload(const upload_record& u, std::string_view token,
                                           const core::document* doc) = 0;

  /// Deletes the upload where `token` holds its lock; false otherwise.
  virtual bool delete_upload(std::string_view id, std::string_view token) = 0;

  /// Up to `limit` uploads whose expires_at is before `now` and whose lock
  /// no one holds (or has lapsed), the earliest to expire first: what the
  /// maintenance pass removes (each under lock_upload, then delete_upload).
  virtual std::vector<upload_record> expired_uploads(core::time_point now, std::size_t limit) = 0;

  // --- webhooks (the deliveries are a queue of their own beside the jobs)

  /// Inserts `w` unless its owner has `max_per_owner` webhooks already
  /// (limit_reached). Isolation: the owner's user row is locked
  /// before counting, so concurrent registrations never pass the cap.
  virtual core::result<void> create_webhook(const webhook& w, std::size_t max_per_owner) = 0;
  /// The owner's webhooks, oldest first.
  virtual std::vector<webhook> list_webhooks(std::string_view owner_id) = 0;
  /// The webhook `id` if it is the owner's.
  virtual std::optional<webhook> find_webhook(std::string_view id, std::string_view owner_id) = 0;
  /// Deletes the webhook with its deliveries, pending ones included (they
  /// stop); false for a missing webhook and another owner's.
  virtual bool delete_webhook(std::string_view id, std::string_view owner_id) = 0;

  /// Up to q.limit deliveries of the owner's webhook, newest first; none
  /// for another owner's.
  virtual std::vector<webhook_delivery> list_deliveries(const delivery_query& q) = 0;

  /// A new delivery `new_id` of the event of delivery `delivery_id` to the
  /// same webhook, pending from `now`: the same event (and event id) once
  /// more. nullopt when the webhook is not the owner's or the delivery not
  /// the webhook's.
  virtual std::optional<webhook_delivery> redeliver(std::string_view webhook_id, std::string_view delivery_id,
                                                    std::string_view owner_id, const std::string& new_id,
                                                    core::time_point now) = 0;

  /// Takes a delivery whose sender's lease lapsed (it died mid-attempt), or
  /// the pending one available longest, under `lease_token` until now +
  /// lease_for; counts the attempt. Isolation: FOR UPDATE SKIP LOCKED on
  /// PostgreSQL, as claim_job: two senders never take the same delivery.
  virtual std::optional<claimed_delivery> claim_delivery(core::time_point now,
                                                         std::chrono::milliseconds lease_for,
                                                         const std::string& lease_token) = 0;

  /// Records the attempt's outcome where `d`'s lease token is still the
  /// current one (the fence); false, writing nothing, when it is not (the
  /// lease lapsed and another sender took it, or the webhook was deleted).
  virtual bool finish_delivery(const claimed_delivery& d, core::time_point now,
                               const delivery_outcome& o) = 0;

  /// Deliveries pending or being sent: the queue's depth.
  virtual std::uint64_t pending_deliveries() = 0;

  // --- maintenance

  /// The maintenance lease if no other process (or database object) holds
  /// it, else null: the caller skips its pass. A process that dies loses
  /// it (PostgreSQL: a session-level advisory lock on a connection of the
  /// lease's own; SQLite: flock(2) on a file beside the database).
  virtual std::unique_ptr<maintenance_lease> try_maintenance_lease() = 0;

  /// Maintenance leadership, on the same terms as the lease but a lock of
  /// its own: one `serve` process holds it for as long as it runs (it runs
  /// the periodic passes, each under try_maintenance_lease, and alone
  /// exports the gauges read from shared state), so that `docflow
  /// maintenance` can still run a pass beside it.
  virtual std::unique_ptr<maintenance_lease> try_maintenance_leadership() = 0;

  // --- observation

  /// The connection pool to a database server (PostgreSQL); none for an
  /// embedded database, whose connections are no shared resource. Never
  /// blocks on the database.
  virtual std::optional<pool_usage> connection_pool() const { return std::nullopt; }

protected:
  core::quota_limits default_quota_;
};

}  // namespace docflow::store
