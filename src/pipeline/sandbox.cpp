#include "pipeline/sandbox.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/encoding.hpp"
#include "pipeline/analyze.hpp"
#include "pipeline/docx_probe.hpp"
#include "pipeline/extract.hpp"
#include "pipeline/test_faults.hpp"
#include "pipeline/zygote.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

extern char** environ;

namespace docflow::pipeline {

namespace {

[[noreturn]] void crashed(std::string message) {
  throw stage_error(core::failure{core::errc::extractor_crashed, std::move(message), true});
}

// ---------------------------------------------------------------------------
// The protocol

// Boost.JSON writes string bytes as they are and its parser rejects invalid
// UTF-8, so an unlucky PDF string would turn a good extraction into garbage.
std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    if (const auto n = core::utf8_sequence_length(s, i)) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

boost::json::value optional_string(const std::optional<std::string>& s) {
  if (!s) return nullptr;
  return boost::json::value(valid_utf8(*s));
}

// Only the outcomes a child can meet; a child claiming any other code (say,
// checksum_mismatch) is not to be believed.
bool child_may_report(std::string_view code) {
  const auto known = core::parse_errc(code);
  return known == core::errc::unreadable_document || known == core::errc::document_too_complex ||
         known == core::errc::extractor_crashed || known == core::errc::sandbox_unavailable;
}

// A message for the document's owner: keep it short, cut on a character.
std::string bounded_message(std::string_view m) {
  constexpr std::size_t max = 512;
  if (m.size() <= max) return std::string(m);
  auto cut = max;
  while (cut > 0 && (static_cast<unsigned char>(m[cut]) & 0xC0) == 0x80) --cut;
  return std::string(m.substr(0, cut));
}

const boost::json::value& member(const boost::json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  if (!v) crashed("the extractor answered without " + std::string(key));
  return *v;
}

std::optional<std::string> decode_optional_string(const boost::json::object& o, const char* key) {
  const auto& v = member(o, key);
  if (v.is_null()) return std::nullopt;
  if (!v.is_string()) crashed("the extractor answered a bad " + std::string(key));
  return std::string(v.get_string());
}

std::optional<std::int64_t> decode_optional_int(const boost::json::object& o, const char* key) {
  const auto& v = member(o, key);
  if (v.is_null()) return std::nullopt;
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() &&
      v.get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return static_cast<std::int64_t>(v.get_uint64());
  }
  crashed("the extractor answered a bad " + std::string(key));
}

bool decode_bool(const boost::json::object& o, const char* key) {
  const auto& v = member(o, key);
  if (!v.is_bool()) crashed("the extractor answered a bad " + std::string(key));
  return v.get_bool();
}

std::uint64_t decode_count(const boost::json::object& o, const char* key) {
  const auto n = decode_optional_int(o, key);
  if (!n || *n < 0) crashed("the extractor answered a bad " + std::string(key));
  return static_cast<std::uint64_t>(*n);
}

// A number in [0, 1]; JSON has one kind of number, so 0 and 1 may come as integers.
double decode_fraction(const boost::json::object& o, const char* key) {
  const auto& v = member(o, key);
  double x = -1;
  if (v.is_double()) x = v.get_double();
  if (v.is_int64()) x = static_cast<double>(v.get_int64());
  if (v.is_uint64()) x = static_cast<double>(v.get_uint64());
  if (!(x >= 0 && x <= 1)) crashed("the extractor answered a bad " + std::string(key));
  return x;
}

// Every answer is one JSON object with "ok". Returns it when "ok" is true;
// throws the child's own failure when it is false (and a child may report
// it), extractor_crashed for anything else.
boost::json::object parse_answer(std::string_view json) {
  boost::system::error_code ec;
  auto value = boost::json::parse(json, ec);
  if (ec || !value.is_object()) crashed("the extractor answered garbage");
  auto& o = value.get_object();
  const auto& ok = member(o, "ok");
  if (!ok.is_bool()) crashed("the extractor answered garbage");
  if (!ok.get_bool()) {
    const auto& code = member(o, "code");
    const auto& message = member(o, "message");
    const auto& retryable = member(o, "retryable");
    if (!code.is_string() || !message.is_string() || !retryable.is_bool() ||
        !child_may_report(code.get_string())) {
      crashed("the extractor answered garbage");
    }
    throw stage_error(core::failure{std::string(code.get_string()), bounded_message(message.get_string()),
                                    retryable.get_bool()});
  }
  return std::move(o);
}

// ---------------------------------------------------------------------------
// The child process, as the parent starts it

// Limits as the child applies them: never above the current hard limit,
// which an unprivileged process cannot raise.
rlimit_setting clamp(int resource, rlim_t value) {
  rlimit current{};
  getrlimit(resource, &current);
  const auto v = current.rlim_max == RLIM_INFINITY ? value : std::min(value, current.rlim_max);
  return {resource, {v, v}};
}

std::vector<rlimit_setting> child_limits(const sandbox_limits& limits) {
  std::vector<rlimit_setting> out;
  // 0 in sanitizer builds (default_address_space).
  if (limits.address_space > 0) out.push_back(clamp(RLIMIT_AS, limits.address_space));
  // Soft limit sends SIGXCPU; the hard limit a second later sends SIGKILL.
  auto cpu = clamp(RLIMIT_CPU, limits.cpu_seconds);
  cpu.value.rlim_max = cpu.value.rlim_cur + 1;
  rlimit current{};
  getrlimit(RLIMIT_CPU, &current);
  if (current.rlim_max != RLIM_INFINITY) cpu.value.rlim_max = std::min(cpu.value.rlim_max, current.rlim_max);
  out.push_back(cpu);
  out.push_back(clamp(RLIMIT_NOFILE, limits.open_files));
#if !defined(__SANITIZE_THREAD__)
  // The extractor writes no files. TSan's runtime does, as the process starts
  // (/tmp/tsan.rodata.<pid>), and would die of SIGXFSZ: in TSan builds the
  // child sets this limit itself, in lock_down(), before it parses.
  out.push_back({RLIMIT_FSIZE, {0, 0}});
#endif
  out.push_back({RLIMIT_CORE, {0, 0}});  // a crash must not drop the document's bytes in a core file
  return out;
}

// The variables a child may see: the test switch and sanitizer options.
// Everything else (secrets, database URLs) stays with the parent.
bool passed_to_child(std::string_view entry) {
  for (const std::string_view name : {"DOCFLOW_TEST_EXTRACTOR_FAULT=", "ASAN_OPTIONS=", "UBSAN_OPTIONS=",
                                      "LSAN_OPTIONS=", "TSAN_OPTIONS="}) {
    if (entry.starts_with(name)) return true;
  }
  return false;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    if (sig == SIGXCPU || sig == SIGKILL) return "the extractor was stopped by a resource limit";
    return "the extractor crashed (signal " + std::to_string(sig) + ")";
  }
  return "the extractor failed (exit code " + std::to_string(WEXITSTATUS(status)) + ")";
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const auto n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

[[noreturn]] void unreadable() {
  throw stage_error(
      core::failure{core::errc::storage_unavailable, "the stored file could not be read", true});
}

// The parent opens the stored file; the child gets only the descriptor, as
// its stdin, and never opens a path.
unique_fd open_input(const std::filesystem::path& file) {
  unique_fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) unreadable();
  return fd;
}

// memfd_create's flag (Linux 6.3) for a file that can never be made
// executable; bookworm's headers (6.1) stop before it.
constexpr unsigned memfd_noexec_seal = 0x0008U;

// The bytes `read_at` gives, copied into a sealed memfd: a regular file the
// child can fstat and map like a stored one, which neither side can change
// once sealed. The copy goes through a bounded buffer, never the whole file.
unique_fd sealed_copy(std::uint64_t size, const byte_reader& read_at) {
  constexpr unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  int raw = ::memfd_create("docflow-input", flags | memfd_noexec_seal);
  if (raw < 0 && errno == EINVAL) raw = ::memfd_create("docflow-input", flags);  // before Linux 6.3
  unique_fd fd(raw);
  if (fd.get() < 0) crashed("the extractor's input could not be prepared");
  constexpr std::size_t chunk = 256 * 1024;
  const auto buffer = std::make_unique<char[]>(chunk);
  for (std::uint64_t at = 0; at < size;) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, size - at));
    std::size_t got = 0;
    try {
      got = read_at(at, buffer.get(), want);
    } catch (const std::exception&) {
      unreadable();  // whatever the reader's own error: this layer knows no store
    }
    if (got == 0 || got > want) unreadable();  // the bytes ended before `size`
    if (!write_all(fd.get(), std::string_view(buffer.get(), got))) {
      crashed("the extractor's input could not be prepared");
    }
    at += got;
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    crashed("the extractor's input could not be prepared");
  }
  return fd;
}

// How a child's run ended, as far as the parent saw it.
struct child_run {
  enum class ending { exited, timed_out, too_much_output };
  ending how = ending::exited;
  int status = 0;  // the wait status, when exited
  std::string output;
};

// The environment of a child (and of the zygote that forks it).
std::vector<std::string> child_environment() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    if (passed_to_child(*e)) env.emplace_back(*e);
  }
  // Tesseract's OpenMP would start threads, which the sandbox forbids (the
  // runtime aborts when it cannot); one thread per child is the plan anyway.
  env.emplace_back("OMP_THREAD_LIMIT=1");
  return env;
}

// Runs a child for `task` with `input` as its stdin (-1: /dev/null),
// forked by a zygote (start_child), and collects its answer within
// `limits`; the child is killed and reaped on every way out. Throws
// stage_error extractor_crashed when it cannot be started, and whatever
// `heartbeat` and `pages_read` throw.
child_run run_child(const std::filesystem::path& self_exe, child_task task, int input,
                    const sandbox_limits& limits, const std::function<void()>& heartbeat,
                    const ocr_request* ocr = nullptr, const std::function<void(unsigned)>& pages_read = {}) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto deadline = start + limits.wall;

  child_request request{
      task,      limits.strict, limits.max_text_bytes, ocr ? *ocr : ocr_request{}, child_limits(limits),
      ::getpid()};
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) crashed("the extractor could not be started");
  unique_fd read_end(pipe_fds[0]);
  unique_fd write_end(pipe_fds[1]);
  unique_fd null_fd;
  if (input < 0) {
    null_fd = unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (null_fd.get() < 0) crashed("the extractor could not be started");
  }
  auto child = start_child(self_exe, child_environment(), request, input >= 0 ? input : null_fd.get(),
                           write_end.get());
  write_end.reset();  // else the pipe never reports end of file
  null_fd.reset();

  child_run run;
  // Four a second: what a heartbeat flushes (progress) is seen that soon.
  constexpr auto beat_every = std::chrono::milliseconds(250);
  auto next_beat = start + beat_every;
  char buffer[64 * 1024];
  for (;;) {
    const auto now = clock::now();
    if (now >= deadline) {
      child.kill();
      run.how = child_run::ending::timed_out;
      return run;
    }
    if (now >= next_beat) {
      if (heartbeat) heartbeat();  // may throw: the started_child guard kills the child
      next_beat = now + beat_every;
    }
    // Both are in the future here, so poll never gets a negative (infinite) timeout.
    const auto wait = std::min(deadline - now, next_beat - now);
    pollfd p{read_end.get(), POLLIN, 0};
    const int ready =
        ::poll(&p, 1, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(wait).count()));
    if (ready < 0 && errno != EINTR) crashed("waiting for the extractor failed");
    if (ready <= 0) continue;
    const auto n = ::read(read_end.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      crashed("reading the extractor's answer failed");
    }
    if (n == 0) break;
    run.output.append(buffer, static_cast<std::size_t>(n));
    if (run.output.size() > limits.max_output) {
      child.kill();
      run.how = child_run::ending::too_much_output;
      return run;
    }
    // An OCR child's progress lines come before its answer. One that does
    // not parse stays, and spoils the answer: the child is not believed.
    const auto ocr_pages = ocr ? static_cast<unsigned>(ocr->pages.size()) : 0U;
    while (run.output.starts_with("progress ")) {
      const auto end = run.output.find('\n');
      if (end == std::string::npos) break;
      const auto done = decode_child_progress(std::string_view(run.output).substr(0, end), ocr_pages);
      if (!done) break;
      run.output.erase(0, end + 1);
      if (pages_read) pages_read(*done);  // may throw, as heartbeat may
    }
  }

  // Stdout is closed; the child should be exiting. It still gets only the
  // rest of the wall time.
  const auto status = child.wait_until(deadline);
  if (!status) {
    child.kill();
    run.how = child_run::ending::timed_out;
    return run;
  }
  run.status = *status;
  return run;
}

bool exited_cleanly(const child_run& run) {
  return run.how == child_run::ending::exited && WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0;
}

// The DOCX check on `input`: a child that crashes, hangs or answers nonsense
// has judged the file, except that the sandbox it needed was missing.
bool check_docx(const std::filesystem::path& self_exe, int input, const sandbox_limits& limits) {
  const auto run = run_child(self_exe, child_task::check_docx, input, limits, {});
  if (!exited_cleanly(run)) return false;
  try {
    return decode_docx_check(run.output);
  } catch (const stage_error& e) {
    if (e.failure().is(core::errc::sandbox_unavailable)) throw;
    return false;
  }
}

// ---------------------------------------------------------------------------
// The child process, from the inside

// The document: stdin, the stored file the parent opened, mapped read-only.
// The mapping lives as long as the process, which gives one answer and ends.
std::string_view map_input() {
  struct stat st {};
  if (::fstat(0, &st) != 0 || !S_ISREG(st.st_mode)) crashed("the extractor's input is not a file");
  if (st.st_size == 0) return {};
  const auto size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, 0, 0);
  if (p == MAP_FAILED) {
    if (errno == ENOMEM) {  // over RLIMIT_AS
      throw stage_error(core::failure{core::errc::document_too_complex,
                                      "the document needs more memory than extraction allows", false});
    }
    crashed("the extractor could not read its input");
  }
  return {static_cast<const char*>(p), size};
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// Everything that needs a file (the input, the parsers' own data) is done
// before lock_down(); everything that reads the document's bytes after it.
// Analyses the whole text, then cuts it to the limit on a character boundary.
void finish_extraction(extraction& e, std::uint64_t max_text_bytes) {
  e.analysis = analyze(e.text);
  if (e.text.size() <= max_text_bytes) return;
  auto cut = static_cast<std::size_t>(max_text_bytes);
  while (cut > 0 && (static_cast<unsigned char>(e.text[cut]) & 0xC0) == 0x80) --cut;
  e.text.resize(cut);
  e.truncated = true;
}

std::string run_task(child_task task, bool strict, std::uint64_t max_text_bytes, const ocr_request& ocr,
                     pid_t parent) {
  const auto input = task == child_task::report_sandbox ? std::string_view() : map_input();
  prepare_extractors();
  // The OCR libraries and Tesseract's language data are read now; the
  // document's pages after.
  std::unique_ptr<ocr_engine> engine;
  if (task == child_task::extract_image) load_ocr();
  if (task == child_task::ocr_pdf || task == child_task::ocr_image) {
    engine = std::make_unique<ocr_engine>(ocr.languages);
    // A failed write fails the answer's too, which the parent sees.
    engine->on_page_read([total = static_cast<unsigned>(ocr.pages.size())](unsigned done) {
      write_all(1, encode_child_progress(done, total));
    });
  }
#if defined(__SANITIZE_ADDRESS__)
  // LeakSanitizer's check at exit stops the process with a tracer thread
  // (mprotect, clone, ptrace), which the seccomp filter refuses: every child
  // would end in a CHECK failure and exit code 1. So it runs here, while it
  // can, and not again at exit. What the parsers allocate after this point
  // is leak-checked by the unit tests, which also run them in-process.
  __lsan_do_leak_check();
#endif
  const auto report = lock_down();
  if (task == child_task::report_sandbox) return encode_sandbox_report(report);
  if (const auto missing = report.missing(); strict && !missing.empty()) {
    return encode_child_failure(
        {core::errc::sandbox_unavailable,
         "this server is set to parse documents only in its full sandbox, which it lacks (missing: " +
             join(missing) + ")",
         false});
  }
  if (task == child_task::check_docx) return encode_docx_check(is_docx(input));
  // The one environment read outside configuration: a test-only switch that
  // exists in the child process alone (test_faults.hpp).
  extraction e;
  if (const char* fault = std::getenv("DOCFLOW_TEST_EXTRACTOR_FAULT"); fault && *fault) {
    e.text = run_test_fault(fault, parent);
  } else {
    switch (task) {
      case child_task::extract_pdf: e = extract_pdf(input, nullptr, {}, 0, ocr.blank_checks); break;
      case child_task::extract_docx: e = extract_docx(input); break;
      case child_task::extract_image: e = extract_image(input); break;
      case child_task::ocr_pdf: e = extract_pdf(input, engine.get(), ocr.pages, ocr.dpi); break;
      case child_task::ocr_image: e = extract_image(input, engine.get(), ocr.pages); break;
      case child_task::check_docx:
      case child_task::report_sandbox: break;  // answered above
    }
  }
  finish_extraction(e, max_text_bytes);
  return encode_child_output(e);
}

}  // namespace

sandbox_limits docx_check_limits(bool strict) {
  sandbox_limits l;
  l.cpu_seconds = 5;
  l.wall = std::chrono::seconds(10);
  l.max_output = 4096;
  l.strict = strict;
  return l;
}

const char* task_argument(child_task task) noexcept {
  switch (task) {
    case child_task::extract_pdf: return "pdf";
    case child_task::extract_docx: return "docx";
    case child_task::extract_image: return "image";
    case child_task::ocr_pdf: return "ocr-pdf";
    case child_task::ocr_image: return "ocr-image";
    case child_task::check_docx: return "is-docx";
    case child_task::report_sandbox: return "report";
  }
  return "";
}

std::optional<child_task> parse_task_argument(std::string_view task) noexcept {
  for (const auto t :
       {child_task::extract_pdf, child_task::extract_docx, child_task::extract_image, child_task::ocr_pdf,
        child_task::ocr_image, child_task::check_docx, child_task::report_sandbox}) {
    if (task == task_argument(t)) return t;
  }
  return std::nullopt;
}

std::string format_page_list(const std::vector<int>& pages) {
  std::string out;
  for (const int p : pages) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out;
}

std::optional<std::vector<int>> parse_page_list(std::string_view list) {
  std::vector<int> pages;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const auto item = list.substr(0, comma);
    int page = -1;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), page);
    if (ec != std::errc{} || end != item.data() + item.size() || page < 0) return std::nullopt;
    if (!pages.empty() && page <= pages.back()) return std::nullopt;
    pages.push_back(page);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
    if (list.empty()) return std::nullopt;  // a trailing comma
  }
  return pages;
}

std::string encode_child_output(const extraction& e) {
  boost::json::object o;
  o["ok"] = true;
  o["pages"] = e.pages ? boost::json::value(*e.pages) : boost::json::value(nullptr);
  o["text"] = valid_utf8(e.text);
  o["truncated"] = e.truncated;
  o["title"] = optional_string(e.metadata.title);
  o["author"] = optional_string(e.metadata.author);
  if (e.metadata.created) {
    o["created_ms"] =
        std::chrono::duration_cast<std::chrono::milliseconds>(e.metadata.created->time_since_epoch()).count();
  } else {
    o["created_ms"] = nullptr;
  }
  boost::json::array keywords;
  for (const auto& k : e.analysis.keywords) {
    keywords.push_back(boost::json::object{{"term", valid_utf8(k.term)}, {"count", k.count}});
  }
  o["analysis"] = boost::json::object{{"chars", e.analysis.char_count},
                                      {"words", e.analysis.word_count},
                                      {"lines", e.analysis.line_count},
                                      {"language", valid_utf8(e.analysis.language)},
                                      {"language_confidence", e.analysis.language_confidence},
                                      {"keywords", std::move(keywords)}};
  o["page_sources"] = page_sources_json(e.per_page);
  o["ocr"] = ocr_json(e.ocr);
  return boost::json::serialize(o);
}

std::string encode_child_progress(unsigned pages_done, unsigned pages_total) {
  return "progress " + std::to_string(pages_done) + ' ' + std::to_string(pages_total) + '\n';
}

std::optional<unsigned> decode_child_progress(std::string_view line, unsigned pages_total) {
  constexpr std::string_view prefix = "progress ";
  if (!line.starts_with(prefix) || pages_total == 0) return std::nullopt;
  line.remove_prefix(prefix.size());
  unsigned done = 0;
  unsigned total = 0;
  const auto* end = line.data() + line.size();
  const auto first = std::from_chars(line.data(), end, done);
  if (first.ec != std::errc() || first.ptr == end || *first.ptr != ' ') return std::nullopt;
  const auto second = std::from_chars(first.ptr + 1, end, total);
  if (second.ec != std::errc() || second.ptr != end) return std::nullopt;
  if (total != pages_total || done == 0 || done > total) return std::nullopt;
  return done;
}

std::string encode_child_failure(const core::failure& f) {
  boost::json::object o;
  o["ok"] = false;
  o["code"] = valid_utf8(f.code);
  o["message"] = valid_utf8(f.message);
  o["retryable"] = f.retryable;
  return boost::json::serialize(o);
}

extraction decode_child_output(std::string_view json) {
  const auto o = parse_answer(json);
  extraction e;
  if (const auto pages = decode_optional_int(o, "pages")) {
    if (*pages < 0 || *pages > std::numeric_limits<int>::max()) crashed("the extractor answered a bad pages");
    e.pages = static_cast<int>(*pages);
  }
  const auto& text = member(o, "text");
  if (!text.is_string()) crashed("the extractor answered a bad text");
  e.text = std::string(text.get_string());
  e.truncated = decode_bool(o, "truncated");
  e.metadata.title = decode_optional_string(o, "title");
  e.metadata.author = decode_optional_string(o, "author");
  if (const auto ms = decode_optional_int(o, "created_ms")) {
    e.metadata.created = core::from_unix_ms(*ms);
    if (!e.metadata.created) crashed("the extractor answered a bad created_ms");
  }
  const auto* a = member(o, "analysis").if_object();
  if (!a) crashed("the extractor answered a bad analysis");
  e.analysis.char_count = decode_count(*a, "chars");
  e.analysis.word_count = decode_count(*a, "words");
  e.analysis.line_count = decode_count(*a, "lines");
  const auto language = decode_optional_string(*a, "language");
  // 35: the longest BCP 47 tag a conforming reader must accept (RFC 5646, 4.4.1).
  if (!language || language->size() > 35) crashed("the extractor answered a bad language");
  e.analysis.language = *language;
  e.analysis.language_confidence = decode_fraction(*a, "language_confidence");
  const auto* keywords = member(*a, "keywords").if_array();
  if (!keywords || keywords->size() > 10) crashed("the extractor answered bad keywords");
  for (const auto& k : *keywords) {
    const auto* kw = k.if_object();
    if (!kw) crashed("the extractor answered bad keywords");
    const auto term = decode_optional_string(*kw, "term");
    if (!term || term->size() > 256) crashed("the extractor answered bad keywords");
    e.analysis.keywords.push_back({*term, decode_count(*kw, "count")});
  }
  const auto* pages = member(o, "page_sources").if_array();
  if (!pages || pages->size() > static_cast<std::size_t>(e.pages.value_or(0))) {
    crashed("the extractor answered a bad page_sources");
  }
  for (const auto& p : *pages) {
    const auto* page = p.if_object();
    if (!page) crashed("the extractor answered a bad page_sources");
    const auto* name = member(*page, "source").if_string();
    const auto source = name ? parse_page_source(*name) : std::nullopt;
    const auto confidence = decode_optional_int(*page, "confidence");
    const auto* blank = member(*page, "blank").if_bool();
    if (!source || !blank || (confidence && (*confidence < 0 || *confidence > 100))) {
      crashed("the extractor answered a bad page_sources");
    }
    page_info info;
    info.source = *source;
    info.chars = decode_count(*page, "chars");
    if (confidence) info.confidence = static_cast<int>(*confidence);
    info.blank = *blank;
    e.per_page.push_back(info);
  }
  const auto& ocr = member(o, "ocr");
  if (!ocr.is_null()) {
    const auto* summary = ocr.if_object();
    if (!summary) crashed("the extractor answered a bad ocr");
    ocr_summary s;
    s.pages = static_cast<int>(std::min<std::uint64_t>(decode_count(*summary, "pages"), e.per_page.size()));
    const auto* mean = member(*summary, "mean_confidence").if_double();
    const auto* languages = member(*summary, "languages").if_array();
    if (!mean || *mean < 0 || *mean > 100 || !languages || languages->size() > 64) {
      crashed("the extractor answered a bad ocr");
    }
    s.mean_confidence = *mean;
    for (const auto& l : *languages) {
      if (!l.is_string() || l.get_string().size() > 64) crashed("the extractor answered a bad ocr");
      s.languages.emplace_back(l.get_string());
    }
    e.ocr = std::move(s);
  }
  return e;
}

std::string encode_docx_check(bool docx) {
  return boost::json::serialize(boost::json::object{{"ok", true}, {"docx", docx}});
}

bool decode_docx_check(std::string_view json) { return decode_bool(parse_answer(json), "docx"); }

std::string encode_sandbox_report(const sandbox_report& r) {
  const boost::json::object sandbox{{"no_new_privs", r.no_new_privs},
                                    {"namespaces", r.namespaces},
                                    {"landlock_abi", r.landlock_abi},
                                    {"seccomp", r.seccomp},
                                    {"seccomp_syscalls", r.seccomp_syscalls}};
  return boost::json::serialize(boost::json::object{{"ok", true}, {"sandbox", sandbox}});
}

sandbox_report decode_sandbox_report(std::string_view json) {
  const auto answer = parse_answer(json);
  const auto& sandbox = member(answer, "sandbox");
  if (!sandbox.is_object()) crashed("the extractor answered a bad sandbox");
  const auto& o = sandbox.get_object();
  sandbox_report r;
  r.no_new_privs = decode_bool(o, "no_new_privs");
  r.namespaces = decode_bool(o, "namespaces");
  const auto abi = decode_count(o, "landlock_abi");
  if (abi > 1000) crashed("the extractor answered a bad landlock_abi");
  r.landlock_abi = static_cast<int>(abi);
  r.seccomp = decode_bool(o, "seccomp");
  r.seccomp_syscalls = decode_count(o, "seccomp_syscalls");
  return r;
}

int child_main(const child_request& request) {
  close_inherited_descriptors();
  // For the test faults: the sandbox hides it later.
  const pid_t parent = request.parent != 0 ? request.parent : ::getppid();
  std::string answer;
  try {
    try {
      answer = run_task(request.task, request.strict, request.max_text_bytes, request.ocr, parent);
    } catch (const stage_error& e) {
      answer = encode_child_failure(e.failure());
    } catch (const std::bad_alloc&) {
      // Under RLIMIT_AS this is deterministic: the same file fails the same way.
      answer = encode_child_failure(
          {core::errc::document_too_complex, "the document needs more memory than extraction allows", false});
    } catch (...) {
      answer = encode_child_failure({core::errc::extractor_crashed, "the extractor failed", true});
    }
  } catch (...) {
    return 1;  // not even the failure could be encoded: the parent reports a crash
  }
  return write_all(1, answer) ? 0 : 1;
}

namespace {

extraction extract(const std::filesystem::path& self_exe, int input, child_task task,
                   const sandbox_limits& limits, const std::function<void()>& heartbeat,
                   const ocr_request* ocr, const std::function<void(unsigned)>& pages_read = {}) {
  const auto run = run_child(self_exe, task, input, limits, heartbeat, ocr, pages_read);
  if (run.how == child_run::ending::timed_out) {
    throw stage_error(core::failure{core::errc::extractor_timeout, "extraction took too long", true});
  }
  if (run.how == child_run::ending::too_much_output) {
    throw stage_error(
        core::failure{core::errc::document_too_complex, "the document's text is too large", false});
  }
  if (WIFEXITED(run.status) && WEXITSTATUS(run.status) != 0 && !run.output.empty()) {
    // A non-zero exit that still explains itself keeps its explanation.
    try {
      decode_child_output(run.output);
    } catch (const stage_error& e) {
      if (!e.failure().is(core::errc::extractor_crashed)) throw;
    }
  }
  if (!exited_cleanly(run)) crashed(describe_status(run.status));
  return decode_child_output(run.output);
}

}  // namespace

extraction extract_in_child(const std::filesystem::path& self_exe, const std::filesystem::path& file,
                            core::file_kind kind, const sandbox_limits& limits,
                            const std::function<void()>& heartbeat, const ocr_settings& ocr,
                            const progress_sink& progress) {
  const auto input = open_input(file);
  const bool pdf = kind == core::file_kind::pdf;
  const auto task = pdf                    ? child_task::extract_pdf
                    : core::is_image(kind) ? child_task::extract_image
                                           : child_task::extract_docx;
  ocr_request first_pass;
  first_pass.blank_checks = pdf && ocr.mode != ocr_mode::never ? ocr.max_pages : 0;
  auto first = extract(self_exe, input.get(), task, limits, heartbeat, &first_pass);
  const auto pages = pages_to_recognise(first, ocr);
  if (pages.empty()) return first;
  // The child maps its input, so the same descriptor serves again.
  auto raised = limits;
  raised.cpu_seconds += ocr.page_cpu_seconds * static_cast<unsigned>(pages.size());
  raised.wall += std::chrono::duration_cast<std::chrono::milliseconds>(ocr.page_timeout) *
                 static_cast<long>(pages.size());
  const ocr_request request{ocr.languages, ocr.dpi, pages};
  const auto total = static_cast<unsigned>(pages.size());
  const auto report = [&progress, total](unsigned done) {
    if (progress) progress({"ocr", done, total});
  };
  report(0);
  auto second = extract(self_exe, input.get(), pdf ? child_task::ocr_pdf : child_task::ocr_image, raised,
                        heartbeat, &request, report);
  // The second child looks for no blank page; the first one's findings stand.
  for (std::size_t i = 0; i < std::min(first.per_page.size(), second.per_page.size()); ++i) {
    second.per_page[i].blank = first.per_page[i].blank;
  }
  return second;
}

bool is_docx_in_child(const std::filesystem::path& self_exe, const std::filesystem::path& file,
                      const sandbox_limits& limits) {
  const auto input = open_input(file);
  return check_docx(self_exe, input.get(), limits);
}

bool is_docx_in_child(const std::filesystem::path& self_exe, std::uint64_t size, const byte_reader& read_at,
                      const sandbox_limits& limits) {
  const auto input = sealed_copy(size, read_at);
  return check_docx(self_exe, input.get(), limits);
}

sandbox_report check_sandbox(const std::filesystem::path& self_exe) {
  const auto run = run_child(self_exe, child_task::report_sandbox, -1, docx_check_limits(false), {});
  if (run.how == child_run::ending::timed_out) crashed("the sandbox check took too long");
  if (!exited_cleanly(run)) crashed(describe_status(run.status));
  return decode_sandbox_report(run.output);
}

}  // namespace docflow::pipeline
