#pragma once

#include <string>

namespace docflow::store {
struct webhook_event_record;
}

namespace docflow::webhooks {

/// The JSON body of an event, the same bytes on every attempt:
/// {id, type, created_at, data: {document_id, status, error, result_url}}.
/// No document content and no file name: the body leaves for a third party.
std::string event_body(const store::webhook_event_record& e);

}  // namespace docflow::webhooks
