#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>

namespace docflow::obs {

enum class level { debug, info, warn, error };

/// "debug" | "info" | "warn" | "error"; nullopt otherwise.
std::optional<level> parse_level(std::string_view s) noexcept;

/// Lines below `min` are dropped. Default: info.
void set_level(level min) noexcept;
bool enabled(level l) noexcept;

/// Names this process in the `node` member of every line from now on.
/// Until called, the node is default_node_name(). Call once, at start,
/// before other threads log.
void set_node(std::string_view name);

/// <hostname>:<pid>: unique among the processes of a cluster.
std::string default_node_name();

/// The name set_node gave (or the default).
std::string node_name();

/// Writes one JSON object per line to stdout: ts, level, event, node, then
/// `fields` in order. Safe from any thread; never throws, and never waits for stdout:
/// a logger thread writes the lines, and when stdout falls a few MiB behind,
/// lines are dropped and counted instead. Callers must not put passwords,
/// tokens or file contents in `fields`.
void log(level l, std::string_view event, const boost::json::object& fields = {});

/// Waits until every line logged before the call is on stdout, at most
/// `timeout`; false when stdout did not take them in time. Exit does this
/// (for at most 5 s), so a normal stop loses no line.
bool flush_log(std::chrono::milliseconds timeout);

/// Lines dropped since start because stdout was not keeping up.
std::uint64_t log_lines_dropped() noexcept;

}  // namespace docflow::obs
