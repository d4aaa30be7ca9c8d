#pragma once

#include <string>
#include <string_view>

#include <sys/types.h>

namespace docflow::pipeline {

/// TEST ONLY: what the extraction child does instead of parsing when the
/// environment variable DOCFLOW_TEST_EXTRACTOR_FAULT is set, so that tests
/// can prove the sandbox contains a misbehaving parser. It runs where
/// parsing would, after lock_down(). Never set the variable in production.
///
/// - "crash": abort();
/// - "hang": waits on a futex forever, like a deadlocked parser;
/// - "oom": allocates and touches memory until an allocation fails under
///   RLIMIT_AS, then aborts (at 2 GiB it aborts anyway, for builds without
///   the limit);
/// - "spin": burns CPU until RLIMIT_CPU stops it;
/// - "flood": writes output without end;
/// - "hostile:secret=PATH;write=PATH;port=N": tries, in turn, to read the
///   file PATH (the data directory's jwt.secret), to read
///   /proc/<parent>/environ, to connect a TCP socket to 127.0.0.1:N, to
///   fork, to create the file PATH (outside any scratch space), to allocate
///   2 GiB, and to exec /bin/sh. Returns the report, one line per attempt:
///   "<attempt>: blocked (<the failed call>: <errno name>)" or
///   "<attempt>: SUCCEEDED (...)", in that order, with the attempt names
///   read_secret, read_parent_environ, connect, fork, write_outside,
///   allocate, exec; in sanitizer builds, whose children have no RLIMIT_AS,
///   "allocate: not tried (...)". The child answers it as the extracted
///   text. Should the
///   exec succeed, the shell prints that answer, with exec SUCCEEDED.
///
/// `parent` is the parent's pid, taken before lockdown. Every fault but
/// "hostile" never returns; an unknown one exits with code 3, so a typo in a
/// test cannot pass silently.
std::string run_test_fault(std::string_view fault, pid_t parent);

}  // namespace docflow::pipeline
