#include "obs/process.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "obs/log.hpp"
#include "obs/metrics.hpp"

namespace docflow::obs {

namespace {
double seconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

// The second field of /proc/self/statm is the resident set, in pages.
bool resident_bytes(double& out) {
  std::FILE* f = std::fopen("/proc/self/statm", "re");
  if (f == nullptr) return false;
  unsigned long size = 0;
  unsigned long resident = 0;
  const bool ok = std::fscanf(f, "%lu %lu", &size, &resident) == 2;
  std::fclose(f);
  if (ok) out = static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  return ok;
}

bool open_descriptors(double& out) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return false;
  long n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  out = static_cast<double>(n - 1);  // not the one this count held open
  return true;
}
}  // namespace

void describe_process(metrics& m, std::string_view version, std::string_view commit) {
  m.describe("process_cpu_seconds_total", metrics::kind::counter,
             "User and system CPU time of the process, in seconds.");
  m.describe("process_resident_memory_bytes", metrics::kind::gauge,
             "Resident memory of the process, in bytes.");
  m.describe("process_open_fds", metrics::kind::gauge, "Open file descriptors of the process.");
  m.describe("process_start_time_seconds", metrics::kind::gauge,
             "Start time of the process since the Unix epoch, in seconds.");
  m.set("process_start_time_seconds", "",
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  m.describe("docflow_build_info", metrics::kind::gauge, "Always 1; the labels name the running build.");
  // node: which process of a cluster a series came from, matching the logs'
  // `node`, whatever the scrape target's address says.
  m.set("docflow_build_info",
        metrics::label("version", version) + ',' + metrics::label("commit", commit) + ',' +
            metrics::label("node", node_name()),
        1);
  m.describe("docflow_log_lines_dropped_total", metrics::kind::counter,
             "Log lines dropped because the log queue was full (stdout not keeping up).");
  sample_process(m);
}

void sample_process(metrics& m) {
  rusage usage{};
  if (::getrusage(RUSAGE_SELF, &usage) == 0) {
    m.set("process_cpu_seconds_total", "", seconds(usage.ru_utime) + seconds(usage.ru_stime));
  }
  double value = 0;
  if (resident_bytes(value)) m.set("process_resident_memory_bytes", "", value);
  if (open_descriptors(value)) m.set("process_open_fds", "", value);
  m.set("docflow_log_lines_dropped_total", "", static_cast<double>(log_lines_dropped()));
}

}  // namespace docflow::obs
