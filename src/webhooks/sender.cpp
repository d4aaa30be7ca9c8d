#include "webhooks/sender.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <stop_token>
#include <thread>

#include <boost/json/object.hpp>

#include "core/backoff.hpp"
#include "core/clock.hpp"
#include "core/ids.hpp"
#include "core/webhook.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "store/database.hpp"
#include "webhooks/event_body.hpp"
#include "webhooks/target.hpp"

namespace docflow::webhooks {

namespace {

// What an endpoint may answer with: read and dropped, never kept.
std::size_t discard(char*, std::size_t size, std::size_t n, void*) { return size * n; }

// The last word on where a connection goes: curl asks for every socket it
// opens, and gets none for an address that was not checked. CURLOPT_RESOLVE
// already names only those; this holds even if curl looked elsewhere.
struct pinning {
  const std::vector<core::ip_address>* allowed = nullptr;
};

curl_socket_t open_checked(void* data, curlsocktype, curl_sockaddr* a) {
  const auto& pin = *static_cast<const pinning*>(data);
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw = nullptr;
  if (a->family == AF_INET) {
    raw = &reinterpret_cast<const sockaddr_in*>(&a->addr)->sin_addr;
  } else if (a->family == AF_INET6) {
    raw = &reinterpret_cast<const sockaddr_in6*>(&a->addr)->sin6_addr;
  }
  if (raw == nullptr || ::inet_ntop(a->family, raw, text, sizeof text) == nullptr) return CURL_SOCKET_BAD;
  const auto ip = core::parse_ip_address(text);
  if (!ip || std::find(pin.allowed->begin(), pin.allowed->end(), *ip) == pin.allowed->end()) {
    return CURL_SOCKET_BAD;
  }
  return ::socket(a->family, a->socktype, a->protocol);
}

struct curl_handle_deleter {
  void operator()(CURL* c) const noexcept { curl_easy_cleanup(c); }
};
struct curl_list_deleter {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};

std::string resolve_entry(const target& t, const std::vector<core::ip_address>& addresses) {
  std::string entry = t.host + ":" + std::to_string(t.port) + ":";
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    if (i > 0) entry += ',';
    entry += addresses[i].v4 ? addresses[i].to_string() : "[" + addresses[i].to_string() + "]";
  }
  return entry;
}

double jitter() {
  thread_local std::mt19937 random{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(random);
}

}  // namespace

attempt_result post_event(const std::string& url, const std::vector<std::string>& headers,
                          const std::string& body, const sender_options& options) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::string why;
  const auto t = parse_target(url, why);
  if (!t) return {std::nullopt, "invalid URL: " + why};
  const auto addresses = resolve(*t, options.allowed_networks);
  if (!addresses.resolved()) return {std::nullopt, "the host " + t->host + " does not resolve"};
  if (addresses.allowed.empty()) {
    return {std::nullopt, "refused address: " + t->host + " resolves only to " +
                              addresses.refused.front().to_string() +
                              (addresses.refused.size() > 1 ? " and other special-purpose addresses"
                                                            : ", a special-purpose address")};
  }

  const std::unique_ptr<CURL, curl_handle_deleter> handle(curl_easy_init());
  if (!handle) return {std::nullopt, "curl_easy_init failed"};
  CURL* c = handle.get();
  std::unique_ptr<curl_slist, curl_list_deleter> header_list;
  for (const auto& h : headers) {
    // Appending returns the list's head, or null (the list left as it was).
    auto* head = curl_slist_append(header_list.get(), h.c_str());
    if (head == nullptr) return {std::nullopt, "out of memory"};
    if (!header_list) header_list.reset(head);
  }
  std::unique_ptr<curl_slist, curl_list_deleter> pinned;
  const bool literal = core::parse_ip_address(t->host).has_value();
  if (!literal) pinned.reset(curl_slist_append(nullptr, resolve_entry(*t, addresses.allowed).c_str()));
  pinning pin{&addresses.allowed};
  std::array<char, CURL_ERROR_SIZE> error_text{};

  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);  // a 3xx is an answer, and not a 2xx
  curl_easy_setopt(c, CURLOPT_PROXY, "");           // never a proxy from the environment
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);        // many threads: no SIGALRM
  if (pinned) curl_easy_setopt(c, CURLOPT_RESOLVE, pinned.get());
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_checked);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &pin);
  curl_easy_setopt(c, CURLOPT_USERAGENT, options.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, header_list.get());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_text.data());
  const auto rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    if (rc == CURLE_OPERATION_TIMEDOUT) return {std::nullopt, "timeout"};
    return {std::nullopt, error_text[0] != '\0' ? std::string(error_text.data()) : curl_easy_strerror(rc)};
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  return {static_cast<int>(status), std::nullopt};
}

struct sender::impl {
  store::database& db;
  sender_options options;
  obs::metrics& metrics;
  const core::clock& clock;
  std::mutex mutex;
  std::condition_variable_any wake;
  std::vector<std::jthread> threads;

  impl(store::database& d, sender_options o, obs::metrics& m, const core::clock& c)
      : db(d), options(std::move(o)), metrics(m), clock(c) {}

  // Long enough for the DNS lookup and the attempt together; a sender that
  // died mid-attempt has its delivery taken over after this.
  std::chrono::milliseconds lease() const { return 2 * options.timeout + std::chrono::seconds{5}; }

  void run(const std::stop_token& stop) {
    while (!stop.stop_requested()) {
      bool worked = false;
      try {
        if (auto claimed = db.claim_delivery(clock.now(), lease(), core::random_hex(16))) {
          deliver(*claimed);
          worked = true;
        }
      } catch (const std::exception& e) {
        obs::log(obs::level::warn, "webhook.sender_failed", {{"error", e.what()}});
      }
      if (worked) continue;
      std::unique_lock lock(mutex);
      wake.wait_for(lock, stop, options.poll_interval, [] { return false; });
    }
  }

  void deliver(const store::claimed_delivery& d) {
    const auto& event = d.delivery.event;
    const auto body = event_body(event);
    const auto sent_at = clock.now();
    const auto t = std::chrono::duration_cast<std::chrono::seconds>(sent_at.time_since_epoch()).count();
    const std::vector<std::string> headers{
        "Content-Type: application/json", "Docflow-Signature: " + core::webhook_signature(d.secret, t, body),
        "Docflow-Event-Id: " + event.id, "Docflow-Event-Type: " + std::string(core::to_string(event.type)),
        "Docflow-Delivery-Id: " + d.delivery.id,
        // No "Expect: 100-continue" wait before the body.
        "Expect:"};
    const auto result = post_event(d.url, headers, body, options);
    const auto now = clock.now();
    store::delivery_outcome o;
    o.status = result.status;
    if (!result.delivered()) {
      o.error = result.error ? *result.error : "HTTP " + std::to_string(result.status.value_or(0));
      const auto retry_at =
          now + core::retry_delay(d.delivery.attempts, options.retry_base,
                                  std::max(options.retry_cap, options.retry_base), jitter());
      o.retry_at = retry_at;
      o.outcome = retry_at <= d.delivery.created_at + options.retry_for
                      ? store::delivery_outcome::kind::retry
                      : store::delivery_outcome::kind::failed;
    } else {
      o.outcome = store::delivery_outcome::kind::delivered;
    }
    const bool recorded = db.finish_delivery(d, now, o);
    const char* outcome = o.outcome == store::delivery_outcome::kind::delivered ? "delivered"
                          : o.outcome == store::delivery_outcome::kind::failed  ? "failed"
                                                                                : "retry";
    metrics.add("docflow_webhook_deliveries_total", obs::metrics::label("outcome", outcome));
    metrics.observe("docflow_webhook_attempt_duration_seconds", "",
                    std::chrono::duration<double>(now - sent_at).count());
    // Never the secret, the body or the URL's query (it may carry a token).
    boost::json::object f{{"delivery_id", d.delivery.id},
                          {"webhook_id", d.delivery.webhook_id},
                          {"event_id", event.id},
                          {"event_type", std::string(core::to_string(event.type))},
                          {"document_id", event.document_id},
                          {"attempt", d.delivery.attempts},
                          {"recorded", recorded}};
    if (result.status) f["status"] = *result.status;
    if (o.outcome == store::delivery_outcome::kind::delivered) {
      obs::log(obs::level::info, "webhook.delivered", f);
      return;
    }
    f["error"] = *o.error;
    f["will_retry"] = o.outcome == store::delivery_outcome::kind::retry;
    if (o.outcome == store::delivery_outcome::kind::retry) {
      f["next_attempt_at"] = core::format_rfc3339(o.retry_at);
    }
    obs::log(obs::level::warn, "webhook.failed", f);
  }
};

sender::sender(store::database& db, sender_options options, obs::metrics& metrics, const core::clock& clock)
    : impl_(std::make_unique<impl>(db, std::move(options), metrics, clock)) {
  for (unsigned i = 0; i < std::max(1U, impl_->options.concurrency); ++i) {
    impl_->threads.emplace_back([this](const std::stop_token& stop) { impl_->run(stop); });
  }
}

sender::~sender() {
  stop();
  impl_->threads.clear();  // joins
}

void sender::stop() noexcept {
  for (auto& t : impl_->threads) t.request_stop();
}

void sender::describe_metrics(obs::metrics& metrics) {
  metrics.describe(
      "docflow_webhook_deliveries_total", obs::metrics::kind::counter,
      "Webhook delivery attempts by outcome: delivered, retry (scheduled again) or failed (given up).");
  metrics.describe("docflow_webhook_attempt_duration_seconds", obs::metrics::kind::histogram,
                   "Time of one webhook delivery attempt, DNS lookup included.",
                   {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
}

}  // namespace docflow::webhooks
