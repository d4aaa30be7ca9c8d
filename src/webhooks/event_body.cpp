#include "webhooks/event_body.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/clock.hpp"
#include "store/database.hpp"

namespace docflow::webhooks {

std::string event_body(const store::webhook_event_record& e) {
  boost::json::value error = nullptr;
  if (e.error) {
    error = boost::json::object{
        {"code", e.error->code}, {"message", e.error->message}, {"retryable", e.error->retryable}};
  }
  const boost::json::object data{{"document_id", e.document_id},
                                 {"status", core::to_string(e.status)},
                                 {"error", std::move(error)},
                                 {"result_url", "/documents/" + e.document_id + "/result"}};
  return boost::json::serialize(boost::json::object{{"id", e.id},
                                                    {"type", core::to_string(e.type)},
                                                    {"created_at", core::format_rfc3339(e.created_at)},
                                                    {"data", data}});
}

}  // namespace docflow::webhooks
