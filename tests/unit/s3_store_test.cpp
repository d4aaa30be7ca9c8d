// What the S3 store does beyond the blob_store conformance suite (which it
// also passes, in blob_store_test.cpp): when an upload becomes a multipart
// upload, that parts go up while the upload is still arriving, that a
// failed or dropped upload leaves no upload behind in the bucket, the
// maintenance of incomplete uploads, the scratch directory's sweep, and
// presigned downloads. Against the tests' radosgw (s3_server.hpp).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "blob/s3/client.hpp"
#include "blob/s3/store.hpp"
#include "core/ids.hpp"
#include "s3_server.hpp"
#include "samples.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace s3 = docflow::blob::s3;
using docflow::core::new_uuid_v7;
using docflow::test::pattern;

constexpr std::uint64_t mib = 1024 * 1024;

class s3_store : public testing::Test {
protected:
  s3_store()
      : server_(docflow::test::shared_s3_server()),
        bucket_(server_.create_bucket()),
        scratch_(fs::temp_directory_path() / ("docflow-s3store-" + docflow::core::random_hex(8))),
        inspect_(server_.client_config(bucket_)) {}
  ~s3_store() override {
    std::error_code ignored;
    fs::remove_all(scratch_, ignored);
    // A test that killed the gateway and failed before starting it again
    // must not fail every test after it (a no-op when it runs).
    try {
      server_.start_gateway();
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
    }
  }

  s3::store_config config() const {
    s3::store_config c;
    c.client = server_.client_config(bucket_);
    c.prefix = "docs/";
    c.part_size = 5 * mib;
    c.scratch_dir = scratch_;
    return c;
  }

  std::string read_all(s3::store& store, const std::string& key) {
    const auto r = store.open(key);
    if (!r) return "<missing>";
    std::string out(r->size(), '\0');
    out.resize(r->read_at(0, out.data(), out.size()));
    return out;
  }

  // Multipart uploads still open in the bucket, waited for a while: a
  // dropped writer's abort runs in the store's background threads.
  std::size_t open_uploads(std::size_t expected) {
    std::size_t n = 0;
    for (int i = 0; i < 200; ++i) {
      n = inspect_.list_multipart_uploads("").uploads.size();
      if (n == expected) break;
      std::this_thread::sleep_for(50ms);
    }
    return n;
  }

  docflow::test::s3_server& server_;
  std::string bucket_;
  fs::path scratch_;
  s3::client inspect_;  // looks at the bucket as the service does
};

TEST_F(s3_store, one_part_or_less_is_a_single_put_and_more_a_multipart_upload) {
  s3::store store(config());
  const auto small = new_uuid_v7();
  const auto exact = new_uuid_v7();
  const auto large = new_uuid_v7();
  for (const auto& [key, size] : {std::pair{small, 1000 * 1000}, {exact, 5 * mib}, {large, 12 * mib + 7}}) {
    const auto bytes = pattern(size, size);
    auto w = store.begin(key);
    for (std::size_t at = 0; at < bytes.size(); at += 64 * 1024)
      w->write(std::string_view(bytes).substr(at, 64 * 1024));
    w->commit();
    EXPECT_EQ(read_all(store, key), bytes) << size;
  }
  // S3 names a multipart object's ETag after its parts: "<md5>-<count>".
  EXPECT_EQ(inspect_.head_object("docs/" + small)->etag.find('-'), std::string::npos);
  EXPECT_EQ(inspect_.head_object("docs/" + exact)->etag.find('-'), std::string::npos);
  EXPECT_NE(inspect_.head_object("docs/" + large)->etag.find("-3\""), std::string::npos)
      << inspect_.head_object("docs/" + large)->etag;
  EXPECT_EQ(open_uploads(0), 0u);
}

TEST_F(s3_store, parts_go_up_while_the_upload_is_still_arriving) {
  std::atomic<int> parts_sent{0};
  auto c = config();
  c.client.faults.on_answer = [&parts_sent](std::string_view operation, long& status, std::string&) {
    if (operation == "UploadPart" && status == 200) ++parts_sent;
    return false;
  };
  s3::store store(std::move(c));
  const auto key = new_uuid_v7();
  auto w = store.begin(key);
  w->write(pattern(11 * mib, 1));  // two whole parts, and a byte after each
  for (int i = 0; i < 200 && parts_sent < 2; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(parts_sent, 2) << "the parts were not sent before commit";
  EXPECT_FALSE(store.exists(key));
  w->commit();
  EXPECT_EQ(parts_sent, 3);
  EXPECT_EQ(read_all(store, key), pattern(11 * mib, 1));
}

TEST_F(s3_store, a_dropped_upload_aborts_its_multipart_upload) {
  s3::store store(config());
  const auto key = new_uuid_v7();
  {
    auto w = store.begin(key);
    w->write(pattern(12 * mib, 2));
    ASSERT_EQ(open_uploads(1), 1u);
  }
  EXPECT_EQ(open_uploads(0), 0u);
  EXPECT_FALSE(store.exists(key));
}

TEST_F(s3_store, a_corrupted_part_is_refused_and_nothing_is_left) {
  auto c = config();
  c.client.faults.corrupt_content_md5 = true;
  s3::store store(std::move(c));
  const auto key = new_uuid_v7();
  {
    auto w = store.begin(key);
    try {
      w->write(pattern(6 * mib, 3));
      w->write("x");
      w->commit();
      FAIL() << "S3 took a part whose Content-MD5 did not match";
    } catch (const s3::s3_error& e) {
      EXPECT_EQ(e.code(), "BadDigest") << e.what();
    }
  }
  EXPECT_FALSE(store.exists(key));
  EXPECT_EQ(open_uploads(0), 0u);
}

TEST_F(s3_store, a_part_whose_answer_is_lost_is_sent_again) {
  std::atomic<int> dropped{0};
  auto c = config();
  c.client.faults.on_answer = [&dropped](std::string_view operation, long&, std::string&) {
    return operation == "UploadPart" && dropped.fetch_add(1) == 0;  // the first part's answer only
  };
  s3::store store(std::move(c));
  const auto key = new_uuid_v7();
  const auto bytes = pattern(7 * mib, 4);
  auto w = store.begin(key);
  w->write(bytes);
  w->commit();
  EXPECT_GE(dropped, 2);
  EXPECT_EQ(read_all(store, key), bytes);
}

TEST_F(s3_store, maintenance_aborts_uploads_begun_before_the_cutoff) {
  s3::store store(config());
  const auto id = inspect_.create_multipart_upload("docs/" + new_uuid_v7());
  inspect_.create_multipart_upload("elsewhere/" + new_uuid_v7());  // not under the prefix: not ours
  const auto now = std::chrono::system_clock::now();
  const auto none = [](const std::string&) { return false; };
  EXPECT_EQ(store.remove_incomplete_before(now - 1h, none), 0u);
  EXPECT_EQ(store.remove_incomplete_before(now + 1h, none), 1u);
  const auto left = inspect_.list_multipart_uploads("");
  ASSERT_EQ(left.uploads.size(), 1u);
  EXPECT_EQ(left.uploads[0].key.rfind("elsewhere/", 0), 0u);
  (void)id;
}

TEST_F(s3_store, keys_outside_the_store_are_not_listed_as_blobs) {
  s3::store store(config());
  inspect_.put_object("docs/deeper/" + new_uuid_v7(), s3::payload::memory("x"));
  inspect_.put_object("other/" + new_uuid_v7(), s3::payload::memory("x"));
  store.check();  // its probe object is gone again, and never a key
  const auto key = new_uuid_v7();
  auto w = store.begin(key);
  w->write("mine");
  w->commit();
  EXPECT_EQ(store.keys_stored_before(std::chrono::system_clock::now() + 1h, 100, ""),
            std::vector<std::string>{key});
}

TEST_F(s3_store, the_scratch_of_a_dead_process_is_swept_at_start_and_a_live_one_kept) {
  fs::create_directories(scratch_ / "p-dead");
  std::ofstream(scratch_ / "p-dead" / ".lock");  // its process is gone: no one holds it
  std::ofstream(scratch_ / "p-dead" / "leftover") << "a copy a killed worker left";
  fs::create_directories(scratch_ / "p-alive");
  const int lock = ::open((scratch_ / "p-alive" / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(lock, 0);
  ASSERT_EQ(::flock(lock, LOCK_EX | LOCK_NB), 0);
  std::ofstream(scratch_ / "p-alive" / "in-use") << "another process's copy";
  {
    s3::store store(config());
    EXPECT_FALSE(fs::exists(scratch_ / "p-dead"));
    EXPECT_TRUE(fs::exists(scratch_ / "p-alive" / "in-use"));
    const auto key = new_uuid_v7();
    auto w = store.begin(key);
    w->write("bytes for a worker");
    w->commit();
    fs::path copy_path;
    {
      const auto copy = store.fetch(key);
      copy_path = copy->path();
      EXPECT_EQ(copy_path.parent_path().parent_path(), scratch_);
      std::ifstream in(copy_path);
      EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "bytes for a worker");
    }
    EXPECT_FALSE(fs::exists(copy_path));
  }
  ::close(lock);
}

TEST_F(s3_store, presigned_downloads_only_when_configured) {
  const auto key = new_uuid_v7();
  {
    s3::store store(config());
    EXPECT_EQ(store.download_url(key, {"application/pdf", "attachment"}), std::nullopt);
  }
  auto c = config();
  c.presigned_downloads = 300s;
  s3::store store(std::move(c));
  const auto url = store.download_url(key, {"application/pdf", "attachment; filename=\"a.pdf\""});
  ASSERT_TRUE(url);
  EXPECT_EQ(url->rfind(server_.endpoint() + "/" + bucket_ + "/docs/" + key + "?", 0), 0u) << *url;
  EXPECT_NE(url->find("X-Amz-Expires=300"), std::string::npos) << *url;
  EXPECT_NE(url->find("response-content-disposition="), std::string::npos) << *url;
}

TEST_F(s3_store, a_gateway_down_fails_the_upload_and_one_back_serves_the_next) {
  auto c = config();
  c.client.retry.max_attempts = 2;
  s3::store store(std::move(c));
  const auto key = new_uuid_v7();
  auto w = store.begin(key);
  w->write(pattern(1000, 5));
  server_.kill_gateway();
  EXPECT_THROW(w->commit(), s3::s3_error);
  EXPECT_THROW(store.check(), s3::s3_error);
  server_.start_gateway();
  EXPECT_FALSE(store.exists(key));
  store.check();
  const auto next = new_uuid_v7();
  auto again = store.begin(next);
  again->write("after the restart");
  again->commit();
  EXPECT_EQ(read_all(store, next), "after the restart");
}

TEST_F(s3_store, an_abort_that_failed_is_tried_again_when_s3_is_back) {
  std::atomic<bool> abort_failed{false};
  std::atomic<bool> part_answered{false};
  auto c = config();
  c.client.retry.max_attempts = 2;
  c.on_background_failure = [&abort_failed](const std::string&) { abort_failed = true; };
  // S3 lists an upload before the store has read the upload id from the
  // answer; a gateway killed in between leaves an upload the store cannot
  // name (the maintenance sweep's to abort). The store knows the id once a
  // part was answered.
  c.client.faults.on_answer = [&part_answered](std::string_view operation, long&, std::string&) {
    if (operation == "UploadPart") part_answered = true;
    return false;
  };
  s3::store store(std::move(c));
  {
    auto w = store.begin(new_uuid_v7());
    w->write(pattern(6 * mib, 6));
    const auto answered = std::chrono::steady_clock::now() + 60s;  // a bound, not a timing
    while (!part_answered && std::chrono::steady_clock::now() < answered) std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(part_answered);
    ASSERT_EQ(open_uploads(1), 1u);
    server_.kill_gateway();
  }                                                              // its abort fails in the background
  const auto deadline = std::chrono::steady_clock::now() + 60s;  // a bound, not a timing
  while (!abort_failed && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(abort_failed);
  server_.start_gateway();
  EXPECT_EQ(open_uploads(1), 1u) << "the abort went through while S3 was down";
  store.check();
  EXPECT_EQ(open_uploads(0), 0u);
}

// A resumable upload lasts as long as its client keeps sending: the sweep
// of incomplete multipart uploads spares it while the caller says it lives.
TEST_F(s3_store, the_incomplete_upload_sweep_spares_live_resumable_uploads) {
  s3::store store(config());
  const auto live = new_uuid_v7();
  const auto dead = new_uuid_v7();
  store.begin_resumable(live);
  store.begin_resumable(dead);
  const auto later = std::chrono::system_clock::now() + 1h;
  EXPECT_EQ(store.remove_incomplete_before(later, [&live](const std::string& key) { return key == live; }),
            1u);
  const auto left = inspect_.list_multipart_uploads("");
  ASSERT_EQ(left.uploads.size(), 1u);
  EXPECT_EQ(left.uploads[0].key, "docs/" + live);
}

// The bytes short of a whole part wait in the bucket, under tus/, where any
// process finds them; discarding the upload removes them with its parts.
TEST_F(s3_store, a_resumable_upload_keeps_its_tail_in_the_bucket_and_discard_removes_it) {
  s3::store store(config());
  const auto key = new_uuid_v7();
  auto state = store.begin_resumable(key);
  auto w = store.resume(key, state, 0);
  w->write(pattern((5 * mib) + 10, 19));
  state = w->persist();
  const auto tails = inspect_.list_objects_v2("docs/tus/" + key + "/");
  ASSERT_EQ(tails.objects.size(), 1u);
  EXPECT_EQ(tails.objects[0].size, 10u);
  EXPECT_EQ(open_uploads(1), 1u);
  store.discard_resumable(key, state);
  EXPECT_EQ(open_uploads(0), 0u);
  EXPECT_TRUE(inspect_.list_objects_v2("docs/tus/").objects.empty());
}

TEST_F(s3_store, settings_s3_cannot_take_are_refused) {
  auto c = config();
  c.part_size = 5 * mib - 1;
  EXPECT_THROW(s3::store{c}, std::invalid_argument);
  c = config();
  c.prefix = "no-slash";
  EXPECT_THROW(s3::store{c}, std::invalid_argument);
  s3::store store(config());
  EXPECT_THROW(store.begin("../escape"), docflow::blob::blob_error);
}

}  // namespace
