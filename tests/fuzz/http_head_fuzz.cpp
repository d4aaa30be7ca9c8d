// libFuzzer target for HTTP/1.1 request-head framing: the bytes a client
// sends before anything else, through what the server does with them
// (src/http/server.cpp reads each head the same way; that file is not
// edited for this target, so its file-local checks are restated here from
// Beast's public interface).
//
// Input: the first byte picks the size of the pieces (1-256 bytes) the rest
// arrives in, as TCP segments would. The pieces go to Beast's
// request_parser<empty_body> with the server's header limit
// (server_options::header_limit) and no body limit, as serve_one() sets it.
// When a head parses, the target applies what the server and the handlers
// apply to it: the Transfer-Encoding / Content-Length framing rules,
// http::accepts_gzip (Accept-Encoding), http::if_none_match_names,
// http::bearer_token, http::request_id_for (X-Request-ID) and route
// matching. Checks, besides no crash, no sanitizer report and no exception:
// - a head within the header limit is never refused as too large, and the
//   pieces parse it as the whole input does: same outcome, same fields
//   (heads over the limit are an open finding in server.cpp: README.md);
// - framing: Beast reports chunked only with a Transfer-Encoding field; a
//   head the server accepts for its body has either no Transfer-Encoding
//   and a Content-Length every value of which is that length, or
//   Transfer-Encoding chunked alone and no Content-Length;
// - accepts_gzip ignores case, turns true with ", gzip" appended and false
//   with ", gzip;q=0" appended;
// - if_none_match_names is true with ", *" appended, and stays true when
//   more tags are appended;
// - a bearer token is a non-empty suffix of the Authorization value;
// - a request id is 1-128 characters of [A-Za-z0-9._-], the client's own
//   when it is one;
// - a matched route's parameters are non-empty path segments, and the
//   allowed methods are sorted, unique and include the matched one.
// See tests/fuzz/README.md.
// fuzz-link: docflow_http docflow_core
// fuzz-options: -max_len=20000
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

#include "core/encoding.hpp"
#include "fuzz_input.hpp"
#include "http/message.hpp"
#include "http/router.hpp"
#include "http/server.hpp"

namespace {

namespace bhttp = boost::beast::http;
using docflow::fuzz::check;
using head_parser = bhttp::request_parser<bhttp::empty_body>;

const std::size_t header_limit = docflow::http::server_options{}.header_limit;

// What reading one head gave: the error, the bytes it took, the fields.
struct reading {
  boost::beast::error_code ec;
  std::size_t used = 0;
  std::string method;
  std::string target;
  unsigned version = 0;
  std::vector<std::pair<std::string, std::string>> fields;
};

void configure(head_parser& p) {
  p.header_limit(static_cast<std::uint32_t>(header_limit));
  p.body_limit(boost::none);
}

// Feeds `bytes` in pieces of `piece` as async_read_header does: what the
// parser leaves unconsumed is offered again with the next piece.
reading read_head(head_parser& p, std::string_view bytes, std::size_t piece) {
  reading r;
  std::string pending;
  std::size_t at = 0;
  while (!p.is_header_done()) {
    if (at < bytes.size()) {
      pending.append(bytes.substr(at, piece));
      at += piece;
    }
    const bool last = at >= bytes.size();
    boost::beast::error_code ec;
    const auto n = p.put(boost::asio::buffer(pending.data(), pending.size()), ec);
    r.used += n;
    pending.erase(0, n);
    if (ec == bhttp::error::need_more) {
      if (!last) continue;
      // The end of the stream, as Beast's read algorithms report it.
      if (p.got_some()) {
        p.put_eof(ec);
      } else {
        ec = bhttp::error::end_of_stream;
      }
      r.ec = ec ? ec : bhttp::error::partial_message;
      return r;
    }
    if (ec) {
      r.ec = ec;
      return r;
    }
  }
  const auto& h = p.get();
  r.method = std::string(h.method_string());
  r.target = std::string(h.target());
  r.version = h.version();
  for (const auto& f : h) r.fields.emplace_back(std::string(f.name_string()), std::string(f.value()));
  return r;
}

// server.cpp's only_chunked(), restated: Transfer-Encoding names chunked
// alone, across every field line, ignoring empty list elements.
bool only_chunked(const bhttp::fields& h) {
  std::size_t codings = 0;
  const auto [first, last] = h.equal_range(bhttp::field::transfer_encoding);
  for (auto field = first; field != last; ++field) {
    for (std::string_view rest = field->value(); !rest.empty();) {
      const auto comma = rest.find(',');
      const auto coding = docflow::core::trim_ows(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (coding.empty()) continue;
      if (!docflow::core::iequals(coding, "chunked") || ++codings > 1) return false;
    }
  }
  return codings == 1;
}

void check_framing(const head_parser& p) {
  const auto& h = p.get();
  const bool te = h.count(bhttp::field::transfer_encoding) > 0;
  const bool cl = h.count(bhttp::field::content_length) > 0;
  check(!p.chunked() || te, "chunked without a Transfer-Encoding field");
  // serve_one()'s order: both fields, TE not ending in chunked, TE with another coding.
  const bool accepted = !(cl && te) && !(te && !p.chunked()) && !(te && !only_chunked(h));
  if (!accepted) return;
  if (te) {
    check(p.chunked() && !p.content_length(), "accepted Transfer-Encoding framing is not plain chunked");
    return;
  }
  check(!p.chunked(), "chunked without Transfer-Encoding");
  check(cl == p.content_length().has_value(), "Content-Length field and parsed length disagree");
  if (!cl) return;
  const auto length = *p.content_length();
  for (const auto& f : h) {
    if (f.name() != bhttp::field::content_length) continue;
    for (std::string_view rest = f.value(); !rest.empty();) {
      const auto comma = rest.find(',');
      const auto item = docflow::core::trim_ows(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (item.empty()) continue;
      std::uint64_t v = 0;
      bool digits = true;
      for (const char c : item) {
        const auto d = static_cast<std::uint64_t>(c - '0');
        if (c < '0' || c > '9' || v > (UINT64_MAX - d) / 10) {
          digits = false;
          break;
        }
        v = v * 10 + d;
      }
      check(digits && v == length, "a Content-Length value differs from the length used");
    }
  }
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  }
  return out;
}

void check_accept_encoding(std::string_view v) {
  const bool gzip = docflow::http::accepts_gzip(v);
  check(docflow::http::accepts_gzip(upper(v)) == gzip, "accepts_gzip depends on case");
  check(docflow::http::accepts_gzip(std::string(v) + ", gzip"), "a final gzip was not accepted");
  check(!docflow::http::accepts_gzip(std::string(v) + ", gzip;q=0"), "a final gzip;q=0 did not refuse");
}

void check_if_none_match(std::string_view v) {
  constexpr std::string_view etag = "\"0123abcd\"";
  const bool names = docflow::http::if_none_match_names(v, etag);
  check(docflow::http::if_none_match_names(std::string(v) + ", *", etag), "a final * did not match");
  if (names) {
    check(docflow::http::if_none_match_names(std::string(v) + ", W/\"other\"", etag),
          "another tag appended undid a match");
  }
}

void check_request(const reading& r) {
  docflow::http::request req;
  req.method = r.method;
  req.target = r.target;
  req.path = r.target.substr(0, r.target.find('?'));
  for (const auto& [name, value] : r.fields) req.fields.add(name, value);

  if (const auto v = req.fields.get("Accept-Encoding")) check_accept_encoding(*v);
  if (const auto v = req.fields.get("If-None-Match")) check_if_none_match(*v);
  if (const auto token = docflow::http::bearer_token(req)) {
    const auto authorization = *req.fields.get("Authorization");
    check(!token->empty() && token->front() != ' ' && authorization.ends_with(*token),
          "a bearer token is not a non-empty suffix of the Authorization value");
  }
  const auto incoming = req.fields.get("X-Request-ID");
  const auto id = docflow::http::request_id_for(incoming);
  const bool plain = !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
  check(plain, "a request id outside 1-128 characters of [A-Za-z0-9._-]");
  if (incoming && id != *incoming) {
    const bool usable = !incoming->empty() && incoming->size() <= 128 &&
                        std::all_of(incoming->begin(), incoming->end(), [](char c) {
                          return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                 c == '.' || c == '_' || c == '-';
                        });
    check(!usable, "a usable client request id was replaced");
  }

  static const docflow::http::router routes([] {
    std::vector<docflow::http::route> table;
    for (const auto& [method, pattern] : std::vector<std::pair<std::string, std::string>>{
             {"GET", "/documents"},
             {"POST", "/documents"},
             {"GET", "/documents/{id}"},
             {"DELETE", "/documents/{id}"},
             {"GET", "/documents/{id}/content"},
             {"POST", "/documents/{id}/process"},
             {"GET", "/healthz"},
         }) {
      table.push_back({method, pattern, {}, docflow::http::auth_policy::none, 0, false});
    }
    return table;
  }());
  const auto m = routes.match(req.method, req.path);
  check(std::is_sorted(m.allowed.begin(), m.allowed.end()) &&
            std::adjacent_find(m.allowed.begin(), m.allowed.end()) == m.allowed.end(),
        "allowed methods are not sorted and unique");
  if (m.found) {
    const auto wanted = req.method == "HEAD" ? std::string("GET") : req.method;
    check(m.found->method == wanted, "a route matched another method");
    check(std::find(m.allowed.begin(), m.allowed.end(), m.found->method) != m.allowed.end(),
          "the matched method is not among the allowed ones");
    for (const auto& [name, value] : m.params) {
      check(!value.empty() && value.find('/') == std::string::npos,
            "a route parameter is not one path segment");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  docflow::fuzz::input in(data, size);
  const std::size_t piece = std::size_t{in.byte()} + 1;
  const auto bytes = in.rest();

  head_parser pieces;
  configure(pieces);
  const auto r = read_head(pieces, bytes, piece);
  head_parser whole;
  configure(whole);
  const auto w = read_head(whole, bytes, bytes.size() + 1);

  // Open finding (README.md, "Open findings"): Beast 1.81 applies
  // header_limit to the request line and to the fields separately, and only
  // to the bytes of one put(), so a head longer than the limit parses or not
  // depending on how it arrives (in one piece, up to twice the limit; in
  // pieces that each end just past a field line, without end), and
  // serve_one() does not bound the total. Until server.cpp does, heads over
  // the limit are only checked for what the server does with them.
  const auto end = bytes.find("\r\n\r\n");
  const std::size_t head_length = end == std::string_view::npos ? bytes.size() : end + 4;
  if (head_length <= header_limit) {
    // Beast also answers header_limit for an obs-folded value over 4 KiB.
    const auto head = bytes.substr(0, head_length);
    const bool folded =
        head.find("\r\n ") != std::string_view::npos || head.find("\r\n\t") != std::string_view::npos;
    check(folded || (r.ec != bhttp::error::header_limit && w.ec != bhttp::error::header_limit),
          "a head within the header limit was refused as too large");
    check(!r.ec == !w.ec, "the pieces and the whole input disagree on whether the head parses");
    check(r.ec || (r.used == w.used && r.method == w.method && r.target == w.target &&
                   r.version == w.version && r.fields == w.fields),
          "the pieces and the whole input parse to different heads");
  }
  if (!r.ec) {
    check_framing(pieces);
    check_request(r);
  } else if (!w.ec) {
    check_framing(whole);
    check_request(w);
  }
  return 0;
}
