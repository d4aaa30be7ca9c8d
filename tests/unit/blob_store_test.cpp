// A conformance suite for blob::blob_store: every store (local disk now,
// S3-compatible later) must pass it. Add a store by adding a factory to
// INSTANTIATE_TEST_SUITE_P at the end of this file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "blob/blob_store.hpp"
#include "blob/fs_blob_store.hpp"
#include "blob/s3/store.hpp"
#include "core/ids.hpp"
#include "s3_server.hpp"

using namespace docflow;
namespace fs = std::filesystem;

namespace {

// Builds a store whose local state lives under `scratch` (a fresh empty
// directory per test, removed afterwards).
struct store_factory {
  std::string name;
  std::function<std::unique_ptr<blob::blob_store>(const fs::path& scratch)> make;
  // Files a committed blob adds under `scratch`: 1 on the local disk, 0 for
  // a store across the network.
  std::size_t files_per_blob;
};

std::ostream& operator<<(std::ostream& os, const store_factory& f) { return os << f.name; }

// Deterministic, position-dependent bytes: a shifted or truncated copy never matches.
std::string pattern(std::size_t n, std::uint32_t seed = 1) {
  std::string out(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

// Of a stored blob (blob_reader) or an upload in progress (blob_writer).
template <class Source>
std::string read_range(Source& r, std::uint64_t offset, std::size_t n) {
  std::string out(n, '\0');
  const auto got = r.read_at(offset, out.data(), n);
  out.resize(got);
  return out;
}

template <class Source>
std::string read_all(Source& r) {
  return read_range(r, 0, static_cast<std::size_t>(r.size()));
}

// Regular files anywhere under `dir`, but a process's lock on its scratch
// directory (the S3 store's): they hold the bytes of an upload or a blob.
std::size_t files_under(const fs::path& dir) {
  std::size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().filename() != ".lock") ++n;
  }
  return n;
}

class blob_store_conformance : public testing::TestWithParam<store_factory> {
protected:
  void SetUp() override {
    scratch_ = fs::temp_directory_path() / ("docflow-blob-" + core::random_hex(8));
    fs::create_directories(scratch_);
    store_ = GetParam().make(scratch_);
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(scratch_, ec);
  }

  // Stores `bytes` under a fresh key, written in pieces of `piece` bytes.
  std::string put(std::string_view bytes, std::size_t piece = 4096) {
    const auto key = core::new_uuid_v7();
    auto w = store_->begin(key);
    for (std::size_t at = 0; at < bytes.size(); at += piece) w->write(bytes.substr(at, piece));
    w->commit();
    return key;
  }

  fs::path scratch_;
  std::unique_ptr<blob::blob_store> store_;
};

TEST_P(blob_store_conformance, committed_bytes_read_back_at_any_offset) {
  const auto bytes = pattern(100'000);
  const auto key = put(bytes, 777);
  ASSERT_TRUE(store_->exists(key));
  const auto r = store_->open(key);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->size(), bytes.size());
  EXPECT_EQ(read_all(*r), bytes);
  for (const std::uint64_t offset : {0ull, 1ull, 4095ull, 4096ull, 65'537ull, 99'990ull}) {
    EXPECT_EQ(read_range(*r, offset, 10), bytes.substr(offset, 10)) << "offset " << offset;
  }
  // Short reads only at the end; nothing past it.
  EXPECT_EQ(read_range(*r, 99'995, 100), bytes.substr(99'995));
  EXPECT_EQ(read_range(*r, 100'000, 10), "");
  EXPECT_EQ(read_range(*r, 200'000, 10), "");
  // Reads are random access: going backwards works too.
  EXPECT_EQ(read_range(*r, 50, 5), bytes.substr(50, 5));
}

TEST_P(blob_store_conformance, empty_and_tiny_blobs) {
  const auto empty = put("");
  const auto r = store_->open(empty);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->size(), 0u);
  EXPECT_EQ(read_range(*r, 0, 10), "");
  const auto one = put("x");
  EXPECT_EQ(read_all(*store_->open(one)), "x");
}

TEST_P(blob_store_conformance, nothing_is_visible_before_commit) {
  const auto key = core::new_uuid_v7();
  auto w = store_->begin(key);
  w->write("partial bytes");
  EXPECT_EQ(read_all(*w), "partial bytes");  // inspectable before commit
  EXPECT_FALSE(store_->exists(key));
  EXPECT_EQ(store_->open(key), nullptr);
  w->commit();
  EXPECT_TRUE(store_->exists(key));
}

TEST_P(blob_store_conformance, writer_reads_back_the_bytes_written_so_far) {
  const auto key = core::new_uuid_v7();
  auto w = store_->begin(key);
  EXPECT_EQ(w->size(), 0u);
  EXPECT_EQ(read_range(*w, 0, 10), "");
  const auto bytes = pattern(300'000, 7);
  w->write(bytes.substr(0, 1000));
  EXPECT_EQ(w->size(), 1000u);
  // Reads between writes see what is there, and later writes still append.
  EXPECT_EQ(read_range(*w, 0, 2000), bytes.substr(0, 1000));
  w->write(bytes.substr(1000, 99'000));
  w->write(bytes.substr(100'000));
  EXPECT_EQ(w->size(), bytes.size());
  EXPECT_EQ(read_range(*w, 0, 10), bytes.substr(0, 10));
  EXPECT_EQ(read_range(*w, 150'001, 70'000), bytes.substr(150'001, 70'000));  // mid, across writes
  EXPECT_EQ(read_range(*w, 99'990, 20), bytes.substr(99'990, 20));
  EXPECT_EQ(read_range(*w, 299'995, 100), bytes.substr(299'995));  // short only at the end
  EXPECT_EQ(read_range(*w, 300'000, 10), "");
  EXPECT_EQ(read_range(*w, 1'000'000, 10), "");
  EXPECT_EQ(read_all(*w), bytes);
  // Reading changes nothing of what is committed.
  w->commit();
  EXPECT_EQ(read_all(*store_->open(key)), bytes);
}

TEST_P(blob_store_conformance, abandoned_writer_leaves_nothing) {
  const auto key = core::new_uuid_v7();
  {
    auto w = store_->begin(key);
    w->write(pattern(10'000));
    ASSERT_EQ(w->size(), 10'000u);
  }  // destroyed without commit
  EXPECT_EQ(files_under(scratch_), 0u) << "a file was left under " << scratch_;
  EXPECT_FALSE(store_->exists(key));
  EXPECT_EQ(store_->open(key), nullptr);
}

TEST_P(blob_store_conformance, an_upload_in_progress_leaves_no_file_behind_a_crash) {
  // The bytes in flight have no name anywhere in the store's directory, so
  // a crash or a kill at this point cannot leave a file for anyone to find
  // or clean up.
  const auto key = core::new_uuid_v7();
  auto w = store_->begin(key);
  w->write(pattern(100'000));
  EXPECT_EQ(files_under(scratch_), 0u);
  w->commit();
  EXPECT_EQ(files_under(scratch_), GetParam().files_per_blob);  // the blob, and nothing else
  EXPECT_EQ(read_all(*store_->open(key)), pattern(100'000));
}

TEST_P(blob_store_conformance, committed_writer_leaves_only_the_blob) {
  {
    auto w = store_->begin(core::new_uuid_v7());
    w->write("bytes");
    w->commit();
  }
  EXPECT_EQ(files_under(scratch_), GetParam().files_per_blob);
}

TEST_P(blob_store_conformance, open_of_a_missing_key_is_null) {
  EXPECT_EQ(store_->open(core::new_uuid_v7()), nullptr);
  EXPECT_FALSE(store_->exists(core::new_uuid_v7()));
}

TEST_P(blob_store_conformance, remove_is_idempotent) {
  const auto key = put("to be removed");
  ASSERT_TRUE(store_->exists(key));
  store_->remove(key);
  EXPECT_FALSE(store_->exists(key));
  EXPECT_EQ(store_->open(key), nullptr);
  EXPECT_NO_THROW(store_->remove(key));
  EXPECT_NO_THROW(store_->remove(core::new_uuid_v7()));  // never existed
}

TEST_P(blob_store_conformance, two_blobs_with_different_keys_are_independent) {
  const auto a = pattern(3000, 11);
  const auto b = pattern(5000, 12);
  const auto ka = core::new_uuid_v7();
  const auto kb = core::new_uuid_v7();
  auto wa = store_->begin(ka);
  auto wb = store_->begin(kb);
  wa->write(a);
  wb->write(b);
  EXPECT_EQ(read_all(*wa), a);
  EXPECT_EQ(read_all(*wb), b);
  wb->commit();
  wa->commit();
  EXPECT_EQ(read_all(*store_->open(ka)), a);
  EXPECT_EQ(read_all(*store_->open(kb)), b);
  store_->remove(ka);
  EXPECT_FALSE(store_->exists(ka));
  EXPECT_EQ(read_all(*store_->open(kb)), b);
}

TEST_P(blob_store_conformance, keys_sharing_a_suffix_do_not_collide) {
  // Keys differing only early on (same last characters) stay separate.
  const std::string ka = "00000000-0000-7000-8000-0000000000ab";
  const std::string kb = "11111111-0000-7000-8000-0000000000ab";
  auto wa = store_->begin(ka);
  wa->write("first");
  wa->commit();
  auto wb = store_->begin(kb);
  wb->write("second");
  wb->commit();
  EXPECT_EQ(read_all(*store_->open(ka)), "first");
  EXPECT_EQ(read_all(*store_->open(kb)), "second");
}

TEST_P(blob_store_conformance, large_blob_in_64k_writes) {
  constexpr std::size_t piece = 64 * 1024;
  constexpr std::size_t total = 8 * 1024 * 1024;
  const auto one_piece = pattern(piece, 99);
  const auto key = core::new_uuid_v7();
  auto w = store_->begin(key);
  for (std::size_t i = 0; i < total / piece; ++i) {
    auto chunk = one_piece;
    chunk[0] = static_cast<char>(i);  // each piece distinct
    chunk[1] = static_cast<char>(i >> 8);
    w->write(chunk);
  }
  // The DOCX check reads an upload before commit, all of it, however large:
  // a store that sends bytes on as they come must still give them back.
  const auto bytes_at = [&](std::uint64_t offset, std::size_t n) {
    std::string out;
    for (auto at = offset; at < offset + n; ++at) {
      const auto i = at / piece;
      const auto in_piece = at % piece;
      out += in_piece == 0   ? static_cast<char>(i)
             : in_piece == 1 ? static_cast<char>(i >> 8)
                             : one_piece[in_piece];
    }
    return out;
  };
  ASSERT_EQ(w->size(), total);
  for (const std::uint64_t offset :
       {std::uint64_t{0}, std::uint64_t{total / 2 - 3}, std::uint64_t{total - 6}}) {
    EXPECT_EQ(read_range(*w, offset, 6), bytes_at(offset, 6)) << "offset " << offset;
  }
  w->commit();
  const auto r = store_->open(key);
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->size(), total);
  std::string buf(piece, '\0');
  for (std::size_t i = 0; i < total / piece; ++i) {
    ASSERT_EQ(r->read_at(i * piece, buf.data(), piece), piece) << "piece " << i;
    auto expected = one_piece;
    expected[0] = static_cast<char>(i);
    expected[1] = static_cast<char>(i >> 8);
    ASSERT_EQ(buf, expected) << "piece " << i;
  }
  // A read straddling two pieces.
  EXPECT_EQ(read_range(*r, piece - 3, 6).size(), 6u);
}

TEST_P(blob_store_conformance, fetch_gives_a_local_file_with_the_bytes) {
  const auto bytes = pattern(30'000, 5);
  const auto key = put(bytes);
  fs::path path;
  {
    const auto copy = store_->fetch(key);
    ASSERT_NE(copy, nullptr);
    path = copy->path();
    std::ifstream in(path, std::ios::binary);
    const std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(on_disk, bytes);
  }
  // Dropping the copy never drops the blob.
  EXPECT_TRUE(store_->exists(key));
  EXPECT_EQ(read_all(*store_->open(key)), bytes);
}

TEST_P(blob_store_conformance, fetch_of_a_missing_key_throws) {
  EXPECT_THROW(store_->fetch(core::new_uuid_v7()), blob::blob_error);
  const auto key = put("soon gone");
  store_->remove(key);
  EXPECT_THROW(store_->fetch(key), blob::blob_error);
}

TEST_P(blob_store_conformance, keys_stored_before_lists_committed_blobs_only) {
  const auto now = std::chrono::system_clock::now();
  const auto first = put("one");
  const auto second = put("two");
  auto in_progress = store_->begin(core::new_uuid_v7());
  in_progress->write("not yet");
  const auto later = now + std::chrono::hours(1);
  // In key order (two ids of one millisecond may come in either order).
  const auto [lower, higher] = std::minmax(first, second);
  EXPECT_EQ(store_->keys_stored_before(later, 100, ""), (std::vector<std::string>{lower, higher}));
  EXPECT_TRUE(store_->keys_stored_before(now - std::chrono::hours(1), 100, "").empty())
      << "nothing is that old";
  EXPECT_EQ(store_->keys_stored_before(later, 1, ""), std::vector<std::string>{lower}) << "the limit holds";
  store_->remove(first);
  EXPECT_EQ(store_->keys_stored_before(later, 100, ""), std::vector<std::string>{second});
}

TEST_P(blob_store_conformance, keys_stored_before_goes_on_after_a_key) {
  // Batch by batch, every key comes up once, whatever order the store keeps
  // them in (the local disk shards them by their last characters).
  std::vector<std::string> keys;
  for (const std::string tail : {"a9", "b1", "a0", "c5", "b7"}) {
    const auto key = "0193aaaa-0000-7000-8000-0000000000" + tail;
    auto w = store_->begin(key);
    w->write(tail);
    w->commit();
    keys.push_back(key);
  }
  std::sort(keys.begin(), keys.end());
  const auto later = std::chrono::system_clock::now() + std::chrono::hours(1);
  std::vector<std::string> seen;
  std::string after;
  for (int batch = 0; batch < 10; ++batch) {
    const auto got = store_->keys_stored_before(later, 2, after);
    if (got.empty()) break;
    EXPECT_LE(got.size(), 2u);
    seen.insert(seen.end(), got.begin(), got.end());
    after = got.back();
  }
  EXPECT_EQ(seen, keys);
}

TEST_P(blob_store_conformance, check_passes_on_a_working_store_and_leaves_nothing) {
  EXPECT_NO_THROW(store_->check());
  EXPECT_NO_THROW(store_->check());
  EXPECT_EQ(files_under(scratch_), 0u);
}

std::unique_ptr<blob::blob_store> make_fs_store(const fs::path& scratch) {
  return std::make_unique<blob::fs_blob_store>(scratch / "blobs");
}

// On the tests' radosgw, a bucket per test, under a prefix, with the
// smallest part size S3 allows so that the 8 MiB test goes up in parts.
std::unique_ptr<blob::blob_store> make_s3_store(const fs::path& scratch) {
  auto& server = test::shared_s3_server();
  blob::s3::store_config c;
  c.client = server.client_config(server.create_bucket());
  c.prefix = "blobs/";
  c.part_size = std::uint64_t{5} << 20;
  c.scratch_dir = scratch;
  return std::make_unique<blob::s3::store>(std::move(c));
}

INSTANTIATE_TEST_SUITE_P(stores, blob_store_conformance,
                         testing::Values(store_factory{"fs", make_fs_store, 1},
                                         store_factory{"s3", make_s3_store, 0}),
                         [](const testing::TestParamInfo<store_factory>& p) { return p.param.name; });

// ------------------------------------------------ resumable uploads (tus)

// Sends `bytes` as a resumable upload, one request per piece (each resumed
// from the state the previous one recorded); returns the last state.
std::string send_resumable(blob::blob_store& store, const std::string& key, std::string_view bytes,
                           const std::vector<std::size_t>& pieces) {
  auto state = store.begin_resumable(key);
  std::uint64_t at = 0;
  for (const auto n : pieces) {
    auto w = store.resume(key, state, at);
    w->write(bytes.substr(at, n));
    state = w->persist();
    at += n;
    EXPECT_EQ(w->size(), at);
  }
  return state;
}

TEST_P(blob_store_conformance, a_resumable_upload_over_many_requests_commits_its_exact_bytes) {
  // Pieces below, at and above the S3 part size (5 MiB), and a tiny one.
  const std::vector<std::size_t> pieces{1 << 20, 5 << 20, 7 << 20, 3, (3 << 20) + 1};
  std::size_t total = 0;
  for (const auto n : pieces) total += n;
  const auto bytes = pattern(total, 11);
  const auto key = core::new_uuid_v7();
  const auto state = send_resumable(*store_, key, bytes, pieces);
  EXPECT_FALSE(store_->exists(key)) << "visible before its commit";
  store_->resume(key, state, total)->commit();
  const auto r = store_->open(key);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(read_all(*r), bytes);
  store_->discard_resumable(key, state);
  EXPECT_EQ(read_all(*store_->open(key)), bytes) << "discard after commit touched the blob";
  EXPECT_EQ(files_under(scratch_), GetParam().files_per_blob);  // the blob, and no partial file
}

TEST_P(blob_store_conformance, a_resumable_upload_smaller_than_a_part_in_one_request) {
  const auto bytes = pattern(1000, 12);
  const auto key = core::new_uuid_v7();
  const auto state = send_resumable(*store_, key, bytes, {1000});
  store_->resume(key, state, bytes.size())->commit();
  EXPECT_EQ(read_all(*store_->open(key)), bytes);
}

// A request that wrote and persisted but whose state was never recorded (a
// checksum mismatch, a lost lock, a crash) leaves the recorded state whole.
TEST_P(blob_store_conformance, an_unrecorded_persist_leaves_the_recorded_state_good) {
  const auto a = pattern(2 << 20, 13);
  const auto junk = pattern(6 << 20, 14);
  const auto c = pattern((4 << 20) + 5, 15);
  const auto key = core::new_uuid_v7();
  const auto recorded = send_resumable(*store_, key, a, {a.size()});
  {
    auto w = store_->resume(key, recorded, a.size());
    w->write(junk);
    (void)w->persist();  // never recorded
  }
  auto w = store_->resume(key, recorded, a.size());
  w->write(c);
  const auto state = w->persist();
  store_->resume(key, state, a.size() + c.size())->commit();
  EXPECT_EQ(read_all(*store_->open(key)), a + c);
}

TEST_P(blob_store_conformance, a_commit_repeated_after_it_ran_succeeds) {
  const auto bytes = pattern((6 << 20) + 7, 16);
  const auto key = core::new_uuid_v7();
  const auto state = send_resumable(*store_, key, bytes, {bytes.size()});
  store_->resume(key, state, bytes.size())->commit();
  store_->resume(key, state, bytes.size())->commit();  // its caller crashed before recording it
  EXPECT_EQ(read_all(*store_->open(key)), bytes);
}

TEST_P(blob_store_conformance, a_discarded_resumable_upload_leaves_nothing) {
  const auto bytes = pattern((5 << 20) + 100, 17);
  const auto key = core::new_uuid_v7();
  const auto state = send_resumable(*store_, key, bytes, {bytes.size()});
  store_->discard_resumable(key, state);
  store_->discard_resumable(key, state);  // again: nothing left is no error
  EXPECT_FALSE(store_->exists(key));
  EXPECT_EQ(files_under(scratch_), 0u);
  EXPECT_THROW(store_->resume(key, state, bytes.size())->commit(), blob::blob_error);
}

TEST_P(blob_store_conformance, resumable_uploads_in_progress_are_not_listed_as_blobs) {
  const auto key = core::new_uuid_v7();
  send_resumable(*store_, key, pattern(1 << 20, 18), {1 << 20});
  EXPECT_TRUE(
      store_->keys_stored_before(std::chrono::system_clock::now() + std::chrono::hours(1), 100, "").empty());
}

// ---------------------------------------------------------------- fs_blob_store only

class fs_blob_store_test : public testing::Test {
protected:
  void SetUp() override { root_ = fs::temp_directory_path() / ("docflow-fsblob-" + core::random_hex(8)); }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  fs::path root_;
};

TEST_F(fs_blob_store_test, layout_is_sharded_by_the_last_two_characters) {
  blob::fs_blob_store store(root_);
  EXPECT_TRUE(fs::is_directory(root_ / "tmp"));
  const std::string key = "0193aaaa-0000-7000-8000-00000000beef";
  auto w = store.begin(key);
  w->write("bytes");
  w->commit();
  EXPECT_EQ(store.path_of(key), root_ / "ef" / key);
  EXPECT_TRUE(fs::is_regular_file(root_ / "ef" / key));
}

TEST_F(fs_blob_store_test, keys_that_could_escape_the_root_are_refused) {
  blob::fs_blob_store store(root_);
  for (const std::string& bad : std::vector<std::string>{"", "a", "../../etc/passwd", "a/b", "a\\b", "..",
                                                         "x.y", std::string(129, 'k')}) {
    EXPECT_THROW(store.path_of(bad), blob::blob_error) << bad;
    EXPECT_THROW(store.open(bad), blob::blob_error) << bad;
  }
  EXPECT_THROW(store.begin("../escape"), blob::blob_error);
}

TEST_F(fs_blob_store_test, check_fails_when_tmp_is_not_a_directory) {
  blob::fs_blob_store store(root_);
  fs::remove_all(root_ / "tmp");
  std::ofstream(root_ / "tmp") << "not a directory";
  EXPECT_THROW(store.check(), blob::blob_error);
}

TEST_F(fs_blob_store_test, constructor_fails_when_root_is_a_file) {
  fs::create_directories(root_);
  std::ofstream(root_ / "file") << "x";
  EXPECT_THROW(blob::fs_blob_store(root_ / "file"), blob::blob_error);
}

TEST_F(fs_blob_store_test, a_failed_commit_publishes_nothing) {
  blob::fs_blob_store store(root_);
  const std::string key = "0193aaaa-0000-7000-8000-00000000cafe";
  auto w = store.begin(key);
  w->write("first");
  w->commit();
  auto again = store.begin(key);
  again->write("second");
  EXPECT_THROW(again->commit(), blob::blob_error);  // the key is taken: no overwrite
  EXPECT_EQ(read_all(*store.open(key)), "first");
}

}  // namespace
