#include "pipeline/lockdown.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <memory>

#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace docflow::pipeline {

namespace {

// ---------------------------------------------------------------------------
// Landlock. Its interface (linux/landlock.h) is written out here: Debian
// bookworm's kernel headers (6.1) stop before the network and scope rights,
// and it is the running kernel, through the ABI version it reports, that
// says which rights exist.

namespace landlock {

constexpr unsigned create_ruleset_version = 1U << 0;

struct ruleset_attr {
  std::uint64_t handled_access_fs = 0;
  std::uint64_t handled_access_net = 0;  // ABI 4
  std::uint64_t scoped = 0;              // ABI 6
};

// File-system rights, by the ABI that brought them.
constexpr std::uint64_t fs_v1 = (1ULL << 13) - 1;   // execute, write, read, read dir, remove, make *
constexpr std::uint64_t fs_refer = 1ULL << 13;      // ABI 2: link or rename across directories
constexpr std::uint64_t fs_truncate = 1ULL << 14;   // ABI 3
constexpr std::uint64_t fs_ioctl_dev = 1ULL << 15;  // ABI 5
constexpr std::uint64_t net_bind_tcp = 1ULL << 0;   // ABI 4
constexpr std::uint64_t net_connect_tcp = 1ULL << 1;
constexpr std::uint64_t scope_abstract_unix_socket = 1ULL << 0;  // ABI 6
constexpr std::uint64_t scope_signal = 1ULL << 1;

}  // namespace landlock

// Restricts the process with a ruleset that handles every right this
// kernel knows and grants none of them. Returns the ABI version in force, 0
// when Landlock is missing (before Linux 5.13, or not enabled at boot).
int restrict_with_landlock() {
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, landlock::create_ruleset_version);
  if (abi < 1) return 0;
  landlock::ruleset_attr attr;
  attr.handled_access_fs = landlock::fs_v1;
  if (abi >= 2) attr.handled_access_fs |= landlock::fs_refer;
  if (abi >= 3) attr.handled_access_fs |= landlock::fs_truncate;
  if (abi >= 5) attr.handled_access_fs |= landlock::fs_ioctl_dev;
  // An older kernel refuses a larger structure with fields it does not
  // know set, so hand it only the fields of its ABI.
  std::size_t size = sizeof attr.handled_access_fs;
  if (abi >= 4) {
    attr.handled_access_net = landlock::net_bind_tcp | landlock::net_connect_tcp;
    size += sizeof attr.handled_access_net;
  }
  if (abi >= 6) {
    attr.scoped = landlock::scope_abstract_unix_socket | landlock::scope_signal;
    size += sizeof attr.scoped;
  }
  const long ruleset = ::syscall(SYS_landlock_create_ruleset, &attr, size, 0U);
  if (ruleset < 0) return 0;
  const bool restricted = ::syscall(SYS_landlock_restrict_self, ruleset, 0U) == 0;
  ::close(static_cast<int>(ruleset));
  return restricted ? static_cast<int>(abi) : 0;
}

// ---------------------------------------------------------------------------
// seccomp

// One allowed system call: always, or (when `when_any` is not empty) only
// when one of these argument comparisons holds.
struct allowed_call {
  const char* name;
  std::vector<scmp_arg_cmp> when_any;
};

scmp_arg_cmp arg_equals(unsigned arg, scmp_datum_t value) { return {arg, SCMP_CMP_EQ, value, 0}; }

// The whole allow-list, found by running the real extractors under strace
// after lockdown (every fixture, the broken files and zip bombs of the
// tests, a DOCX of nearly 5 MB, and the test faults), not guessed. The input is
// mapped and the files the libraries want are read before the filter, so
// parsing needs only memory, locks, the answer pipe and a way to end.
std::vector<allowed_call> allow_list() {
  // prot (argument 2) without PROT_EXEC: nothing can be mapped as code after
  // lockdown, so an exploit cannot load a payload that way.
  const scmp_arg_cmp not_executable{2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0};
  // The answer goes to stdout, a pipe to the parent; stderr is /dev/null.
  std::vector<scmp_arg_cmp> write_to{arg_equals(0, 1), arg_equals(0, 2)};
#if defined(DOCFLOW_UBSAN_VPTR)
  // UBSan builds only (tests/sanitizers/README.md): the vptr check reads a
  // vtable it has not met before only after writing it into a new pipe
  // (sanitizer_common's IsAccessibleMemoryRange). Without pipe2, write on
  // that pipe and close, every such check after lockdown fails as "object
  // has invalid vptr". None of them opens a file or reaches anything.
  write_to.push_back({0, SCMP_CMP_GT, 2, 0});
#endif
  std::vector<allowed_call> calls{
      {"write", write_to},
      // glibc's allocator: brk, mmap and munmap seen; mremap (realloc of a
      // large block) and madvise (giving memory back) are on its other paths.
      {"brk", {}},
      {"mmap", {not_executable}},
      {"munmap", {}},
      {"mremap", {}},
      {"madvise", {}},
      // Locks: libstdc++'s guards of function-local statics, poppler's mutexes.
      {"futex", {}},
      // abort(), which a failed assertion in a parser calls: it unblocks
      // SIGABRT and sends it to its own thread, in this process only.
      {"rt_sigprocmask", {}},
      {"getpid", {}},
      {"gettid", {}},
      {"tgkill", {arg_equals(0, static_cast<scmp_datum_t>(::getpid()))}},
      {"exit_group", {}},
  };
#if defined(DOCFLOW_UBSAN_VPTR)
  calls.push_back({"pipe2", {}});
  calls.push_back({"close", {}});
#endif
#if defined(__SANITIZE_ADDRESS__)
  // ASan builds only: before a throw unwinds, ASan unpoisons the stack, and
  // asks sigaltstack which stack it is on (a query: no new stack is set).
  calls.push_back({"sigaltstack", {arg_equals(0, 0)}});
#endif
  return calls;
}

struct filter_releaser {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};

// Loads the allow-list; anything else fails with EPERM, so a library that
// tries to open a file or a socket sees an ordinary error instead of dying.
// Returns the number of system calls allowed, 0 when no filter was loaded.
std::size_t load_seccomp_filter() {
  const std::unique_ptr<void, filter_releaser> ctx(seccomp_init(SCMP_ACT_ERRNO(EPERM)));
  if (!ctx) return 0;
  const auto calls = allow_list();
  for (const auto& call : calls) {
    const int nr = seccomp_syscall_resolve_name(call.name);
    if (nr == __NR_SCMP_ERROR) return 0;
    if (call.when_any.empty() && seccomp_rule_add_array(ctx.get(), SCMP_ACT_ALLOW, nr, 0, nullptr) != 0) {
      return 0;
    }
    for (const auto& condition : call.when_any) {
      if (seccomp_rule_add_array(ctx.get(), SCMP_ACT_ALLOW, nr, 1, &condition) != 0) return 0;
    }
  }
  if (seccomp_load(ctx.get()) != 0) return 0;
  return calls.size();
}

}  // namespace

std::vector<std::string> sandbox_report::missing() const {
  std::vector<std::string> out;
  if (!no_new_privs) out.emplace_back("no_new_privs");
  if (!namespaces) out.emplace_back("namespaces");
  if (landlock_abi < 1) out.emplace_back("landlock");
  if (!seccomp) out.emplace_back("seccomp");
  return out;
}

void close_inherited_descriptors() {
  // close_range (Linux 5.9) in one call; the loop is the fallback. Both are
  // async-signal-safe: the parent also calls this between fork and exec.
  if (::syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
  rlimit nofile{};
  const int max = ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                      ? static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, 1 << 20))
                      : 1 << 16;
  for (int fd = 3; fd < max; ++fd) ::close(fd);
}

sandbox_report lock_down() {
  sandbox_report r;
  // The parent has set it already, except in TSan builds (child_limits).
  const rlimit no_file_writes{0, 0};
  ::setrlimit(RLIMIT_FSIZE, &no_file_writes);
  r.no_new_privs = ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0;
  // The user namespace lets an unprivileged process create the network
  // namespace, and takes from a root process every capability it held
  // outside. Container runtimes' default seccomp profiles often refuse it.
  r.namespaces = ::unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0;
  r.landlock_abi = restrict_with_landlock();
  // Last: the filter forbids the calls the steps above make.
  r.seccomp_syscalls = load_seccomp_filter();
  r.seccomp = r.seccomp_syscalls > 0;
  return r;
}

std::vector<std::string> allowed_syscalls() {
  std::vector<std::string> out;
  for (const auto& call : allow_list()) out.emplace_back(call.name);
  return out;
}

}  // namespace docflow::pipeline
