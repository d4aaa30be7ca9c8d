#pragma once

#include <optional>
#include <string_view>

#include <boost/json/object.hpp>

namespace docflow::obs {

enum class level { debug, info, warn, error };

/// "debug" | "info" | "warn" | "error"; nullopt otherwise.
std::optional<level> parse_level(std::string_view s) noexcept;

/// Lines below `min` are dropped. Default: info.
void set_level(level min) noexcept;
bool enabled(level l) noexcept;

/// Writes one JSON object per line to stdout: ts, level, event, then `fields`
/// in order. Safe from any thread; never throws. Callers must not put
/// passwords, tokens or file contents in `fields`.
void log(level l, std::string_view event, const boost::json::object& fields = {});

}  // namespace docflow::obs
