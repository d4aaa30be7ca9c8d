#pragma once

#include <string_view>

namespace docflow::obs {

class metrics;

/// Declares the metrics of the process itself (process_cpu_seconds_total,
/// process_resident_memory_bytes, process_open_fds,
/// process_start_time_seconds, docflow_log_lines_dropped_total) and
/// docflow_build_info{version,commit,node} (node_name() of the log), and
/// records now as the start time. Call once per process, at start, after
/// set_node.
void describe_process(metrics& m, std::string_view version, std::string_view commit);

/// Reads the process's CPU time, resident memory, open descriptors and
/// dropped log lines into `m`; a figure that cannot be read keeps its last
/// value. Call before rendering.
void sample_process(metrics& m);

}  // namespace docflow::obs
