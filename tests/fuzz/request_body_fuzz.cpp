// libFuzzer target for reading request bodies (src/api/request_body.cpp):
// media_type, json_object_body, form_body and required_string, which every
// JSON or form endpoint (register, login, refresh, process...) runs on bytes
// a client chose.
//
// Input: the Content-Type value up to the first '\n' (no '\n': no
// Content-Type field at all), then the body. Checks, besides no crash, no
// sanitizer report and no exception:
// - media_type is lowercase, parameter-free and trimmed, and ignores case;
// - json_object_body answers 415 for any other media type, 400 exactly when
//   the body is not JSON, 422 when it is JSON but not an object, and
//   otherwise exactly the object Boost.JSON parses;
// - required_string yields the member exactly when it is a string, and
//   records one field error otherwise;
// - form_body, when it decodes the body, agrees with a plain reading of
//   application/x-www-form-urlencoded ('&' and '=' split, %XX and '+'
//   decoded, the first value of a name wins), and refuses any body with a
//   broken %-escape.
// See tests/fuzz/README.md.
// fuzz-link: docflow_api docflow_core Boost::json
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "api/request_body.hpp"
#include "fuzz_input.hpp"

namespace {

using docflow::fuzz::check;
using form = std::map<std::string, std::string, std::less<>>;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX and '+' decoded; nullopt for a '%' without two hex digits.
std::optional<std::string> form_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_digit(s[i + 1]);
      const int lo = hex_digit(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The plain reading of a form body; nullopt when an escape is broken. An
// empty body has no fields (as Boost.URL reads an empty query).
std::optional<form> reference_form(std::string_view body) {
  form out;
  if (body.empty()) return out;
  for (;;) {
    const auto amp = body.find('&');
    const auto pair = body.substr(0, amp);
    const auto eq = pair.find('=');
    auto key = form_decode(pair.substr(0, eq));
    auto value = form_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    if (!key || !value) return std::nullopt;
    out.emplace(std::move(*key), std::move(*value));
    if (amp == std::string_view::npos) return out;
    body.remove_prefix(amp + 1);
  }
}

bool has_upper(std::string_view s) {
  for (const char c : s) {
    if (c >= 'A' && c <= 'Z') return true;
  }
  return false;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  }
  return out;
}

void check_required_string(const boost::json::object& o, std::string_view name) {
  std::vector<docflow::core::field_error> errors;
  const auto got = docflow::api::required_string(o, name, errors);
  const auto* member = o.if_contains(name);
  if (member && member->is_string()) {
    check(got && *got == std::string_view(member->get_string()), "required_string lost a string member");
    check(errors.empty(), "required_string recorded an error for a string member");
  } else {
    check(!got, "required_string yielded a missing or non-string member");
    check(errors.size() == 1 && errors[0].field == name, "required_string recorded no (or the wrong) error");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  docflow::fuzz::input in(data, size);
  docflow::http::request req;
  if (all.find('\n') != std::string_view::npos) {
    req.fields.add("Content-Type", std::string(in.until('\n')));
  }
  req.body = std::string(in.rest());

  // media_type
  const auto type = docflow::api::media_type(req);
  check(!has_upper(type), "media_type kept upper case");
  check(type.find(';') == std::string::npos, "media_type kept a parameter");
  check(type.empty() ||
            (type.front() != ' ' && type.front() != '\t' && type.back() != ' ' && type.back() != '\t'),
        "media_type kept surrounding whitespace");
  if (const auto value = req.fields.get("Content-Type")) {
    docflow::http::request shouting;
    shouting.fields.add("content-type", upper(*value));
    check(docflow::api::media_type(shouting) == type, "media_type depends on case");
  }

  // json_object_body
  boost::json::error_code ec;
  const auto parsed = boost::json::parse(req.body, ec);
  auto body = docflow::api::json_object_body(req);
  using docflow::core::errc;
  if (type != "application/json") {
    check(!body && body.error().code == errc::unsupported_media_type,
          "a body that is not application/json was not a 415");
  } else if (ec) {
    check(!body && body.error().code == errc::invalid_request, "a body that is not JSON was not a 400");
  } else if (!parsed.is_object()) {
    check(!body && body.error().code == errc::invalid_fields && body.error().fields.size() == 1 &&
              body.error().fields[0].field == "body",
          "JSON that is not an object was not a 422 about the body");
  } else {
    const auto* o = body ? &*body : nullptr;
    // Compared as text: Boost.JSON 1.81 reads 0e400 as NaN, which equals nothing.
    check(o && boost::json::serialize(*o) == boost::json::serialize(parsed),
          "json_object_body changed the object");
    check_required_string(*o, "username");
    check_required_string(*o, "password");
    check_required_string(*o, "refresh_token");
    if (!o->empty()) check_required_string(*o, o->begin()->key());
  }

  // form_body (read_credentials takes it for application/x-www-form-urlencoded)
  const auto fields = docflow::api::form_body(req);
  const auto expected = reference_form(req.body);
  if (fields) {
    check(expected.has_value(), "form_body decoded a body with a broken escape");
    check(*fields == *expected, "form_body disagrees with the plain reading of the form");
  } else {
    check(fields.error().code == errc::invalid_request, "a form body that does not decode was not a 400");
  }
  return 0;
}
