#include "api/file_checks.hpp"

#include "api/services.hpp"
#include "config/config.hpp"
#include "core/encoding.hpp"
#include "http/blocking_pool.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "pipeline/sandbox.hpp"

namespace docflow::api {

namespace {
constexpr std::size_t max_title_chars = 256;

core::error invalid_field(std::string field, std::string message) {
  return core::invalid_fields({{std::move(field), std::move(message)}});
}

core::error unsupported(std::string detail) {
  return {core::errc::unsupported_media_type, std::move(detail)};
}
}  // namespace

core::result<core::document> name_file(std::string_view filename, const std::optional<std::string>& title) {
  core::document d;
  d.filename = core::sanitize_filename(filename);
  if (d.filename.empty()) return invalid_field("file", "the file part needs a filename");
  if (title && (!core::is_plain_text(*title) || core::utf8_length(*title) > max_title_chars)) {
    return invalid_field("title", "must be at most 256 characters of text");
  }
  if (title && !title->empty()) d.title = *title;
  return d;
}

std::optional<core::error> size_problem(std::uint64_t size, std::uint64_t max) {
  if (size == 0) return invalid_field("file", "is empty");
  if (size > max) {
    return core::error{core::errc::too_large,
                       "The file exceeds the limit of " + std::to_string(max) + " bytes."};
  }
  return std::nullopt;
}

std::optional<core::error> kind_problem(core::document& d, std::optional<std::string_view> head) {
  const auto claimed = core::kind_from_extension(d.filename);
  if (!claimed) return unsupported("Only .pdf, .docx, .png, .jpg, .jpeg, .tif and .tiff files are accepted.");
  d.kind = *claimed;
  if (!head) return std::nullopt;
  const auto sniffed = core::sniff(*head);
  if (!sniffed) return unsupported("The file is not a PDF, DOCX, PNG, JPEG or TIFF file.");
  if (*sniffed != *claimed) return unsupported("The file's content does not match its extension.");
  return std::nullopt;
}

boost::asio::awaitable<std::optional<core::error>> docx_problem(services& s, const http::request& req,
                                                                const core::document& d,
                                                                const pipeline::byte_reader& read) {
  if (d.kind != core::file_kind::docx) co_return std::nullopt;
  // libzip reads what the client sent, so it runs in the sandboxed child,
  // never in this process; waiting for it blocks a pool thread, not an I/O one.
  const auto limits = pipeline::docx_check_limits(s.cfg.sandbox_strict);
  try {
    const bool docx = co_await s.blocking.run([&s, &d, &read, &limits] {
      return pipeline::is_docx_in_child(s.self_exe, d.size_bytes, read, limits);
    });
    if (!docx) co_return unsupported("The file is a ZIP archive but not a DOCX document.");
  } catch (const pipeline::stage_error& e) {
    // The check could not be made (strict mode without the full sandbox, or
    // no child could be started): not the file's fault.
    obs::log(obs::level::error, "document.check_failed",
             {{"request_id", req.request_id}, {"code", e.failure().code}, {"error", e.failure().message}});
    co_return core::error(core::errc::unavailable, "DOCX files cannot be checked at the moment.");
  }
  co_return std::nullopt;
}

void announce_upload(services& s, const http::request& req, const core::document& d) {
  s.metrics.add("docflow_upload_bytes_total", "", static_cast<double>(d.size_bytes));
  obs::log(obs::level::info, "document.uploaded",
           {{"request_id", req.request_id},
            {"document_id", d.id},
            {"user_id", d.owner_id},
            {"size_bytes", d.size_bytes},
            {"sha256", d.sha256},
            {"content_type", core::content_type(d.kind)}});
}

}  // namespace docflow::api
