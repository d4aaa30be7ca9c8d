#pragma once

#include <boost/json/object.hpp>

#include "core/document.hpp"

namespace docflow::api {

/// The Document of spec §3, with its links.
boost::json::object document_json(const core::document& d);

}  // namespace docflow::api
