#include "http/multipart.hpp"

#include <algorithm>
#include <vector>

#include "core/encoding.hpp"

namespace docflow::http {

namespace {

struct parameter {
  std::string name;  // lowercased
  std::string value;
};

// Parses `type; a=b; c="d \"e\""` into the type and its parameters. nullopt
// on an unterminated quoted string or a parameter without '='.
std::optional<std::pair<std::string, std::vector<parameter>>> parse_header_value(std::string_view v) {
  const auto semi = v.find(';');
  std::string type(core::trim_ows(v.substr(0, semi)));
  type = core::ascii_lower(type);
  std::vector<parameter> params;
  std::size_t i = semi == std::string_view::npos ? v.size() : semi + 1;
  while (i < v.size()) {
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t' || v[i] == ';')) ++i;
    if (i >= v.size()) break;
    const auto eq = v.find('=', i);
    if (eq == std::string_view::npos) return std::nullopt;
    std::string name(core::trim_ows(v.substr(i, eq - i)));
    name = core::ascii_lower(name);
    i = eq + 1;
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t')) ++i;
    std::string value;
    if (i < v.size() && v[i] == '"') {
      ++i;
      bool closed = false;
      while (i < v.size()) {
        const char c = v[i++];
        if (c == '\\' && i < v.size()) {
          value += v[i++];
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          value += c;
        }
      }
      if (!closed) return std::nullopt;
    } else {
      const auto end = std::min(v.find(';', i), v.size());
      value = std::string(core::trim_ows(v.substr(i, end - i)));
      i = end;
    }
    params.push_back({std::move(name), std::move(value)});
  }
  return std::pair{std::move(type), std::move(params)};
}

const std::string* find_param(const std::vector<parameter>& params, std::string_view name) {
  for (const auto& p : params) {
    if (p.name == name) return &p.value;
  }
  return nullptr;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 5987 ext-value: charset'lang'percent-encoded. Only UTF-8 is accepted.
std::optional<std::string> decode_ext_value(std::string_view v) {
  const auto q1 = v.find('\'');
  const auto q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
  if (q2 == std::string_view::npos || !core::iequals(v.substr(0, q1), "utf-8")) return std::nullopt;
  std::string out;
  for (std::size_t i = q2 + 1; i < v.size(); ++i) {
    if (v[i] == '%') {
      if (i + 2 >= v.size() || hex_value(v[i + 1]) < 0 || hex_value(v[i + 2]) < 0) return std::nullopt;
      out += static_cast<char>(hex_value(v[i + 1]) * 16 + hex_value(v[i + 2]));
      i += 2;
    } else {
      out += v[i];
    }
  }
  return out;
}

bool is_bchar(char c) {
  static constexpr std::string_view extra = "'()+_,-./:=? ";
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         extra.find(c) != std::string_view::npos;
}

}  // namespace

std::string describe(multipart_error e, const multipart_limits& limits) {
  switch (e) {
    case multipart_error::none: return "the body is well formed";
    case multipart_error::bad_boundary_line: return "a boundary line is followed by unexpected bytes";
    case multipart_error::malformed_part_header: return "a part's header block is malformed";
    case multipart_error::not_form_data: return "a part lacks Content-Disposition: form-data with a name";
    case multipart_error::too_many_parts:
      return "the body has more than " + std::to_string(limits.max_parts) + " parts";
    case multipart_error::part_header_too_large:
      return "a part's headers exceed " + std::to_string(limits.max_part_header_bytes) + " bytes";
    case multipart_error::preamble_too_large:
      return "the preamble exceeds " + std::to_string(limits.max_preamble) + " bytes";
    case multipart_error::epilogue_too_large:
      return "the epilogue exceeds " + std::to_string(limits.max_epilogue) + " bytes";
    case multipart_error::missing_final_boundary: return "the body ends before the closing boundary";
  }
  return "the body is malformed";
}

multipart_parser::multipart_parser(std::string_view boundary, multipart_handler& handler,
                                   multipart_limits limits)
    : delimiter_("\r\n--" + std::string(boundary)), handler_(handler), limits_(limits) {
  // The first boundary may open the body without a CRLF before it: pretend
  // there was one, so a single delimiter search finds every boundary.
  buf_ = "\r\n";
}

multipart_error multipart_parser::fail(multipart_error e) {
  state_ = state::failed;
  error_ = e;
  buf_.clear();
  buf_.shrink_to_fit();
  return e;
}

// A part's content goes to the handler straight from the caller's bytes;
// only framing (in slices of this size) and the few bytes that may start a
// delimiter pass through buf_. So a parser holds a few KiB whatever the read
// size: a thousand uploads at once do not keep a thousand copies of their
// read buffers.
constexpr std::size_t framing_slice = 4096;

multipart_error multipart_parser::feed(std::string_view bytes) {
  while (state_ != state::failed) {
    if (state_ == state::epilogue) {
      epilogue_seen_ += bytes.size();
      return epilogue_seen_ > limits_.max_epilogue ? fail(multipart_error::epilogue_too_large) : error_;
    }
    if (state_ == state::body) {
      bytes = body_bytes(bytes);
      if (state_ == state::body) return error_;  // all consumed, the part goes on
      continue;
    }
    const auto take = std::min(bytes.size(), framing_slice);
    buf_.append(bytes.substr(0, take));
    bytes.remove_prefix(take);
    while (state_ != state::failed && state_ != state::body && state_ != state::epilogue && step()) {
    }
    if (bytes.empty() && state_ != state::body) return error_;
  }
  return error_;
}

std::string_view multipart_parser::body_bytes(std::string_view bytes) {
  if (!buf_.empty()) {
    // Content read along with the part's headers, or the held-back tail.
    if (buf_.size() >= delimiter_.size()) {
      step();
      if (state_ != state::body) return bytes;
    }
    if (bytes.size() < delimiter_.size() - 1) {
      // Too little to settle a delimiter straddling the join: buffer it (small).
      buf_.append(bytes);
      if (buf_.size() >= delimiter_.size()) step();
      return {};
    }
    // A delimiter that starts in the tail ends within the input's first
    // delimiter_.size() - 1 bytes.
    const std::string joined = buf_ + std::string(bytes.substr(0, delimiter_.size() - 1));
    if (const auto at = joined.find(delimiter_); at != std::string::npos) {
      if (at > 0) handler_.on_part_data(std::string_view(joined).substr(0, at));
      handler_.on_part_end();
      const auto used = at + delimiter_.size() - buf_.size();
      buf_.clear();
      state_ = state::boundary_line;
      return bytes.substr(used);
    }
    handler_.on_part_data(buf_);
    buf_.clear();
  }
  if (const auto at = bytes.find(delimiter_); at != std::string_view::npos) {
    if (at > 0) handler_.on_part_data(bytes.substr(0, at));
    handler_.on_part_end();
    state_ = state::boundary_line;
    return bytes.substr(at + delimiter_.size());
  }
  const auto keep = std::min(bytes.size(), delimiter_.size() - 1);
  if (bytes.size() > keep) handler_.on_part_data(bytes.substr(0, bytes.size() - keep));
  buf_.assign(bytes.substr(bytes.size() - keep));
  return {};
}

multipart_error multipart_parser::finish() {
  if (state_ == state::failed) return error_;
  return state_ == state::epilogue ? multipart_error::none : fail(multipart_error::missing_final_boundary);
}

bool multipart_parser::step() {
  switch (state_) {
    case state::preamble: {
      const auto at = buf_.find(delimiter_);
      // Bytes held back as a possible delimiter start are not preamble yet.
      const auto scanned =
          at != std::string::npos ? at : buf_.size() - std::min(buf_.size(), delimiter_.size() - 1);
      if (preamble_seen_ + scanned > limits_.max_preamble + 2) {  // +2: the pretended CRLF
        fail(multipart_error::preamble_too_large);
        return false;
      }
      if (at == std::string::npos) {
        // Keep what could be the start of a delimiter; count the rest as preamble.
        const auto keep = std::min(buf_.size(), delimiter_.size() - 1);
        preamble_seen_ += buf_.size() - keep;
        buf_.erase(0, buf_.size() - keep);
        return false;
      }
      buf_.erase(0, at + delimiter_.size());
      state_ = state::boundary_line;
      return true;
    }
    case state::boundary_line: {
      if (buf_.size() < 2) return false;
      if (buf_.compare(0, 2, "--") == 0) {
        epilogue_seen_ = buf_.size() - 2;
        buf_.clear();
        state_ = state::epilogue;
        if (epilogue_seen_ > limits_.max_epilogue) fail(multipart_error::epilogue_too_large);
        return false;
      }
      std::size_t i = 0;
      while (i < buf_.size() && (buf_[i] == ' ' || buf_[i] == '\t')) ++i;  // transport padding
      if (i > 64) {
        fail(multipart_error::bad_boundary_line);
        return false;
      }
      if (i + 2 > buf_.size()) return false;
      if (buf_.compare(i, 2, "\r\n") != 0) {
        fail(multipart_error::bad_boundary_line);
        return false;
      }
      buf_.erase(0, i + 2);
      if (++parts_ > limits_.max_parts) {
        fail(multipart_error::too_many_parts);
        return false;
      }
      state_ = state::headers;
      return true;
    }
    case state::headers: {
      // An empty header block is just CRLF; otherwise it ends with CRLF CRLF.
      std::size_t end = 0;
      std::size_t skip = 0;
      if (buf_.size() >= 2 && buf_.compare(0, 2, "\r\n") == 0) {
        end = 0;
        skip = 2;
      } else {
        end = buf_.find("\r\n\r\n");
        skip = 4;
      }
      if (end == std::string::npos) {
        // Up to 3 bytes of the closing CRLF CRLF may be buffered already.
        if (buf_.size() > limits_.max_part_header_bytes + 3) fail(multipart_error::part_header_too_large);
        return false;
      }
      if (end > limits_.max_part_header_bytes) {
        fail(multipart_error::part_header_too_large);
        return false;
      }
      part_info part;
      if (const auto e = parse_headers(std::string_view(buf_).substr(0, end), part);
          e != multipart_error::none) {
        fail(e);
        return false;
      }
      buf_.erase(0, end + skip);
      state_ = state::body;
      handler_.on_part_begin(part);
      return true;
    }
    case state::body: {
      const auto at = buf_.find(delimiter_);
      if (at == std::string::npos) {
        if (buf_.size() >= delimiter_.size()) {
          const auto safe = buf_.size() - (delimiter_.size() - 1);
          handler_.on_part_data(std::string_view(buf_).substr(0, safe));
          buf_.erase(0, safe);
        }
        return false;
      }
      if (at > 0) handler_.on_part_data(std::string_view(buf_).substr(0, at));
      handler_.on_part_end();
      buf_.erase(0, at + delimiter_.size());
      state_ = state::boundary_line;
      return true;
    }
    case state::epilogue:
    case state::failed: return false;
  }
  return false;
}

multipart_error multipart_parser::parse_headers(std::string_view block, part_info& out) const {
  bool disposition = false;
  while (!block.empty()) {
    const auto eol = block.find("\r\n");
    const auto line = block.substr(0, eol);
    block = eol == std::string_view::npos ? std::string_view{} : block.substr(eol + 2);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return multipart_error::malformed_part_header;
    const auto name = line.substr(0, colon);
    const auto value = core::trim_ows(line.substr(colon + 1));
    if (core::iequals(name, "Content-Disposition")) {
      const auto parsed = parse_header_value(value);
      if (!parsed) return multipart_error::malformed_part_header;
      const auto& [type, params] = *parsed;
      const auto* field = find_param(params, "name");
      if (type != "form-data" || !field || field->empty()) return multipart_error::not_form_data;
      out.name = *field;
      if (const auto* ext = find_param(params, "filename*")) {
        out.filename = decode_ext_value(*ext);
        if (!out.filename) return multipart_error::malformed_part_header;
      } else if (const auto* plain = find_param(params, "filename")) {
        out.filename = *plain;
      }
      disposition = true;
    } else if (core::iequals(name, "Content-Type")) {
      out.content_type = std::string(value);
    }
  }
  return disposition ? multipart_error::none : multipart_error::not_form_data;
}

std::optional<std::string> form_data_boundary(std::string_view content_type) {
  const auto parsed = parse_header_value(content_type);
  if (!parsed || parsed->first != "multipart/form-data") return std::nullopt;
  const auto* b = find_param(parsed->second, "boundary");
  if (!b || b->empty() || b->size() > 70 || b->back() == ' ' ||
      !std::all_of(b->begin(), b->end(), is_bchar)) {
    return std::nullopt;
  }
  return *b;
}

}  // namespace docflow::http
