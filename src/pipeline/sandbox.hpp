#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/document.hpp"
#include "pipeline/stage.hpp"

namespace docflow::pipeline {

/// What one extraction child may use. The kernel enforces the first three
/// and the output bound is enforced while reading; a child over a limit is
/// killed, never the caller.
struct sandbox_limits {
  std::uint64_t address_space = 1ULL << 30;  ///< RLIMIT_AS bytes; 0 = unlimited (sanitizer builds need it)
  unsigned cpu_seconds = 30;                 ///< RLIMIT_CPU: SIGXCPU, then SIGKILL a second later
  std::chrono::milliseconds wall{60000};     ///< from spawn to exit
  unsigned open_files = 64;                  ///< RLIMIT_NOFILE
  std::size_t max_output = 64ULL << 20;      ///< bytes of the child's answer on stdout
};

/// Runs `self_exe extract --kind pdf|docx FILE` in a child process with
/// `limits` (plus RLIMIT_FSIZE=0 and RLIMIT_CORE=0, no descriptors but
/// stdin (/dev/null), stdout (a pipe) and stderr (/dev/null), and an
/// environment of only DOCFLOW_TEST_EXTRACTOR_FAULT and sanitizer options),
/// and returns what it extracted. `heartbeat`, when set, is called about
/// once a second while waiting; if it throws, the child is killed and the
/// exception propagates. Blocks: call it on the blocking pool.
/// Throws stage_error:
/// - the child's own structured failure (unreadable_document,
///   document_too_complex: permanent);
/// - extractor_timeout (transient) when the wall deadline passes;
/// - document_too_complex (permanent) when the answer exceeds max_output;
/// - extractor_crashed (transient) when the child dies by a signal (SIGSEGV,
///   SIGXCPU, SIGKILL, abort...), exits non-zero, answers garbage, or cannot
///   be started.
extraction extract_in_child(const std::filesystem::path& self_exe, const std::filesystem::path& file,
                            core::file_kind kind, const sandbox_limits& limits,
                            const std::function<void()>& heartbeat = {});

/// The child side: what `docflow extract --kind K FILE` runs. Extracts
/// `file`, writes one JSON object (encode_child_output or
/// encode_child_failure) to stdout and returns the process exit code: 0
/// when an answer was written, 1 when stdout failed. Never throws.
///
/// TEST ONLY: the environment variable DOCFLOW_TEST_EXTRACTOR_FAULT makes
/// the child misbehave before touching the file, so tests can prove the
/// sandbox contains it: "crash" calls abort(); "hang" sleeps forever;
/// "oom" allocates and touches memory until an allocation fails under
/// RLIMIT_AS, then aborts (at 2 GiB it aborts anyway, for builds without the
/// limit); "spin" burns CPU until RLIMIT_CPU stops it;
/// "flood" writes output without end. Never set it in production.
int extract_main(core::file_kind kind, const std::filesystem::path& file);

/// "pdf" / "docx", the values of --kind.
const char* kind_argument(core::file_kind kind) noexcept;

/// The inverse of kind_argument; nullopt for anything else.
std::optional<core::file_kind> parse_kind_argument(std::string_view kind) noexcept;

/// The child's answer on success:
/// {"ok":true,"pages":n|null,"text":"...","title":s|null,"author":s|null,"created_ms":n|null}
/// (created_ms: milliseconds since the Unix epoch). Invalid UTF-8 in any
/// string is replaced by U+FFFD so the answer is always valid JSON.
std::string encode_child_output(const extraction& e);

/// The child's answer on a handled failure:
/// {"ok":false,"code":"...","message":"...","retryable":bool}.
std::string encode_child_failure(const core::failure& f);

/// Parses a child's answer: returns the extraction for "ok":true; throws the
/// child's stage_error for "ok":false when its code is one the extractor may
/// report (unreadable_document, document_too_complex, extractor_crashed);
/// throws stage_error extractor_crashed (transient) for anything else:
/// garbage, a wrong shape, an unknown code, trailing bytes.
extraction decode_child_output(std::string_view json);

}  // namespace docflow::pipeline
