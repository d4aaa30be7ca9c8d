#include "http/server.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <boost/json/value.hpp>

#include "core/encoding.hpp"
#include "http/dispatch.hpp"
#include "http/forwarded.hpp"
#include "http/problem.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"

namespace docflow::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr auto tuple_awaitable = net::as_tuple(net::use_awaitable);
constexpr std::size_t lingering_close_bytes = 1 << 20;
constexpr auto lingering_close_time = 2s;

// Room in a connection's read buffer beyond one request head: Beast reads
// ahead up to 64 KiB at a time while parsing a chunked body.
constexpr std::size_t read_ahead_limit = 64 * 1024;

// True for the errors Beast's parser reports about the bytes it was given
// (as opposed to the connection's own errors).
bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
         ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message;
}

// What one exchange cost and produced, for the access log and metrics.
struct exchange {
  request req;
  response res;
  std::size_t bytes_in = 0;
  std::size_t bytes_out = 0;
  bool keep_alive = false;
  bool head_only = false;
};

}  // namespace

struct server::impl {
  struct connection {
    beast::tcp_stream* stream;
    net::any_io_executor executor;
    bool idle;
    bool from_proxy;  // a trusted proxy's: kept open while idle in the drain (server_options)
  };

  impl(server_options o, const router& r, authenticator a, obs::metrics& m)
      : opt(std::move(o)),
        routes(r),
        auth(std::move(a)),
        metrics(m),
        loops(make_loops(std::max(1U, opt.io_threads))),
        ioc(*loops.front()),
        acceptor(ioc),
        signals(ioc, SIGINT, SIGTERM),
        drain_deadline(ioc) {
    for (const auto& loop : loops) keep_running.emplace_back(loop->get_executor());
  }

  // One event loop per I/O thread, each serving the connections accepted
  // onto it, so a request takes no lock and wakes no thread that another
  // I/O thread uses. Two threads sharing one io_context spent 5% of a GET's
  // CPU on futex wake-ups, plus strand bookkeeping.
  static std::vector<std::unique_ptr<net::io_context>> make_loops(unsigned n) {
    std::vector<std::unique_ptr<net::io_context>> out;
    for (unsigned i = 0; i < n; ++i) out.push_back(std::make_unique<net::io_context>(1));
    return out;
  }

  void stop_loops() {
    for (const auto& loop : loops) loop->stop();
  }

  server_options opt;
  const router& routes;
  authenticator auth;
  obs::metrics& metrics;
  std::vector<std::unique_ptr<net::io_context>> loops;
  net::io_context& ioc;  // the first loop; also runs the acceptor, the signals and the drain
  std::vector<net::executor_work_guard<net::io_context::executor_type>> keep_running;
  tcp::acceptor acceptor;
  net::signal_set signals;
  net::steady_timer drain_deadline;
  std::atomic<bool> draining{false};

  std::mutex mutex;  // guards connections, next_id, open and by_address
  std::unordered_map<std::uint64_t, connection> connections;
  std::uint64_t next_id = 0;
  // Admitted connections, in all and per client address (accepted, not yet
  // closed; counted before their session starts).
  std::size_t open = 0;
  std::unordered_map<std::string, std::size_t> by_address;

  // Takes a place for a new connection from `address`; nullopt when it may
  // stay, else the cap it would pass ("total" or "address").
  std::optional<std::string_view> admit(const std::string& address) {
    const std::lock_guard lock(mutex);
    if (opt.max_connections != 0 && open >= opt.max_connections) return "total";
    auto& mine = by_address[address];
    if (opt.max_connections_per_address != 0 && mine >= opt.max_connections_per_address) {
      if (mine == 0) by_address.erase(address);
      return "address";
    }
    ++mine;
    ++open;
    metrics.set("docflow_connections_open", "", static_cast<double>(open));
    return std::nullopt;
  }

  void release(const std::string& address) {
    const std::lock_guard lock(mutex);
    --open;
    if (const auto it = by_address.find(address); it != by_address.end() && --it->second == 0) {
      by_address.erase(it);
    }
    metrics.set("docflow_connections_open", "", static_cast<double>(open));
  }

  std::uint64_t add_connection(beast::tcp_stream* stream, bool from_proxy) {
    const std::lock_guard lock(mutex);
    connections.emplace(next_id, connection{stream, stream->get_executor(), false, from_proxy});
    return next_id++;
  }

  void remove_connection(std::uint64_t id) {
    const std::lock_guard lock(mutex);
    connections.erase(id);
    if (draining && connections.empty()) {
      stop_loops();
    }
  }

  void set_idle(std::uint64_t id, bool idle) {
    const std::lock_guard lock(mutex);
    connections.at(id).idle = idle;
  }

  // Runs on the io_context: stop accepting, close idle connections (not a
  // proxy's), give the others until the deadline.
  void begin_drain() {
    if (draining.exchange(true)) {
      return;
    }
    obs::log(obs::level::info, "server.draining",
             {{"shutdown_timeout_ms", static_cast<std::int64_t>(opt.shutdown_timeout.count())}});
    beast::error_code ignored;
    acceptor.close(ignored);
    signals.cancel(ignored);
    if (opt.on_drain) opt.on_drain();
    const std::lock_guard lock(mutex);
    if (connections.empty()) {
      stop_loops();
      return;
    }
    for (const auto& [id, c] : connections) {
      net::post(c.executor, [this, id = id] {
        const std::lock_guard inner(mutex);
        const auto it = connections.find(id);
        if (it != connections.end() && it->second.idle && !it->second.from_proxy) {
          it->second.stream->cancel();
        }
      });
    }
    drain_deadline.expires_after(opt.shutdown_timeout);
    drain_deadline.async_wait([this](beast::error_code ec) {
      if (!ec) {
        obs::log(obs::level::warn, "server.drain_timeout", {});
        stop_loops();
      }
    });
  }

  void record(const exchange& x, std::chrono::steady_clock::time_point started) {
    const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const std::string route = x.req.route.empty() ? std::string("unmatched") : x.req.route;
    // Label only methods we know: a client must not be able to mint new series.
    static constexpr std::array<std::string_view, 7> known{"GET",   "HEAD",   "POST",   "PUT",
                                                           "PATCH", "DELETE", "OPTIONS"};
    const bool known_method = std::find(known.begin(), known.end(), x.req.method) != known.end();
    const std::string method = known_method ? x.req.method : std::string("OTHER");
    metrics.add("http_requests_total", obs::metrics::label("method", method) + ',' +
                                           obs::metrics::label("route", route) + ',' +
                                           obs::metrics::label("status", std::to_string(x.res.status)));
    metrics.observe("http_request_duration_seconds",
                    obs::metrics::label("method", method) + ',' + obs::metrics::label("route", route),
                    seconds);
    obs::log(
        obs::level::info, "http.request",
        {{"request_id", x.req.request_id},
         {"method", x.req.method},
         {"route", route},
         {"path", x.req.path},
         {"status", x.res.status},
         {"duration_ms", seconds * 1000.0},
         {"bytes_in", x.bytes_in},
         {"bytes_out", x.bytes_out},
         {"remote", x.req.remote_address},
         {"peer", x.req.peer_address},
         {"proto", x.req.scheme},
         {"user_id", x.req.user ? boost::json::value(x.req.user->user_id) : boost::json::value(nullptr)}});
  }
};

namespace {

// Answers with the problem and marks the connection for closing.
void fail(exchange& x, const problem& p) {
  x.res = make_problem(x.req, p);
  x.res.close = true;
}

void fill_request(request& req, const bhttp::request_parser<bhttp::empty_body>& head) {
  const auto& h = head.get();
  req.method = std::string(h.method_string());
  req.target = std::string(h.target());
  const auto q = req.target.find('?');
  req.path = req.target.substr(0, q);
  if (q != std::string::npos) {
    req.query = req.target.substr(q + 1);
  }
  for (const auto& f : h) {
    req.fields.add(std::string(f.name_string()), std::string(f.value()));
  }
  req.request_id = request_id_for(req.fields.get("X-Request-ID"));
}

// The next piece of a stream of unknown length (an event stream), or
// nullopt when the client has gone first: such a source may wait minutes for
// something to send, and a client's close must end it (and give back what it
// holds) at once, not at its next write. `watch_peer` is cleared when the
// client sends bytes instead, which only a close would make us act on.
net::awaitable<std::optional<std::size_t>> read_unless_closed(beast::tcp_stream& stream, body_source& source,
                                                              char* out, std::size_t max, bool& watch_peer) {
  using namespace net::experimental::awaitable_operators;
  if (!watch_peer) co_return co_await source.read(out, max);
  auto done =
      co_await (source.read(out, max) || stream.socket().async_wait(tcp::socket::wait_read, tuple_awaitable));
  if (done.index() == 0) co_return std::get<0>(done);
  char peek = 0;
  beast::error_code ec;
  const auto n = stream.socket().receive(net::buffer(&peek, 1), tcp::socket::message_peek, ec);
  if (ec || n == 0) co_return std::nullopt;  // closed or reset
  // Bytes arrived mid-stream; they stay unread. Stop watching, and read the source again.
  watch_peer = false;
  co_return co_await source.read(out, max);
}

// The facts of the parsed head that decide() looks at.
head_view view_of(const bhttp::request_parser<bhttp::empty_body>& parser) {
  const auto& h = parser.get();
  head_view v;
  v.version = h.version();
  v.keep_alive = parser.keep_alive();
  v.chunked = parser.chunked();
  if (const auto length = parser.content_length()) v.content_length = *length;
  v.content_length_fields = h.count(bhttp::field::content_length);
  v.host_fields = h.count(bhttp::field::host);
  const auto [first, last] = h.equal_range(bhttp::field::transfer_encoding);
  for (auto f = first; f != last; ++f) v.transfer_encodings.emplace_back(f->value());
  return v;
}

// Sends x.res.stream piece by piece with its declared Content-Length.
net::awaitable<void> write_stream(beast::tcp_stream& stream, exchange& x, std::chrono::milliseconds timeout) {
  bhttp::response<bhttp::buffer_body> out;
  out.result(static_cast<unsigned>(x.res.status));
  for (const auto& [k, v] : x.res.fields) {
    out.insert(k, v);
  }
  if (x.res.stream_size) {
    out.content_length(*x.res.stream_size);
  } else {
    out.chunked(true);  // length unknown (event streams)
  }
  out.keep_alive(x.keep_alive);
  out.body().data = nullptr;
  out.body().more = true;
  bhttp::response_serializer<bhttp::buffer_body> serializer{out};
  auto [ec, n] = co_await bhttp::async_write_header(stream, serializer, tuple_awaitable);
  x.bytes_out = n;
  std::vector<char> chunk(64 * 1024);
  auto remaining = x.res.stream_size.value_or(UINT64_MAX);
  bool cut_short = false;
  bool watch_peer = !x.res.stream_size;
  while (!ec && !serializer.is_done()) {
    std::size_t got = 0;
    if (remaining > 0) {
      try {
        const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), remaining));
        const auto piece = co_await read_unless_closed(stream, *x.res.stream, chunk.data(), want, watch_peer);
        if (!piece) {
          cut_short = true;  // the client left
          break;
        }
        got = *piece;
      } catch (const std::exception& e) {
        obs::log(obs::level::error, "http.stream_failed",
                 {{"request_id", x.req.request_id}, {"error", e.what()}});
        cut_short = true;
        break;  // the client sees a short body and a closed connection
      }
      if (got == 0 && x.res.stream_size) {
        cut_short = true;  // the source ended before its declared length
        break;
      }
    }
    remaining -= got;
    out.body().data = got ? chunk.data() : nullptr;
    out.body().size = got;
    out.body().more = got > 0 && remaining > 0;
    stream.expires_after(timeout);
    std::tie(ec, n) = co_await bhttp::async_write(stream, serializer, tuple_awaitable);
    x.bytes_out += n;
    if (ec == bhttp::error::need_buffer) {
      ec = {};
    }
  }
  if (ec || cut_short || !serializer.is_done()) {
    x.keep_alive = false;
  }
}

net::awaitable<void> write_response(beast::tcp_stream& stream, exchange& x,
                                    std::chrono::milliseconds timeout) {
  x.res.fields.set("X-Request-ID", x.req.request_id);
  stream.expires_after(timeout);
  if (x.head_only) {
    bhttp::response<bhttp::empty_body> out;
    out.result(static_cast<unsigned>(x.res.status));
    for (const auto& [k, v] : x.res.fields) {
      out.insert(k, v);
    }
    if (!x.res.stream) {
      out.content_length(x.res.body.size());
    } else if (x.res.stream_size) {
      out.content_length(*x.res.stream_size);
    }
    out.keep_alive(x.keep_alive);
    auto [ec, n] = co_await bhttp::async_write(stream, out, tuple_awaitable);
    x.bytes_out = n;
    if (ec) {
      x.keep_alive = false;
    }
    co_return;
  }
  if (x.res.stream) {
    co_await write_stream(stream, x, timeout);
    co_return;
  }
  bhttp::response<bhttp::string_body> out;
  out.result(static_cast<unsigned>(x.res.status));
  for (const auto& [k, v] : x.res.fields) {
    out.insert(k, v);
  }
  out.body() = std::move(x.res.body);
  out.keep_alive(x.keep_alive);
  out.prepare_payload();
  auto [ec, n] = co_await bhttp::async_write(stream, out, tuple_awaitable);
  x.bytes_out = n;
  if (ec) {
    x.keep_alive = false;
  }
}

// Half-closes, then reads and discards for a moment, so that a client still
// sending its body reads our answer instead of a connection reset.
net::awaitable<void> lingering_close(beast::tcp_stream& stream) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(lingering_close_time);
  std::array<char, 4096> sink{};
  std::size_t total = 0;
  while (!ec && total < lingering_close_bytes) {
    std::size_t n = 0;
    std::tie(ec, n) = co_await stream.async_read_some(net::buffer(sink), tuple_awaitable);
    total += n;
  }
  stream.close();
}

// The request body as handlers read it: Beast's parser fills the caller's
// buffer directly, the route's limit is enforced as bytes arrive, and each
// read gets the body timeout afresh, so only a client that stalls is cut off.
class beast_body_reader final : public body_reader {
public:
  beast_body_reader(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                    bhttp::request_parser<bhttp::empty_body>&& head, std::size_t limit,
                    std::chrono::milliseconds timeout, std::size_t& bytes_in)
      : stream_(stream),
        buffer_(buffer),
        remaining_(fixed_length(head)),
        parser_(std::move(head)),
        timeout_(timeout),
        bytes_in_(bytes_in) {
    parser_.body_limit(limit);
  }

  net::awaitable<std::size_t> read_some(char* out, std::size_t max) override {
    if (remaining_) {
      co_return co_await read_fixed(out, max);
    }
    while (!parser_.is_done()) {
      parser_.get().body().data = out;
      parser_.get().body().size = max;
      stream_.expires_after(timeout_);
      auto [ec, n] = co_await bhttp::async_read_some(stream_, buffer_, parser_, tuple_awaitable);
      bytes_in_ += n;
      if (ec == bhttp::error::need_buffer) {
        ec = {};
      }
      throw_if_failed(ec);
      if (const auto got = max - parser_.get().body().size; got > 0) {
        co_return got;
      }
    }
    co_return 0;
  }

  bool complete() const { return remaining_ ? *remaining_ == 0 : parser_.is_done(); }

private:
  static std::optional<std::uint64_t> fixed_length(const bhttp::request_parser<bhttp::empty_body>& head) {
    const auto length = head.content_length();
    if (head.chunked() || !length) return std::nullopt;
    return *length;
  }

  // A Content-Length body needs no parsing: take what the head's read left
  // in the buffer, then read the socket straight into the caller's buffer.
  // Beast would read it through its small buffer in ~4 KiB pieces and copy
  // each one (measured: 265 recvmsg calls per MiB). The declared length was
  // checked against the limit before the first byte was read.
  net::awaitable<std::size_t> read_fixed(char* out, std::size_t max) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(max, *remaining_));
    if (want == 0) {
      co_return 0;
    }
    if (buffer_.size() > 0) {
      const auto n = net::buffer_copy(net::buffer(out, want), buffer_.data());
      buffer_.consume(n);
      *remaining_ -= n;
      co_return n;
    }
    stream_.expires_after(timeout_);
    auto [ec, n] = co_await stream_.async_read_some(net::buffer(out, want), tuple_awaitable);
    bytes_in_ += n;
    throw_if_failed(ec);
    *remaining_ -= n;
    co_return n;
  }

  static void throw_if_failed(const beast::error_code& ec) {
    if (!ec) {
      return;
    }
    if (ec == bhttp::error::body_limit) {
      throw body_error(body_error::kind::too_large, "request body over the limit");
    }
    if (is_parse_error(ec)) {
      throw body_error(body_error::kind::malformed, ec.message());
    }
    if (ec == beast::error::timeout) {
      throw body_error(body_error::kind::timeout, "body timeout");
    }
    throw body_error(body_error::kind::disconnected, ec.message());
  }

  beast::tcp_stream& stream_;
  beast::flat_buffer& buffer_;
  std::optional<std::uint64_t> remaining_;  // Content-Length bodies: bytes still to read
  bhttp::request_parser<bhttp::buffer_body> parser_;
  std::chrono::milliseconds timeout_;
  std::size_t& bytes_in_;
};

// Reads a whole (small) body into a string.
net::awaitable<std::string> read_all(body_reader& reader) {
  std::string body;
  std::array<char, 8192> chunk{};
  while (const auto n = co_await reader.read_some(chunk.data(), chunk.size())) {
    body.append(chunk.data(), n);
  }
  co_return body;
}

// Runs the handler; a body_error becomes the answer it calls for (or none:
// returns false when the client is gone and the connection must just close).
net::awaitable<bool> run_handler(const route& r, exchange& x, beast_body_reader* reader) {
  std::optional<body_error> body_failure;
  try {
    if (reader && !r.stream_body) {
      x.req.body = co_await read_all(*reader);
    }
    x.req.body_stream = r.stream_body ? reader : nullptr;
    x.res = co_await r.fn(x.req);
  } catch (const body_error& e) {
    body_failure = e;
  } catch (const std::exception& e) {
    obs::log(obs::level::error, "http.handler_exception",
             {{"request_id", x.req.request_id}, {"route", x.req.route}, {"error", e.what()}});
    x.res = make_problem(x.req, internal_error());
  }
  x.req.body_stream = nullptr;
  if (reader && !reader->complete()) {
    x.res.close = true;  // the unread rest of the body would be taken for the next request
  }
  if (!body_failure) {
    co_return true;
  }
  switch (body_failure->which()) {
    case body_error::kind::too_large:
      fail(x, payload_too_large("The request body exceeds this endpoint's limit of " +
                                std::to_string(r.body_limit) + " bytes."));
      co_return true;
    case body_error::kind::malformed:
      fail(x, bad_request(std::string("The request body is malformed: ") + body_failure->what() + '.'));
      co_return true;
    case body_error::kind::timeout:
    case body_error::kind::disconnected: break;
  }
  obs::log(obs::level::info, "http.body_aborted",
           {{"request_id", x.req.request_id}, {"reason", body_failure->what()}, {"bytes_in", x.bytes_in}});
  co_return false;
}

// Reads, routes and answers one request. Returns whether to keep the
// connection open for another. `from_proxy`: `remote` is a trusted proxy,
// whose forwarding headers name the client.
net::awaitable<bool> serve_one(server::impl& s, beast::tcp_stream& stream, beast::flat_buffer& buffer,
                               const std::string& remote, bool from_proxy) {
  const auto started = std::chrono::steady_clock::now();
  exchange x;
  x.req.remote_address = remote;
  x.req.peer_address = remote;
  bhttp::request_parser<bhttp::empty_body> head;
  head.header_limit(static_cast<std::uint32_t>(s.opt.header_limit));
  // Beast checks Content-Length against a 1 MiB default while parsing the
  // head; the route's own limit is applied once the route is known.
  head.body_limit(boost::none);
  // The whole head first, to look at it as it came (Beast unfolds obs-fold
  // before anyone sees it), and to hold it to the head limit.
  std::optional<problem> refused;
  for (;;) {
    const std::string_view have(static_cast<const char*>(buffer.data().data()), buffer.size());
    const auto end = have.find("\r\n\r\n");
    if (end != std::string_view::npos && end + 4 <= s.opt.header_limit) {
      if (has_obs_fold(have.substr(0, end + 2))) {
        refused =
            bad_request("A header field continues on the next line (obs-fold), which this server refuses.");
      }
      break;
    }
    if (end != std::string_view::npos || buffer.size() >= s.opt.header_limit) {
      refused = header_too_large();
      break;
    }
    auto [read_ec, got] = co_await stream.async_read_some(buffer.prepare(4096), tuple_awaitable);
    if (read_ec) {
      if (read_ec == beast::error::timeout)
        obs::log(obs::level::info, "http.header_timeout", {{"remote", remote}});
      co_return false;  // timed out or the client went away: nobody to answer
    }
    buffer.commit(got);
  }
  if (refused) {
    x.req.request_id = request_id_for(std::nullopt);
    fail(x, *refused);
    x.keep_alive = false;
    co_await write_response(stream, x, s.opt.body_timeout);
    s.record(x, started);
    co_await lingering_close(stream);
    co_return false;
  }
  auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, head, tuple_awaitable);
  x.bytes_in = n;
  const route* matched = nullptr;
  if (ec) {
    x.req.request_id = request_id_for(std::nullopt);
    if (ec == bhttp::error::header_limit) {
      fail(x, header_too_large());
    } else if (is_parse_error(ec)) {
      fail(x, bad_request("The request could not be parsed: " + ec.message() + '.'));
    } else {
      if (ec == beast::error::timeout) {
        obs::log(obs::level::info, "http.header_timeout", {{"remote", remote}});
      }
      co_return false;  // timed out or the client went away: nobody to answer
    }
  } else {
    fill_request(x.req, head);
    if (from_proxy) {
      auto origin = forwarded_client(remote, x.req.fields, s.opt.trusted_proxies);
      x.req.remote_address = std::move(origin.address);
      x.req.scheme = std::move(origin.scheme);
    }
    x.head_only = x.req.method == "HEAD";
    const auto view = view_of(head);
    auto d = decide(view, x.req, s.routes);
    if (!d.answer) {
      std::optional<authentication> presented;
      if (d.has_token) presented = co_await s.auth(*bearer_token(x.req));
      admit(view, x.req, presented, d);
    }
    matched = d.matched;
    x.keep_alive = d.keep_alive;
    if (d.answer) {
      x.res = std::move(*d.answer);
    } else {
      if (d.expect_continue) {
        static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
        stream.expires_after(s.opt.body_timeout);
        co_await net::async_write(stream, net::buffer(go_on.data(), go_on.size()), tuple_awaitable);
      }
      std::optional<beast_body_reader> reader;
      if (d.has_body) {
        reader.emplace(stream, buffer, std::move(head), d.body_limit, s.opt.body_timeout, x.bytes_in);
      }
      s.metrics.add("http_requests_in_flight", "", 1);
      const bool answer = co_await run_handler(*d.found, x, reader ? &*reader : nullptr);
      s.metrics.add("http_requests_in_flight", "", -1);
      if (!answer) {
        x.res.status = 499;  // nginx's "client closed request", for the log only
        s.record(x, started);
        co_return false;
      }
    }
  }
  if (matched) {
    for (const auto& [name, value] : matched->response_fields) x.res.fields.set(name, value);
  }
  x.keep_alive = x.keep_alive && !x.res.close && !s.draining;
  co_await write_response(stream, x, s.opt.body_timeout);
  s.record(x, started);
  if (!x.keep_alive) {
    co_await lingering_close(stream);
  }
  co_return x.keep_alive;
}

// Serves one admitted connection; gives its place back when it ends.
net::awaitable<void> session(server::impl& s, tcp::socket socket, std::string remote) {
  beast::tcp_stream stream(std::move(socket));
  beast::error_code ec;
  stream.socket().set_option(tcp::no_delay(true), ec);
  // Once per connection: its peer is a trusted proxy or not for its life.
  const auto peer = core::parse_ip_address(remote);
  const bool from_proxy = peer && core::any_contains(s.opt.trusted_proxies, *peer);
  const auto id = s.add_connection(&stream, from_proxy);
  // What a connection may hold unparsed: a request head, or during a body the
  // bytes Beast has read but not yet handed on (chunk lines with their
  // extensions, trailers). Body bytes go straight to the handler, so this is
  // all the memory a client controls; past it Beast reports buffer_overflow
  // and the request is a 400. Unbounded, one client's endless chunk
  // extension grew it by hundreds of megabytes.
  beast::flat_buffer buffer(s.opt.header_limit + read_ahead_limit);
  try {
    // The first request's head must arrive within header_timeout of accept;
    // later ones may wait idle_timeout for their first byte, then get
    // header_timeout from there.
    stream.expires_after(s.opt.header_timeout);
    bool first = true;
    for (;;) {
      if (buffer.size() == 0) {
        s.set_idle(id, true);
        if (s.draining && !from_proxy) {
          break;
        }
        if (!first) {
          stream.expires_after(s.opt.idle_timeout);
        }
        auto [read_ec, n] = co_await stream.async_read_some(buffer.prepare(4096), tuple_awaitable);
        s.set_idle(id, false);
        if (read_ec) {
          break;
        }
        buffer.commit(n);
        if (!first) {
          stream.expires_after(s.opt.header_timeout);
        }
      } else if (!first) {
        stream.expires_after(s.opt.header_timeout);  // pipelined: the next head is already here
      }
      first = false;
      if (!co_await serve_one(s, stream, buffer, remote, from_proxy)) {
        break;
      }
    }
  } catch (const std::exception& e) {
    obs::log(obs::level::error, "http.session_exception", {{"error", e.what()}});
  }
  stream.close();
  s.remove_connection(id);
  s.release(remote);
}

net::awaitable<void> accept_loop(server::impl& s) {
  // After a failed accept (out of descriptors, most likely) the listening
  // socket stays readable, so retrying at once would spin: wait, twice as
  // long each time up to a second, and log once per run of failures.
  constexpr auto first_pause = 10ms;
  constexpr auto longest_pause = 1000ms;
  auto pause = first_pause;
  std::uint64_t failures_in_a_row = 0;
  for (std::size_t next = 0;; ++next) {
    auto& loop = *s.loops[next % s.loops.size()];  // round robin
    auto [ec, socket] = co_await s.acceptor.async_accept(loop, tuple_awaitable);
    if (ec) {
      if (!s.acceptor.is_open()) {
        co_return;
      }
      s.metrics.add("docflow_accept_failures_total", "", 1);
      if (failures_in_a_row++ == 0) {
        obs::log(obs::level::warn, "http.accept_failed", {{"error", ec.message()}});
      }
      net::steady_timer timer(s.ioc, pause);
      co_await timer.async_wait(tuple_awaitable);
      pause = std::min<std::chrono::milliseconds>(pause * 2, longest_pause);
      continue;
    }
    if (failures_in_a_row != 0) {
      obs::log(obs::level::info, "http.accept_recovered",
               {{"failures", static_cast<std::int64_t>(failures_in_a_row)}});
      failures_in_a_row = 0;
      pause = first_pause;
    }
    beast::error_code ignored;
    const auto endpoint = socket.remote_endpoint(ignored);
    std::string remote = ignored ? std::string() : endpoint.address().to_string();
    if (const auto cap = s.admit(remote)) {
      // Closed unread: answering would cost the descriptor and the time the
      // cap is there to protect.
      s.metrics.add("docflow_connections_rejected_total", obs::metrics::label("reason", std::string(*cap)),
                    1);
      socket.close(ignored);
      continue;
    }
    net::co_spawn(loop, session(s, std::move(socket), std::move(remote)), net::detached);
  }
}

}  // namespace

server::server(server_options options, const router& routes, authenticator auth, obs::metrics& metrics)
    : impl_(std::make_unique<impl>(std::move(options), routes, std::move(auth), metrics)) {
  auto& s = *impl_;
  tcp::resolver resolver(s.ioc);
  const auto endpoint = resolver.resolve(s.opt.host, std::to_string(s.opt.port)).begin()->endpoint();
  s.acceptor.open(endpoint.protocol());
  s.acceptor.set_option(tcp::acceptor::reuse_address(true));
  s.acceptor.bind(endpoint);
  s.acceptor.listen(net::socket_base::max_listen_connections);
  metrics.describe("http_requests_total", obs::metrics::kind::counter,
                   "HTTP requests answered, by method, route pattern and status.");
  metrics.describe("http_request_duration_seconds", obs::metrics::kind::histogram,
                   "Time from request head to answer, by method and route pattern.",
                   {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  metrics.describe("http_requests_in_flight", obs::metrics::kind::gauge, "Requests being handled now.");
  metrics.set("http_requests_in_flight", "", 0);
  metrics.describe("docflow_connections_open", obs::metrics::kind::gauge, "Client connections open now.");
  metrics.set("docflow_connections_open", "", 0);
  metrics.describe("docflow_connections_rejected_total", obs::metrics::kind::counter,
                   "New connections closed at once because a cap was reached, by cap (total, address).");
  metrics.describe("docflow_accept_failures_total", obs::metrics::kind::counter,
                   "Failed accepts (out of file descriptors, most likely).");
}

server::~server() = default;

std::uint16_t server::port() const noexcept {
  beast::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void server::run() {
  auto& s = *impl_;
  net::co_spawn(s.ioc, accept_loop(s), net::detached);
  s.signals.async_wait([&s](beast::error_code ec, int signo) {
    if (!ec) {
      obs::log(obs::level::info, "server.signal", {{"signal", signo}});
      s.begin_drain();
    }
  });
  obs::log(obs::level::info, "server.listening",
           {{"address", s.opt.host}, {"port", port()}, {"io_threads", s.opt.io_threads}});
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < s.loops.size(); ++i) {
    threads.emplace_back([&s, i] { s.loops[i]->run(); });
  }
  s.ioc.run();
  for (auto& t : threads) {
    t.join();
  }
  obs::log(obs::level::info, "server.stopped", {});
}

void server::stop() {
  net::post(impl_->ioc, [s = impl_.get()] { s->begin_drain(); });
}

}  // namespace docflow::http
