#include "pipeline/enrich.hpp"

#include <exception>
#include <memory>
#include <mutex>

#include <curl/curl.h>
#include <boost/json.hpp>

#include "pipeline/sandbox.hpp"

namespace docflow::pipeline {

namespace {

[[noreturn]] void enrichment_failed(const std::string& why) {
  throw stage_error(core::failure{core::errc::enrichment_failed, why, true});
}

struct easy_free {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct slist_free {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// What the callbacks share with run(); libcurl calls them on this thread.
struct transfer {
  const job_input* in = nullptr;
  std::size_t limit = 0;
  std::string answer;
  bool too_large = false;
  std::exception_ptr heartbeat_error;  // the job was lost or cancelled mid-call
};

std::size_t on_data(char* data, std::size_t size, std::size_t count, void* user) {
  auto& t = *static_cast<transfer*>(user);
  const std::size_t n = size * count;
  if (t.answer.size() + n > t.limit) {
    t.too_large = true;
    return 0;  // makes libcurl stop with CURLE_WRITE_ERROR
  }
  t.answer.append(data, n);
  return n;
}

// libcurl calls this about once a second while the call runs, so a lost
// lease or a cancel stops a slow call instead of waiting out the timeout.
int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto& t = *static_cast<transfer*>(user);
  if (!t.in->heartbeat) return 0;
  try {
    t.in->heartbeat();
  } catch (...) {
    // An exception must not cross libcurl's C frames: carry it out.
    t.heartbeat_error = std::current_exception();
    return 1;
  }
  return 0;
}

}  // namespace

std::string enrich_request_json(const job_input& in, const result_data& out) {
  const auto& e = out.extraction;
  const auto& a = out.extraction.analysis;
  boost::json::object metadata{{"kind", core::kind_name(in.kind)}, {"sha256", in.sha256}};
  const auto described = metadata_json(e.metadata);
  metadata.insert(described.begin(), described.end());
  metadata.emplace("pages", e.pages ? boost::json::value(*e.pages) : boost::json::value(nullptr));
  metadata.emplace("language", a.language);
  metadata.emplace("word_count", a.word_count);
  return boost::json::serialize(boost::json::object{
      {"document_id", in.document_id}, {"text", e.text}, {"metadata", std::move(metadata)}});
}

enrich_stage::enrich_stage(enrich_options options) : options_(std::move(options)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

void enrich_stage::run(const job_input& in, result_data& out) {
  const std::string body = enrich_request_json(in, out);
  const std::unique_ptr<CURL, easy_free> curl(curl_easy_init());
  // Appending to a non-empty list returns its unchanged head, or null on failure.
  const std::unique_ptr<curl_slist, slist_free> headers(
      curl_slist_append(nullptr, "Content-Type: application/json"));
  if (!curl || !headers || !curl_slist_append(headers.get(), "Accept: application/json")) {
    enrichment_failed("the ML service call could not be prepared");
  }
  transfer t{&in, options_.max_answer_bytes, {}, false, nullptr};
  const auto timeout_ms = static_cast<long>(options_.timeout.count());
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, options_.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // worker threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, "docflow");
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);

  const CURLcode rc = curl_easy_perform(c);
  if (t.heartbeat_error) std::rethrow_exception(t.heartbeat_error);
  if (t.too_large) {
    enrichment_failed("the ML service's answer is larger than " + std::to_string(t.limit) + " bytes");
  }
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    enrichment_failed("the ML service did not answer within " + std::to_string(timeout_ms) + " ms");
  }
  if (rc != CURLE_OK)
    enrichment_failed(std::string("the ML service could not be reached: ") + curl_easy_strerror(rc));
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299)
    enrichment_failed("the ML service answered HTTP " + std::to_string(status));
  boost::json::error_code ec;
  const auto answer = boost::json::parse(t.answer, ec);
  if (ec) enrichment_failed("the ML service's answer is not JSON");
  out.ml_json = boost::json::serialize(answer);
}

}  // namespace docflow::pipeline
