#include "api/document_json.hpp"

#include <boost/json/value.hpp>

namespace docflow::api {

boost::json::value optional_time_json(const std::optional<core::time_point>& t) {
  return t ? boost::json::value(core::format_rfc3339(*t)) : boost::json::value(nullptr);
}

boost::json::value failure_json(const std::optional<core::failure>& f) {
  if (!f) return nullptr;
  return boost::json::object{{"code", f->code}, {"message", f->message}, {"retryable", f->retryable}};
}

boost::json::object quota_json(const core::quota_state& q) {
  const auto limit = [](std::optional<std::uint64_t> l) -> boost::json::value {
    if (!l) return nullptr;
    return *l;
  };
  return {{"usage", {{"bytes", q.usage.bytes}, {"documents", q.usage.documents}}},
          {"limits", {{"bytes", limit(q.limits.bytes)}, {"documents", limit(q.limits.documents)}}}};
}

boost::json::object document_json(const core::document& d) {
  const std::string self = "/documents/" + d.id;
  return {
      {"id", d.id},
      {"filename", d.filename},
      {"title", d.title ? boost::json::value(*d.title) : boost::json::value(nullptr)},
      {"content_type", core::content_type(d.kind)},
      {"size_bytes", d.size_bytes},
      {"sha256", d.sha256},
      {"status", core::to_string(d.status)},
      // While PROCESSING, what its worker last reported; "queued" until one does.
      {"stage", d.status == core::status::processing ? boost::json::value(d.stage.value_or("queued"))
                                                     : boost::json::value(nullptr)},
      {"created_at", core::format_rfc3339(d.created_at)},
      {"updated_at", core::format_rfc3339(d.updated_at)},
      {"processing",
       {{"attempts", d.attempts},
        {"started_at", optional_time_json(d.started_at)},
        {"finished_at", optional_time_json(d.finished_at)},
        {"error", failure_json(d.error)}}},
      {"links",
       {{"self", self},
        {"content", self + "/content"},
        {"process", self + "/process"},
        {"result", self + "/result"}}},
  };
}

}  // namespace docflow::api
