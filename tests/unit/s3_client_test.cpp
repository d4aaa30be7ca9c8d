// The S3 client (blob/s3/client) against a real radosgw (tests/unit/s3_server.hpp
// starts one per run of the binary; each test gets a bucket of its own):
// every operation round trip, what the service refuses (a wrong secret, a
// corrupted Content-MD5, a wrong payload hash), ranges, multipart, and the
// retries when the gateway is killed and comes back.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "blob/s3/client.hpp"
#include "core/crypto.hpp"
#include "s3_server.hpp"
#include "samples.hpp"

namespace {

using namespace std::chrono_literals;
namespace s3 = docflow::blob::s3;
using docflow::test::pattern;

constexpr std::size_t mib = 1024 * 1024;

class s3_client : public testing::Test {
protected:
  s3_client() : server_(docflow::test::shared_s3_server()), bucket_(server_.create_bucket()) {}

  s3::client_config config() const { return server_.client_config(bucket_); }

  // Everything the object under `key` holds, or nullopt.
  static std::optional<std::string> read_all(s3::client& client, const std::string& key) {
    std::string bytes;
    const auto info =
        client.get_object(key, std::nullopt, [&](std::string_view piece) { bytes.append(piece); });
    if (!info) return std::nullopt;
    EXPECT_EQ(info->size, bytes.size());
    return bytes;
  }

  // The s3_error `f` throws.
  template <class F>
  static s3::s3_error error_of(F&& f) {
    try {
      f();
    } catch (const s3::s3_error& e) {
      return e;
    }
    ADD_FAILURE() << "no s3_error";
    return s3::s3_error("none", -1, "", "");
  }

  docflow::test::s3_server& server_;
  std::string bucket_;
};

TEST_F(s3_client, put_head_get_delete_round_trip) {
  s3::client client(config());
  const auto bytes = pattern(100000, 1);
  const auto etag = client.put_object("docs/one", s3::payload::memory(bytes));
  // A single PUT's ETag is the MD5 of the bytes, which the client sent as Content-MD5.
  EXPECT_EQ(etag.size(), 34U) << etag;

  const auto head = client.head_object("docs/one");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->size, bytes.size());
  EXPECT_EQ(head->etag, etag);
  EXPECT_GT(head->last_modified.time_since_epoch(), 0s);
  EXPECT_EQ(read_all(client, "docs/one"), bytes);

  client.delete_object("docs/one");
  EXPECT_FALSE(client.head_object("docs/one"));
  EXPECT_FALSE(read_all(client, "docs/one"));
  client.delete_object("docs/one");  // a missing key: not an error
}

TEST_F(s3_client, an_empty_object_and_keys_that_need_encoding) {
  s3::client client(config());
  client.put_object("empty", s3::payload::memory(""));
  EXPECT_EQ(read_all(client, "empty"), "");
  const std::string odd = "a dir/t$st \xC3\xBC+(1)=&%20.pdf";
  client.put_object(odd, s3::payload::memory("odd"));
  EXPECT_EQ(read_all(client, odd), "odd");
  const auto page = client.list_objects_v2("a dir/");
  ASSERT_EQ(page.objects.size(), 1U);
  EXPECT_EQ(page.objects[0].key, odd);
}

TEST_F(s3_client, put_from_a_file_range) {
  const auto path = std::filesystem::temp_directory_path() / ("s3_client_" + std::to_string(::getpid()));
  const auto bytes = pattern(3 * mib + 17, 2);
  std::ofstream(path, std::ios::binary) << bytes;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  s3::client client(config());
  client.put_object("range", s3::payload::file(fd, 1000, 2 * mib));
  // A caller that knows the SHA-256 passes it: the service checks it.
  client.put_object("known", s3::payload::file(fd, 0, bytes.size(), docflow::core::sha256_hex(bytes)));
  ::close(fd);
  std::filesystem::remove(path);
  EXPECT_EQ(read_all(client, "range"), bytes.substr(1000, 2 * mib));
  EXPECT_EQ(read_all(client, "known"), bytes);
}

TEST_F(s3_client, a_file_shorter_than_declared_fails_without_retries) {
  const auto path = std::filesystem::temp_directory_path() / ("s3_short_" + std::to_string(::getpid()));
  std::ofstream(path, std::ios::binary) << "short";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  auto c = config();
  unsigned retries = 0;
  c.on_retry = [&](std::string_view, const s3::s3_error&, unsigned) { ++retries; };
  s3::client client(c);
  EXPECT_THROW(client.put_object("short", s3::payload::file(fd, 0, 100)), docflow::blob::blob_error);
  ::close(fd);
  std::filesystem::remove(path);
  EXPECT_EQ(retries, 0U);
  EXPECT_FALSE(client.head_object("short"));
}

TEST_F(s3_client, a_wrong_secret_is_refused_with_signature_does_not_match) {
  auto c = config();
  c.creds.secret_key += "x";
  s3::client client(c);
  const auto e = error_of([&] { client.put_object("k", s3::payload::memory("bytes")); });
  EXPECT_EQ(e.status(), 403);
  EXPECT_EQ(e.code(), "SignatureDoesNotMatch");
  EXPECT_FALSE(e.request_id().empty());
  EXPECT_NE(std::string(e.what()).find("PutObject k: 403 SignatureDoesNotMatch"), std::string::npos)
      << e.what();
  EXPECT_FALSE(s3::client(config()).head_object("k"));
}

TEST_F(s3_client, a_corrupted_content_md5_is_refused_with_bad_digest) {
  auto c = config();
  c.faults.corrupt_content_md5 = true;
  s3::client corrupting(c);
  const auto e = error_of([&] { corrupting.put_object("k", s3::payload::memory("bytes")); });
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.code(), "BadDigest");

  s3::client client(config());
  const auto id = client.create_multipart_upload("parts");
  const auto part =
      error_of([&] { corrupting.upload_part("parts", id, 1, s3::payload::memory(pattern(mib, 3))); });
  EXPECT_EQ(part.status(), 400);
  EXPECT_EQ(part.code(), "BadDigest");
  client.abort_multipart_upload("parts", id);
  EXPECT_FALSE(client.head_object("k"));
}

TEST_F(s3_client, a_payload_hash_that_does_not_match_is_refused) {
  s3::client client(config());
  const auto e = error_of(
      [&] { client.put_object("k", s3::payload::memory("bytes", docflow::core::sha256_hex("other"))); });
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.code(), "XAmzContentSHA256Mismatch");
  EXPECT_FALSE(client.head_object("k"));
}

TEST_F(s3_client, range_reads) {
  s3::client client(config());
  const auto bytes = pattern(50000, 4);
  client.put_object("r", s3::payload::memory(bytes));
  const auto read = [&](s3::byte_range range) {
    std::string out;
    const auto info = client.get_object("r", range, [&](std::string_view p) { out.append(p); });
    // The whole object's size, also for a range.
    EXPECT_EQ(info.value_or(s3::object_info{}).size, bytes.size());
    return out;
  };
  EXPECT_EQ(read({0, 9}), bytes.substr(0, 10));
  EXPECT_EQ(read({49990, std::nullopt}), bytes.substr(49990));
  EXPECT_EQ(read({12345, 12345}), bytes.substr(12345, 1));
  EXPECT_EQ(read({49000, 99999}), bytes.substr(49000));  // a last byte past the end is cut to the end
  const auto past = error_of([&] { read({50000, std::nullopt}); });
  EXPECT_EQ(past.status(), 416);
  EXPECT_EQ(past.code(), "InvalidRange");
}

TEST_F(s3_client, a_sink_that_throws_stops_the_read_without_retries) {
  auto c = config();
  unsigned retries = 0;
  c.on_retry = [&](std::string_view, const s3::s3_error&, unsigned) { ++retries; };
  s3::client client(c);
  client.put_object("k", s3::payload::memory(pattern(mib, 5)));
  EXPECT_THROW(
      client.get_object("k", std::nullopt, [](std::string_view) { throw std::runtime_error("client gone"); }),
      std::runtime_error);
  EXPECT_EQ(retries, 0U);
  EXPECT_EQ(read_all(client, "k"), pattern(mib, 5));  // the handle went back to the pool usable
}

TEST_F(s3_client, multipart_of_three_parts_round_trips) {
  s3::client client(config());
  const std::vector<std::string> parts{pattern(5 * mib, 10), pattern(5 * mib, 11), pattern(mib + 3, 12)};
  const auto id = client.create_multipart_upload("big");
  std::vector<s3::completed_part> done;
  std::uint64_t size = 0;
  for (unsigned i = 0; i < parts.size(); ++i) {
    done.push_back({i + 1, client.upload_part("big", id, i + 1, s3::payload::memory(parts[i]))});
    size += parts[i].size();
  }
  const auto etag = client.complete_multipart_upload("big", id, done, size);
  EXPECT_TRUE(etag.ends_with("-3\"")) << etag;
  const auto head = client.head_object("big");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->size, size);
  EXPECT_EQ(head->etag, etag);
  const auto bytes = read_all(client, "big");
  ASSERT_TRUE(bytes);
  EXPECT_TRUE(*bytes == parts[0] + parts[1] + parts[2]);
  EXPECT_TRUE(client.list_multipart_uploads("big").uploads.empty());
}

TEST_F(s3_client, parts_under_five_mib_are_refused_at_complete) {
  s3::client client(config());
  const auto id = client.create_multipart_upload("small");
  const std::vector<s3::completed_part> parts{
      {1, client.upload_part("small", id, 1, s3::payload::memory(pattern(mib, 13)))},
      {2, client.upload_part("small", id, 2, s3::payload::memory(pattern(mib, 14)))}};
  const auto e = error_of([&] { client.complete_multipart_upload("small", id, parts, 2 * mib); });
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.code(), "EntityTooSmall");
  client.abort_multipart_upload("small", id);
  EXPECT_THROW(client.upload_part("small", id, 0, s3::payload::memory("x")), std::invalid_argument);
  EXPECT_THROW(client.upload_part("small", id, 10001, s3::payload::memory("x")), std::invalid_argument);
}

TEST_F(s3_client, abort_leaves_no_upload_listed) {
  s3::client client(config());
  const auto before = std::chrono::system_clock::now();
  const auto id = client.create_multipart_upload("docs/aborted");
  const auto other = client.create_multipart_upload("elsewhere");
  client.upload_part("docs/aborted", id, 1, s3::payload::memory(pattern(mib, 15)));

  const auto listed = client.list_multipart_uploads("docs/");
  ASSERT_EQ(listed.uploads.size(), 1U);
  EXPECT_EQ(listed.uploads[0].key, "docs/aborted");
  EXPECT_EQ(listed.uploads[0].upload_id, id);
  // The service's clock, not ours: only that it is a real time of this era.
  EXPECT_GT(listed.uploads[0].initiated, before - 24h);
  EXPECT_FALSE(listed.next);

  client.abort_multipart_upload("docs/aborted", id);
  EXPECT_TRUE(client.list_multipart_uploads("docs/").uploads.empty());
  client.abort_multipart_upload("docs/aborted", id);  // already gone: not an error
  const auto rest = client.list_multipart_uploads("");
  ASSERT_EQ(rest.uploads.size(), 1U);
  EXPECT_EQ(rest.uploads[0].upload_id, other);
  client.abort_multipart_upload("elsewhere", other);
  EXPECT_FALSE(client.head_object("docs/aborted"));
}

TEST_F(s3_client, list_objects_pages_through_a_prefix) {
  s3::client client(config());
  for (const auto* key : {"p/1", "p/2", "p/3", "p/4", "p/5", "q/1"})
    client.put_object(key, s3::payload::memory(key));
  std::vector<std::string> keys;
  std::optional<std::string> token;
  unsigned pages = 0;
  do {
    const auto page = client.list_objects_v2("p/", token, 2);
    ++pages;
    for (const auto& o : page.objects) {
      keys.push_back(o.key);
      EXPECT_EQ(o.size, 3U);
      EXPECT_EQ(o.etag.size(), 34U);
      EXPECT_GT(o.last_modified.time_since_epoch(), 0s);
    }
    token = page.next_continuation_token;
  } while (token);
  EXPECT_EQ(keys, (std::vector<std::string>{"p/1", "p/2", "p/3", "p/4", "p/5"}));
  EXPECT_EQ(pages, 3U);
  EXPECT_TRUE(client.list_objects_v2("none/").objects.empty());
}

// A page of long keys is an answer of a few hundred KiB: read whole.
TEST_F(s3_client, a_large_listing_is_read_whole) {
  s3::client client(config());
  const std::string long_name(900, 'n');
  constexpr int count = 150;
  for (int i = 0; i < count; ++i) {
    client.put_object("long/" + std::to_string(1000 + i) + long_name, s3::payload::memory("x"));
  }
  const auto page = client.list_objects_v2("long/");
  ASSERT_EQ(page.objects.size(), std::size_t{count});
  EXPECT_EQ(page.objects.back().key, "long/" + std::to_string(1000 + count - 1) + long_name);
  EXPECT_FALSE(page.next_continuation_token);
}

// The sockets this process holds to `port` on the loopback (by inode).
std::set<std::string> connections_to(const std::string& endpoint) {
  const auto port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  char hex_port[8];
  std::snprintf(hex_port, sizeof hex_port, "%04X", port);
  std::set<std::string> ours;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(fd.path(), ec).string();
    if (target.starts_with("socket:[")) ours.insert(target.substr(8, target.size() - 9));
  }
  std::set<std::string> found;
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
    if (state == "01" && remote.ends_with(std::string(":") + hex_port) && ours.count(inode))
      found.insert(inode);
  }
  return found;
}

TEST_F(s3_client, sequential_requests_reuse_one_connection) {
  s3::client client(config());
  client.put_object("k", s3::payload::memory("v"));
  const auto first = connections_to(server_.endpoint());
  ASSERT_EQ(first.size(), 1U);
  for (int i = 0; i < 10; ++i) {
    client.put_object("k" + std::to_string(i), s3::payload::memory("v"));
    ASSERT_TRUE(client.head_object("k"));
    EXPECT_EQ(connections_to(server_.endpoint()), first);
  }
}

TEST_F(s3_client, threads_share_a_client) {
  s3::client client(config());
  constexpr int thread_count = 6;
  std::vector<std::thread> threads;
  threads.reserve(thread_count);
  std::atomic<int> failures{0};
  for (int t = 0; t < thread_count; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        const auto key = "t" + std::to_string(t) + "/" + std::to_string(i);
        const auto bytes = pattern(20000, static_cast<unsigned>(100 * t + i));
        try {
          client.put_object(key, s3::payload::memory(bytes));
          if (read_all(client, key) != bytes) ++failures;
        } catch (const std::exception&) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(connections_to(server_.endpoint()).size(), std::size_t{thread_count});
}

// --- retries
// ------------------------------------------------------------------------------------------------

// The gateway is down when the call starts and is started again (in the
// background) once the client reports its first retry: the call succeeds.
TEST_F(s3_client, a_call_outlives_a_gateway_restart) {
  auto c = config();
  std::vector<std::string> retried;
  std::future<void> restart;
  c.on_retry = [&](std::string_view op, const s3::s3_error& e, unsigned) {
    EXPECT_EQ(e.status(), 0) << e.what();  // no answer: connection refused
    retried.emplace_back(op);
    if (!restart.valid()) restart = std::async(std::launch::async, [&] { server_.start_gateway(); });
  };
  s3::client client(c);
  client.put_object("warm", s3::payload::memory("up"));  // a pooled connection that the kill breaks
  server_.kill_gateway();
  const auto bytes = pattern(mib, 20);
  client.put_object("after", s3::payload::memory(bytes));
  ASSERT_TRUE(restart.valid());
  restart.get();
  EXPECT_GE(retried.size(), 1U);
  EXPECT_EQ(retried.front(), "PutObject");
  EXPECT_EQ(read_all(client, "after"), bytes);
}

// With the gateway down for good, a call gives up after the policy's
// attempts, with the connection failure.
TEST_F(s3_client, retries_are_bounded) {
  auto c = config();
  c.retry = {4, 10ms, 40ms};
  unsigned retries = 0;
  c.on_retry = [&](std::string_view, const s3::s3_error&, unsigned attempt) {
    EXPECT_EQ(attempt, ++retries);
  };
  std::vector<std::string> errors;  // every failed attempt, the last one too
  c.on_error = [&](std::string_view op, const s3::s3_error& e) {
    errors.push_back(std::string(op) + " " + std::string(s3::error_kind(e)));
  };
  s3::client client(c);
  server_.kill_gateway();
  const auto e = error_of([&] { client.head_object("k"); });
  server_.start_gateway();
  EXPECT_EQ(e.status(), 0);
  EXPECT_NE(std::string(e.what()).find("HeadObject k: no answer"), std::string::npos) << e.what();
  EXPECT_EQ(retries, 3U);
  EXPECT_EQ(errors, std::vector<std::string>(4, "HeadObject network"));
  EXPECT_FALSE(client.head_object("k"));  // and the client works again once the gateway is back
}

// A read cut off mid-body (the gateway killed while it sends) resumes after
// the bytes the sink has, and the sink gets each byte once.
TEST_F(s3_client, a_read_cut_off_resumes_where_it_stopped) {
  s3::client writer(config());
  const auto bytes = pattern(24 * mib, 21);
  const auto id = writer.create_multipart_upload("long");
  std::vector<s3::completed_part> parts;
  for (unsigned i = 0; i < 3; ++i) {
    parts.push_back({i + 1, writer.upload_part(
                                "long", id, i + 1,
                                s3::payload::memory(std::string_view(bytes).substr(i * 8 * mib, 8 * mib)))});
  }
  writer.complete_multipart_upload("long", id, parts, bytes.size());

  auto c = config();
  unsigned retries = 0;
  std::future<void> restart;
  c.on_retry = [&](std::string_view op, const s3::s3_error&, unsigned) {
    EXPECT_EQ(op, "GetObject");
    ++retries;
  };
  s3::client client(c);
  std::string got;
  const auto info = client.get_object("long", std::nullopt, [&](std::string_view piece) {
    if (got.empty()) {
      server_.kill_gateway();
      restart = std::async(std::launch::async, [&] { server_.start_gateway(); });
    }
    got.append(piece);
  });
  restart.get();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->size, bytes.size());
  EXPECT_GE(retries, 1U);
  EXPECT_EQ(got.size(), bytes.size());
  EXPECT_TRUE(got == bytes);
}

// Complete's answer lost after the service did the work. radosgw answers a
// repeated Complete with 200 and the ETag; AWS answers NoSuchUpload, which
// the fault hook plays here: the client then checks the object, and it is
// there, whole: success. With a size that does not match, the NoSuchUpload
// is the error.
TEST_F(s3_client, complete_after_a_lost_answer_checks_the_object) {
  const auto upload = [&](s3::client& client, const std::string& key) {
    const auto id = client.create_multipart_upload(key);
    std::vector<s3::completed_part> parts{
        {1, client.upload_part(key, id, 1, s3::payload::memory(pattern(5 * mib, 30)))},
        {2, client.upload_part(key, id, 2, s3::payload::memory(pattern(1000, 31)))}};
    return std::pair{id, parts};
  };
  const std::string no_such_upload =
      "<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>";
  auto c = config();
  std::atomic<int> completes{0};
  bool as_aws = true;
  c.faults.on_answer = [&](std::string_view op, long& status, std::string& body) {
    if (op != "CompleteMultipartUpload") return false;
    if (completes++ == 0) return true;  // the first answer never arrives
    if (as_aws) {
      status = 404;
      body = no_such_upload;
    }
    return false;
  };
  s3::client client(c);

  const auto first = upload(client, "lost");
  const auto etag = client.complete_multipart_upload("lost", first.first, first.second, 5 * mib + 1000);
  EXPECT_EQ(completes.load(), 2);
  EXPECT_TRUE(etag.ends_with("-2\"")) << etag;
  EXPECT_EQ(client.head_object("lost").value_or(s3::object_info{}).etag, etag);
  EXPECT_EQ(read_all(client, "lost"), pattern(5 * mib, 30) + pattern(1000, 31));

  completes = 0;
  const auto second = upload(client, "lost2");
  const auto e = error_of(
      [&] { client.complete_multipart_upload("lost2", second.first, second.second, 5 * mib + 999); });
  EXPECT_EQ(e.status(), 404);
  EXPECT_EQ(e.code(), "NoSuchUpload");

  // radosgw itself: the repeated Complete is answered 200, with the ETag.
  completes = 0;
  as_aws = false;
  const auto third = upload(client, "lost3");
  EXPECT_EQ(client.complete_multipart_upload("lost3", third.first, third.second, 5 * mib + 1000), etag);
  EXPECT_EQ(completes.load(), 2);

  // Without a lost answer, NoSuchUpload is the error even when the object exists.
  completes = 1;
  as_aws = true;
  const auto again =
      error_of([&] { client.complete_multipart_upload("lost", first.first, first.second, 5 * mib + 1000); });
  EXPECT_EQ(again.code(), "NoSuchUpload");
}

}  // namespace

TEST(s3_error_kind, names_the_failure_for_a_metric_label) {
  EXPECT_EQ(s3::error_kind(s3::s3_error("x", 0, "Connection refused", "")), "network");
  EXPECT_EQ(s3::error_kind(s3::s3_error("x", 503, "SlowDown", "r")), "throttled");
  EXPECT_EQ(s3::error_kind(s3::s3_error("x", 429, "", "")), "throttled");
  EXPECT_EQ(s3::error_kind(s3::s3_error("x", 500, "InternalError", "r")), "server");
  EXPECT_EQ(s3::error_kind(s3::s3_error("x", 403, "SignatureDoesNotMatch", "r")), "client");
  EXPECT_EQ(s3::error_kind(s3::s3_error("x", 404, "NoSuchBucket", "r")), "client");
}
