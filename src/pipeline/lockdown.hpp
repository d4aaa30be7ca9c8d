#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace docflow::pipeline {

/// Which mechanisms the extraction child has in force after lock_down().
struct sandbox_report {
  bool no_new_privs = false;         ///< PR_SET_NO_NEW_PRIVS: nothing it runs can gain privileges
  bool namespaces = false;           ///< its own user and network namespaces: no network at all
  int landlock_abi = 0;              ///< the Landlock ABI of the ruleset in force; 0 when none is
  bool seccomp = false;              ///< the system-call allow-list is loaded
  std::size_t seccomp_syscalls = 0;  ///< how many system calls that list allows

  /// The mechanisms not in force, by name ("no_new_privs", "namespaces",
  /// "landlock", "seccomp"); empty when every one is.
  std::vector<std::string> missing() const;
};

/// Closes every descriptor but 0, 1 and 2 (the input, the answer pipe and
/// /dev/null): whatever the child inherited or opened while starting up.
void close_inherited_descriptors();

/// Takes away from the calling process, for good, everything extraction
/// does not need, as far as this kernel allows, and says what took:
/// 0. RLIMIT_FSIZE 0: no file grows (not reported: it always takes);
/// 1. PR_SET_NO_NEW_PRIVS;
/// 2. new user and network namespaces (the network one has only a loopback
///    interface, and it is down);
/// 3. a Landlock ruleset with no rule: no file may be opened, created,
///    removed or executed by path, no TCP port bound or connected (ABI 4),
///    no signal sent or abstract socket reached outside the process (ABI 6);
/// 4. a seccomp filter that allows only the system calls extraction needs
///    (memory, but no executable mapping; futexes; writing the answer on 1
///    and 2; exiting; aborting); every other call fails with EPERM.
/// A mechanism the kernel lacks is skipped (best effort); the caller decides
/// whether to go on without it. Call it single-threaded (unshare needs that),
/// after every file the process will read is open or mapped. Never throws.
sandbox_report lock_down();

/// The names of the system calls the seccomp filter allows (some only with
/// restricted arguments, see lockdown.cpp).
std::vector<std::string> allowed_syscalls();

}  // namespace docflow::pipeline
