#pragma once

#include <string>
#include <string_view>

#include "core/document.hpp"

namespace docflow::store {

/// A processing failure as both engines store it beside its event: a JSON
/// object {code, message, retryable}, so that a code this version does not
/// know (written by a newer one) is kept and shown as it is.
std::string failure_record(const core::failure& f);

/// The failure a record holds; an unreadable record reads as a retryable
/// internal_error rather than failing the read of the whole history.
core::failure parse_failure_record(std::string_view json);

}  // namespace docflow::store
