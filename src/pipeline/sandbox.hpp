#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>
#include <sys/types.h>

#include "core/document.hpp"
#include "pipeline/lockdown.hpp"
#include "pipeline/ocr.hpp"
#include "pipeline/stage.hpp"

namespace docflow::pipeline {

/// The default RLIMIT_AS of a child. ASan and TSan reserve terabytes of
/// shadow address space as a process starts, so a sanitizer-built child
/// cannot start under any such limit: in those builds every child runs
/// without one (its CPU, wall-clock and output limits still hold).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr std::uint64_t default_address_space = 0;
#else
inline constexpr std::uint64_t default_address_space = 1ULL << 30;
#endif

/// What one sandboxed child may use. The kernel enforces the address space,
/// CPU and open-file limits, the parent the wall time and the output bound;
/// a child over a limit is killed, never the caller.
struct sandbox_limits {
  std::uint64_t address_space = default_address_space;  ///< RLIMIT_AS bytes; 0 = unlimited
  unsigned cpu_seconds = 30;                            ///< RLIMIT_CPU: SIGXCPU, then SIGKILL a second later
  std::chrono::milliseconds wall{60000};                ///< from spawn to exit
  unsigned open_files = 64;                             ///< RLIMIT_NOFILE
  std::size_t max_output = 64ULL << 20;                 ///< bytes of the child's answer on stdout
  /// Extracted text kept (DOCFLOW_MAX_TEXT_BYTES): the child cuts a longer
  /// text, after analysing all of it.
  std::uint64_t max_text_bytes = 16ULL << 20;
  /// DOCFLOW_SANDBOX=strict: the child refuses to parse (sandbox_unavailable)
  /// when one of lock_down()'s mechanisms is missing, instead of going on
  /// with those it has.
  bool strict = false;
};

/// The limits of the DOCX check (is_docx_in_child): it reads only the ZIP's
/// directory, which takes milliseconds for any real file, so its bounds are
/// tighter than extraction's: 5 s of CPU, 10 s in all, a few bytes of answer.
sandbox_limits docx_check_limits(bool strict);

/// What a child is asked for: `docflow extract --task T --sandbox M`, where
/// T is "pdf", "docx", "image", "ocr-pdf", "ocr-image", "is-docx" or
/// "report" and M "strict" or "best-effort". Its input, the stored file, is
/// always its stdin. The OCR tasks extract as "pdf" and "image" do, reading
/// the pages of their ocr_request by OCR.
enum class child_task {
  extract_pdf,
  extract_docx,
  extract_image,
  ocr_pdf,
  ocr_image,
  check_docx,
  report_sandbox
};

/// What an OCR task reads, and how: `--ocr-languages L --ocr-dpi N
/// --ocr-pages 0,3,4` (0-based, ascending). For the first pass over a PDF
/// (`--task pdf`), `--blank-checks N`: how many pages without text may be
/// drawn small to find the blank ones (until one is not), which OCR then
/// leaves alone.
struct ocr_request {
  std::string languages = "eng";
  unsigned dpi = 300;
  std::vector<int> pages;
  unsigned blank_checks = 0;
};

/// "0,3,4" and back; the parse is nullopt for anything but ascending
/// non-negative numbers separated by commas (empty is no page).
std::string format_page_list(const std::vector<int>& pages);
std::optional<std::vector<int>> parse_page_list(std::string_view list);

/// The value of --task for `task`.
const char* task_argument(child_task task) noexcept;

/// The inverse of task_argument; nullopt for anything else.
std::optional<child_task> parse_task_argument(std::string_view task) noexcept;

/// Extracts `file` in a child process forked by a zygote of `self_exe`
/// (start_child, zygote.hpp) for the task pdf, docx or image, with `limits`
/// (plus RLIMIT_FSIZE=0 and RLIMIT_CORE=0), the file opened here and handed
/// over as its stdin, its answer on a pipe as stdout, stderr on /dev/null,
/// no other descriptor, and an environment of only
/// DOCFLOW_TEST_EXTRACTOR_FAULT, sanitizer options and OMP_THREAD_LIMIT=1. The child locks
/// itself down (lock_down()) before it parses. `heartbeat`, when set, is
/// called about four times a second while waiting; if it throws, the child is
/// killed and the exception propagates. Blocks: call it off the I/O threads.
/// Throws stage_error:
/// - the child's own structured failure (unreadable_document,
///   document_too_complex, sandbox_unavailable: permanent);
/// - storage_unavailable (transient) when `file` cannot be opened;
/// - extractor_timeout (transient) when the wall deadline passes;
/// - document_too_complex (permanent) when the answer exceeds max_output;
/// - extractor_crashed (transient) when the child dies by a signal (SIGSEGV,
///   SIGXCPU, SIGKILL, abort...), exits non-zero, answers garbage, or cannot
///   be started.
/// Unless ocr.mode is `never`, the first child looks for blank pages among
/// the first ocr.max_pages without text, up to the first one that draws
/// something. When `ocr` wants pages of a PDF or
/// an image read by OCR (pages_to_recognise on the first answer), a second
/// child does the whole
/// extraction again with those pages recognised (task ocr-pdf or ocr-image),
/// its CPU and wall-clock limits raised by ocr.page_cpu_seconds and
/// ocr.page_timeout per page: a document with a text layer costs no OCR.
/// `progress`, when set, hears {"ocr", 0, n} as that child starts and
/// {"ocr", k, n} after its k-th page; it may throw as heartbeat may.
extraction extract_in_child(const std::filesystem::path& self_exe, const std::filesystem::path& file,
                            core::file_kind kind, const sandbox_limits& limits,
                            const std::function<void()>& heartbeat = {}, const ocr_settings& ocr = {},
                            const progress_sink& progress = {});

/// is_docx (docx_probe.hpp) on `file`, in a child started and locked down as
/// for extract_in_child (task is-docx). A child that crashes, hangs or
/// answers nonsense has judged the file: false. Throws stage_error only when
/// the check could not be made: sandbox_unavailable (permanent, strict mode
/// on a kernel that lacks a mechanism), storage_unavailable or
/// extractor_crashed "could not be started" (transient). Blocks.
bool is_docx_in_child(const std::filesystem::path& self_exe, const std::filesystem::path& file,
                      const sandbox_limits& limits);

/// Reads up to `n` bytes from `offset` into `out`, fewer only at their end,
/// as blob_writer::read_at does; throws on failure. The pipeline names no
/// store: the caller binds one.
using byte_reader = std::function<std::size_t(std::uint64_t offset, char* out, std::size_t n)>;

/// The same check on `size` bytes that `read_at` gives: an upload not yet
/// committed, which need not be a file. The parent copies them, 256 KiB at a
/// time, into a sealed memfd (no write, grow or shrink) that becomes the
/// child's stdin, so the child maps it as it maps a stored file. A throwing
/// `read_at`, or bytes that end before `size`, is storage_unavailable
/// (transient); a memfd that cannot be made or filled, extractor_crashed.
/// Throws otherwise as the path form does. Blocks.
bool is_docx_in_child(const std::filesystem::path& self_exe, std::uint64_t size, const byte_reader& read_at,
                      const sandbox_limits& limits);

/// Starts a child that locks itself down and reports which mechanisms took
/// (task report): what every extraction on this machine gets. Throws
/// stage_error extractor_crashed when the child fails. Blocks.
sandbox_report check_sandbox(const std::filesystem::path& self_exe);

/// A resource limit as the child applies it.
struct rlimit_setting {
  int resource;
  rlimit value;
};

/// What one sandboxed child is asked: what `docflow extract --task T`
/// says on its command line and, for a child a zygote forks (zygote.hpp),
/// the limits it sets on itself and the pid its test faults take for the
/// parent's (the server's, not the zygote's).
struct child_request {
  child_task task = child_task::extract_pdf;
  bool strict = false;
  std::uint64_t max_text_bytes = 16ULL << 20;
  ocr_request ocr;
  std::vector<rlimit_setting> limits;
  pid_t parent = 0;  ///< 0: the process's parent
};

/// The child side: what `docflow extract --task T --sandbox M` runs. Closes
/// every inherited descriptor but 0-2, maps its input (stdin), loads what the
/// parsers would read from disk (prepare_extractors), locks itself down, then
/// does its task, writes one JSON answer to stdout and returns the process
/// exit code: 0 when an answer was written, 1 when stdout failed. In strict
/// mode with a mechanism missing, the answer is the failure
/// sandbox_unavailable and nothing is parsed. Never throws.
/// The extraction tasks obey the test-only DOCFLOW_TEST_EXTRACTOR_FAULT
/// (test_faults.hpp) instead of parsing.
int child_main(const child_request& request);

/// The child's answer on success:
/// {"ok":true,"pages":n|null,"text":"...","truncated":bool,"title":s|null,"author":s|null,
///  "created_ms":n|null,"analysis":{"chars":n,"words":n,"lines":n,"language":s (BCP 47, at most
///  35 bytes),"language_confidence":x (0 to 1),"keywords":[{"term":s,"count":n}...]},
///  "page_sources":[{"source":"text_layer"|"ocr"|"none","chars":n,"confidence":n|null,"blank":b}...],
///  "ocr":{"pages":n,"mean_confidence":x,"languages":[s...]}|null}
/// (created_ms: milliseconds since the Unix epoch). Invalid UTF-8 in any
/// string is replaced by U+FFFD so the answer is always valid JSON.
std::string encode_child_output(const extraction& e);

/// What an OCR child writes on stdout before its answer, once per page
/// read: "progress <pages_done> <pages_total>\n". The parse takes one line
/// without its '\n' and the number of pages the child was asked to read;
/// nullopt unless the line is exactly that form, with 0 < pages_done <=
/// pages_total == the pages asked for.
std::string encode_child_progress(unsigned pages_done, unsigned pages_total);
std::optional<unsigned> decode_child_progress(std::string_view line, unsigned pages_total);

/// The child's answer on a handled failure:
/// {"ok":false,"code":"...","message":"...","retryable":bool}.
std::string encode_child_failure(const core::failure& f);

/// Parses a child's answer: returns the extraction for "ok":true; throws the
/// child's stage_error for "ok":false when its code is one a child may
/// report (unreadable_document, document_too_complex, extractor_crashed,
/// sandbox_unavailable); throws stage_error extractor_crashed (transient)
/// for anything else: garbage, a wrong shape, an unknown code, trailing bytes.
extraction decode_child_output(std::string_view json);

/// The DOCX check's answer, {"ok":true,"docx":bool}, and its decoding, which
/// throws as decode_child_output does.
std::string encode_docx_check(bool docx);
bool decode_docx_check(std::string_view json);

/// The report task's answer, {"ok":true,"sandbox":{"no_new_privs":bool,
/// "namespaces":bool,"landlock_abi":n,"seccomp":bool,"seccomp_syscalls":n}},
/// and its decoding, which throws as decode_child_output does.
std::string encode_sandbox_report(const sandbox_report& r);
sandbox_report decode_sandbox_report(std::string_view json);

}  // namespace docflow::pipeline
