// libFuzzer target for the streaming multipart/form-data parser.
//
// The first input byte chooses the size of the pieces the rest is fed in
// (1-256 bytes), so one input explores both the framing and the piece
// boundaries. Checks: no crash or sanitizer report, callbacks in order
// (data and end only inside a part), the bytes delivered never exceed the
// input, an error sticks once reported, at most max_parts parts begin, a
// body judged well formed leaves no part open, and the pieces give the same
// outcome and the same bytes as the whole body fed at once.
// See tests/fuzz/README.md.
// fuzz-link: docflow_http
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http/multipart.hpp"

namespace {

using docflow::http::multipart_error;

constexpr std::string_view boundary = "fuzzB0undary";

[[noreturn]] void violated(const char* what) {
  __builtin_printf("invariant violated: %s\n", what);
  std::abort();
}

class checking_handler final : public docflow::http::multipart_handler {
public:
  void on_part_begin(const docflow::http::part_info& part) override {
    if (open_) violated("part begins inside a part");
    if (part.name.empty()) violated("part without a name");
    open_ = true;
    ++parts;
  }
  void on_part_data(std::string_view bytes) override {
    if (!open_) violated("data outside a part");
    delivered += bytes.size();
    content.append(bytes);
  }
  void on_part_end() override {
    if (!open_) violated("end outside a part");
    open_ = false;
    content.append("\0<end>", 6);
  }

  bool open() const { return open_; }

  std::size_t delivered = 0;
  std::size_t parts = 0;
  std::string content;  ///< every part's bytes, with a marker at each part's end

private:
  bool open_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t piece = static_cast<std::size_t>(data[0]) + 1;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);

  checking_handler handler;
  docflow::http::multipart_parser parser(boundary, handler);
  multipart_error error = multipart_error::none;
  for (std::size_t at = 0; at < body.size() && error == multipart_error::none; at += piece) {
    error = parser.feed(body.substr(at, piece));
  }
  if (error == multipart_error::none) {
    error = parser.finish();
  } else {
    if (parser.feed("more") != error) violated("an error did not stick (feed)");
    if (parser.finish() != error) violated("an error did not stick (finish)");
  }
  if (handler.delivered > body.size()) violated("more bytes delivered than fed");
  if (handler.parts > parser.limits().max_parts) violated("more parts than the limit");
  if (error == multipart_error::none && handler.open()) violated("a well-formed body left a part open");

  checking_handler whole_handler;
  docflow::http::multipart_parser whole(boundary, whole_handler);
  multipart_error whole_error = whole.feed(body);
  if (whole_error == multipart_error::none) whole_error = whole.finish();
  if (whole_error != error) violated("pieces and the whole body disagree on the outcome");
  // Delivery stops at the first error, which pieces may reach later than the whole body.
  if (error == multipart_error::none && whole_handler.content != handler.content) {
    violated("pieces and the whole body delivered different bytes");
  }
  return 0;
}
