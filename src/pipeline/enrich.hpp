#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "pipeline/stage.hpp"

namespace docflow::pipeline {

struct enrich_options {
  std::string url;                           ///< http:// or https://, from DOCFLOW_ML_URL
  std::chrono::milliseconds timeout{30000};  ///< the whole call, connect included
  std::size_t max_answer_bytes = 16 * 1024 * 1024;
};

/// The optional last stage: POSTs the document's text and what the earlier
/// stages found to an external ML service and keeps its JSON answer under
/// `ml` in the result. The slot where OCR, embeddings, classification or a
/// LangGraph pipeline plug in (docs/api.md, "The ML enrich slot").
///
/// Every failure is enrichment_failed and transient: the service may be
/// restarting, overloaded or slow, and a later attempt may succeed.
class enrich_stage final : public stage {
public:
  /// Initialises libcurl once for the process; construct before starting threads.
  explicit enrich_stage(enrich_options options);
  const char* name() const noexcept override { return "enrich"; }
  void run(const job_input& in, result_data& out) override;

private:
  enrich_options options_;
};

/// The request body the stage sends: {document_id, text, metadata}.
std::string enrich_request_json(const job_input& in, const result_data& out);

}  // namespace docflow::pipeline
