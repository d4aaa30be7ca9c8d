#include "pipeline/test_faults.hpp"

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipeline/sandbox.hpp"

namespace docflow::pipeline {

namespace {

[[noreturn]] void unknown_fault() { std::_Exit(3); }

// ---------------------------------------------------------------------------
// The hostile child: each attempt is one line of the report.

std::string blocked(std::string_view attempt, const char* call) {
  const int e = errno;
  const char* name = ::strerrorname_np(e);
  return std::string(attempt) + ": blocked (" + call + ": " + (name ? name : std::to_string(e)) + ")\n";
}

std::string succeeded(std::string_view attempt, const std::string& what) {
  return std::string(attempt) + ": SUCCEEDED (" + what + ")\n";
}

std::string not_tried(std::string_view attempt, const char* why) {
  return std::string(attempt) + ": not tried (" + why + ")\n";
}

std::string read_file(std::string_view attempt, const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return blocked(attempt, "open");
  std::array<char, 256> buffer{};
  const auto n = ::read(fd, buffer.data(), buffer.size());
  auto line = n < 0 ? blocked(attempt, "read")
                    : succeeded(attempt, "read " + std::to_string(n) + " bytes of " + path);
  ::close(fd);
  return line;
}

std::string connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return blocked("connect", "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  auto line = connected ? succeeded("connect", "connected to 127.0.0.1:" + std::to_string(port))
                        : blocked("connect", "connect");
  ::close(fd);
  return line;
}

std::string fork_a_child() {
  const pid_t pid = ::fork();
  if (pid < 0) return blocked("fork", "fork");
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return succeeded("fork", "started process " + std::to_string(pid));
}

std::string create_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return blocked("write_outside", "open");
  ::close(fd);
  return succeeded("write_outside", "created " + path);
}

std::string allocate() {
  // A sanitizer build's children run without RLIMIT_AS (sandbox.hpp): there
  // is no limit to show, and 2 GiB touched under TSan would take half a
  // minute and several GiB more of shadow memory.
  if (default_address_space == 0) return not_tried("allocate", "sanitizer build, no RLIMIT_AS");
  constexpr std::size_t chunk = 64ULL << 20;
  constexpr std::size_t max_chunks = 32;  // 2 GiB: "without bound", short of the machine's memory
  std::vector<void*> kept;
  kept.reserve(max_chunks);  // no allocation of its own while memory runs out
  while (kept.size() < max_chunks) {
    void* p = std::malloc(chunk);
    if (p == nullptr) break;
    std::memset(p, 0xA5, chunk);  // touched, so the memory is real
    kept.push_back(p);
  }
  const int e = errno;
  const auto mib = std::to_string(kept.size() * (chunk >> 20));
  const bool stopped = kept.size() < max_chunks;
  for (void* p : kept) std::free(p);
  if (!stopped) return succeeded("allocate", "allocated " + mib + " MiB");
  errno = e;
  return blocked("allocate", ("malloc, after " + mib + " MiB").c_str());
}

std::string exec_shell(const std::string& report_so_far) {
  // Should the exec work, this process becomes the shell, which then prints
  // the answer made here: the report, with the exec marked as a success.
  extraction if_exec_works;
  if_exec_works.text = report_so_far + succeeded("exec", "/bin/sh ran");
  auto answer = encode_child_output(if_exec_works);
  std::string sh = "/bin/sh", dash_c = "-c", script = "printf '%s' \"$1\"";
  std::array<char*, 6> argv{sh.data(), dash_c.data(), script.data(), sh.data(), answer.data(), nullptr};
  std::array<char*, 1> envp{nullptr};
  ::execve(sh.c_str(), argv.data(), envp.data());
  return blocked("exec", "execve");
}

// "secret=PATH;write=PATH;port=N" as a map; malformed, it is an unknown fault.
std::map<std::string, std::string, std::less<>> hostile_targets(std::string_view spec) {
  std::map<std::string, std::string, std::less<>> out;
  while (!spec.empty()) {
    const auto end = spec.find(';');
    const auto item = spec.substr(0, end);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) unknown_fault();
    out.emplace(item.substr(0, eq), item.substr(eq + 1));
    spec.remove_prefix(end == std::string_view::npos ? spec.size() : end + 1);
  }
  return out;
}

std::string run_hostile(std::string_view spec, pid_t parent) {
  const auto targets = hostile_targets(spec);
  const auto secret = targets.find("secret");
  const auto outside = targets.find("write");
  const auto port_text = targets.find("port");
  std::uint16_t port = 0;
  if (secret == targets.end() || outside == targets.end() || port_text == targets.end() ||
      std::from_chars(port_text->second.data(), port_text->second.data() + port_text->second.size(), port)
              .ec != std::errc()) {
    unknown_fault();
  }
  std::string report;
  report += read_file("read_secret", secret->second);
  report += read_file("read_parent_environ", "/proc/" + std::to_string(parent) + "/environ");
  report += connect_to(port);
  report += fork_a_child();
  report += create_file(outside->second);
  report += allocate();
  report += exec_shell(report);
  return report;
}

}  // namespace

std::string run_test_fault(std::string_view fault, pid_t parent) {
  if (fault == "crash") std::abort();
  if (fault == "hang") {
    // A deadlocked parser: a futex wait that nothing will ever wake.
    static std::uint32_t never = 0;
    for (;;) ::syscall(SYS_futex, &never, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
  }
  if (fault == "oom") {
    // Kept reachable so the compiler cannot drop the allocations; bounded so
    // a build without RLIMIT_AS still stops short of the machine's memory.
    static std::vector<void*> kept;
    constexpr std::size_t chunk = 64ULL << 20;
    kept.reserve(32);
    for (int i = 0; i < 32; ++i) {  // 2 GiB at most
      void* p = std::malloc(chunk);
      if (!p) std::abort();
      std::memset(p, 0xA5, chunk);
      kept.push_back(p);
    }
    std::abort();
  }
  if (fault == "spin") {
    volatile std::uint64_t n = 0;
    for (;;) n = n + 1;
  }
  if (fault == "flood") {
    const std::string chunk(1 << 20, 'x');
    for (;;) {
      if (::write(1, chunk.data(), chunk.size()) < 0 && errno != EINTR) std::_Exit(1);
    }
  }
  constexpr std::string_view hostile = "hostile:";
  if (fault.starts_with(hostile)) return run_hostile(fault.substr(hostile.size()), parent);
  unknown_fault();
}

}  // namespace docflow::pipeline
