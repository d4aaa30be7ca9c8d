#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/json/parse.hpp>

#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "obs/process.hpp"

using docflow::obs::metrics;

namespace {

constexpr auto counter = metrics::kind::counter;
constexpr auto gauge = metrics::kind::gauge;
constexpr auto histogram = metrics::kind::histogram;

// True when `block` appears in `text` as whole lines.
bool has_block(const std::string& text, const std::string& block) {
  const auto at = text.find(block);
  return at != std::string::npos && (at == 0 || text[at - 1] == '\n');
}

}  // namespace

TEST(metrics, empty_registry_renders_nothing) { EXPECT_EQ(metrics().render(), ""); }

TEST(metrics, described_metric_without_samples_renders_help_and_type) {
  metrics m;
  m.describe("docflow_up", gauge, "Whether the node is up.");
  EXPECT_EQ(m.render(), "# HELP docflow_up Whether the node is up.\n# TYPE docflow_up gauge\n");
}

TEST(metrics, counter_accumulates_per_label_set) {
  metrics m;
  m.describe("requests_total", counter, "Requests served.");
  m.add("requests_total", R"(method="GET")");
  m.add("requests_total", R"(method="GET")", 2.5);
  m.add("requests_total", R"(method="POST")");
  m.add("requests_total", "");
  m.add("requests_total", "", 4);
  EXPECT_EQ(m.render(),
            "# HELP requests_total Requests served.\n"
            "# TYPE requests_total counter\n"
            "requests_total 5\n"
            "requests_total{method=\"GET\"} 3.5\n"
            "requests_total{method=\"POST\"} 1\n");
}

TEST(metrics, gauge_keeps_the_last_value) {
  metrics m;
  m.describe("queue_depth", gauge, "Waiting jobs.");
  m.set("queue_depth", "", 5);
  m.set("queue_depth", "", 12);
  m.set("queue_depth", R"(queue="a")", 3);
  m.set("queue_depth", R"(queue="a")", -2.5);
  EXPECT_EQ(m.render(),
            "# HELP queue_depth Waiting jobs.\n"
            "# TYPE queue_depth gauge\n"
            "queue_depth 12\n"
            "queue_depth{queue=\"a\"} -2.5\n");
}

TEST(metrics, histogram_buckets_are_cumulative_with_inf_sum_and_count) {
  metrics m;
  m.describe("latency_seconds", histogram, "Request latency.", {1, 0.25, 0.5});  // sorted by describe
  for (const double v : {0.25, 0.5, 0.75, 4.0}) {
    m.observe("latency_seconds", R"(route="/a")", v);
  }
  EXPECT_EQ(m.render(),
            "# HELP latency_seconds Request latency.\n"
            "# TYPE latency_seconds histogram\n"
            "latency_seconds_bucket{route=\"/a\",le=\"0.25\"} 1\n"
            "latency_seconds_bucket{route=\"/a\",le=\"0.5\"} 2\n"
            "latency_seconds_bucket{route=\"/a\",le=\"1\"} 3\n"
            "latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"
            "latency_seconds_sum{route=\"/a\"} 5.5\n"
            "latency_seconds_count{route=\"/a\"} 4\n");
}

TEST(metrics, histogram_without_labels_and_label_sets_kept_apart) {
  metrics m;
  m.describe("h", histogram, "H.", {0.005, 0.1});
  m.observe("h", "", 0.001);
  m.observe("h", R"(x="1")", 0.0625);
  m.observe("h", R"(x="1")", 0.125);
  const auto text = m.render();
  EXPECT_TRUE(has_block(text,
                        "h_bucket{le=\"0.005\"} 1\n"
                        "h_bucket{le=\"0.1\"} 1\n"
                        "h_bucket{le=\"+Inf\"} 1\n"
                        "h_sum 0.001\n"
                        "h_count 1\n"))
      << text;
  EXPECT_TRUE(has_block(text,
                        "h_bucket{x=\"1\",le=\"0.005\"} 0\n"
                        "h_bucket{x=\"1\",le=\"0.1\"} 1\n"
                        "h_bucket{x=\"1\",le=\"+Inf\"} 2\n"
                        "h_sum{x=\"1\"} 0.1875\n"
                        "h_count{x=\"1\"} 2\n"))
      << text;
}

TEST(metrics, histogram_without_buckets_has_only_inf) {
  metrics m;
  m.describe("h", histogram, "H.");
  m.observe("h", "", 2);
  EXPECT_EQ(m.render(), "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\n");
}

TEST(metrics, each_family_is_rendered_as_one_group) {
  metrics m;
  m.describe("b_total", counter, "B.");
  m.describe("a_seconds", histogram, "A.", {1});
  m.add("b_total", R"(k="x")");
  m.observe("a_seconds", "", 0.5);
  m.add("b_total", R"(k="y")");
  const auto text = m.render();
  EXPECT_TRUE(
      has_block(text, "# HELP b_total B.\n# TYPE b_total counter\nb_total{k=\"x\"} 1\nb_total{k=\"y\"} 1\n"))
      << text;
  EXPECT_TRUE(has_block(text,
                        "# HELP a_seconds A.\n# TYPE a_seconds histogram\na_seconds_bucket{le=\"1\"} 1\n"
                        "a_seconds_bucket{le=\"+Inf\"} 1\na_seconds_sum 0.5\na_seconds_count 1\n"))
      << text;
}

TEST(metrics, undescribed_metric_throws_logic_error) {
  metrics m;
  m.describe("known", counter, "Known.");
  EXPECT_THROW(m.add("unknown", ""), std::logic_error);
  EXPECT_THROW(m.set("unknown", "", 1), std::logic_error);
  EXPECT_THROW(m.observe("unknown", "", 1), std::logic_error);
  EXPECT_THROW(m.add("Known", ""), std::logic_error);  // names are case-sensitive
  EXPECT_EQ(m.render(), "# HELP known Known.\n# TYPE known counter\n");
}

TEST(metrics, concurrent_updates_are_not_lost) {
  metrics m;
  m.describe("c", counter, "C.");
  m.describe("h", histogram, "H.", {1});
  constexpr int threads = 4;
  constexpr int per_thread = 2000;
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&m] {
        for (int i = 0; i < per_thread; ++i) {
          m.add("c", "");
          m.observe("h", "", 0.5);
        }
      });
    }
  }
  const auto text = m.render();
  EXPECT_TRUE(has_block(text, "c 8000\n")) << text;
  EXPECT_TRUE(has_block(text, "h_count 8000\n")) << text;
  EXPECT_TRUE(has_block(text, "h_bucket{le=\"1\"} 8000\n")) << text;
}

// -----------------------------------------------------------------------------------------------------------
// label()

TEST(metrics_label, plain_value_is_quoted) {
  EXPECT_EQ(metrics::label("method", "GET"), R"(method="GET")");
  EXPECT_EQ(metrics::label("empty", ""), R"(empty="")");
}

TEST(metrics_label, escapes_quote_backslash_and_newline) {
  EXPECT_EQ(metrics::label("k", "a\"b"), R"(k="a\"b")");
  EXPECT_EQ(metrics::label("k", "a\\b"), R"(k="a\\b")");
  EXPECT_EQ(metrics::label("k", "a\nb"), R"(k="a\nb")");
  EXPECT_EQ(metrics::label("k", "\\\"\n"), R"(k="\\\"\n")");
}

TEST(metrics_label, other_bytes_pass_through) {
  EXPECT_EQ(metrics::label("path", "/d/{id} caf\xc3\xa9\t'"), "path=\"/d/{id} caf\xc3\xa9\t'\"");
}

TEST(metrics_label, escaped_label_renders_on_one_line) {
  metrics m;
  m.describe("c", counter, "C.");
  m.add("c", metrics::label("path", "/x\"\n\\"));
  EXPECT_EQ(m.render(), "# HELP c C.\n# TYPE c counter\nc{path=\"/x\\\"\\n\\\\\"} 1\n");
}

// One JSON object per line; ts, level and event are the line's own even when
// a caller's fields repeat them.
TEST(log, writes_one_json_line_whose_own_members_win) {
  docflow::obs::set_level(docflow::obs::level::info);
  // Lines other tests logged are still on their way: not into this capture.
  ASSERT_TRUE(docflow::obs::flush_log(std::chrono::seconds(10)));
  testing::internal::CaptureStdout();
  docflow::obs::log(
      docflow::obs::level::info, "test.event",
      {{"n", 1}, {"s", "quote \" and \\ and \n"}, {"event", "spoof"}, {"level", "spoof"}, {"node", "spoof"}});
  docflow::obs::log(docflow::obs::level::warn, "test.empty", {});
  docflow::obs::log(docflow::obs::level::debug, "test.hidden", {});
  // The logger thread writes them: wait for it before the capture ends.
  ASSERT_TRUE(docflow::obs::flush_log(std::chrono::seconds(10)));
  const std::string out = testing::internal::GetCapturedStdout();
  const auto newline = out.find('\n');
  ASSERT_NE(newline, std::string::npos) << out;
  ASSERT_EQ(out.back(), '\n') << out;
  const auto first = boost::json::parse(out.substr(0, newline)).as_object();
  EXPECT_EQ(first.at("event"), "test.event");
  EXPECT_EQ(first.at("level"), "info");
  EXPECT_EQ(first.at("n"), 1);
  EXPECT_EQ(first.at("s"), "quote \" and \\ and \n");
  EXPECT_TRUE(first.at("ts").is_string());
  EXPECT_EQ(first.at("node").as_string(), docflow::obs::node_name());
  EXPECT_EQ(first.size(), 6U);
  const auto second = boost::json::parse(out.substr(newline + 1, out.size() - newline - 2)).as_object();
  EXPECT_EQ(second.at("event"), "test.empty");
  EXPECT_EQ(second.size(), 4U);
  EXPECT_EQ(out.find("test.hidden"), std::string::npos);
}

namespace {
// name{labels} -> value, for the lines of a rendering that are samples.
std::map<std::string, double> samples_of(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto space = line.rfind(' ');
    if (line.empty() || line[0] == '#' || space == std::string::npos) continue;
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}
}  // namespace

TEST(process_metrics, describe_names_the_build_and_samples_the_process) {
  metrics m;
  const auto before =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  docflow::obs::describe_process(m, "1.2.3", "0123456789ab");
  auto samples = samples_of(m.render());
  // Unset, the node is the default the log lines carry too.
  const auto node = docflow::obs::default_node_name();
  EXPECT_EQ(docflow::obs::node_name(), node);
  EXPECT_EQ(samples[R"(docflow_build_info{version="1.2.3",commit="0123456789ab",node=")" + node + R"("})"],
            1);
  EXPECT_GE(samples["process_start_time_seconds"], before - 1);
  EXPECT_GT(samples["process_resident_memory_bytes"], 1 << 20);
  EXPECT_GE(samples["process_open_fds"], 3);  // stdin, stdout, stderr
  EXPECT_TRUE(samples.contains("process_cpu_seconds_total"));
  EXPECT_TRUE(samples.contains("docflow_log_lines_dropped_total"));

  // A sample follows what the process does: burn some CPU, open a descriptor.
  const auto cpu = samples["process_cpu_seconds_total"];
  const auto fds = samples["process_open_fds"];
  volatile double sink = 0;
  for (const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
       std::chrono::steady_clock::now() < end;) {
    sink = sink + 1;
  }
  std::FILE* extra = std::fopen("/dev/null", "re");
  ASSERT_NE(extra, nullptr);
  docflow::obs::sample_process(m);
  samples = samples_of(m.render());
  std::fclose(extra);
  EXPECT_GT(samples["process_cpu_seconds_total"], cpu);
  EXPECT_EQ(samples["process_open_fds"], fds + 1);
}

TEST(metrics, a_removed_series_is_gone_until_set_again) {
  metrics m;
  m.describe("shared_gauge", metrics::kind::gauge, "A gauge of shared state.");
  m.set("shared_gauge", "", 7);
  m.remove("shared_gauge", "");
  m.remove("shared_gauge", R"(never="set")");
  auto samples = samples_of(m.render());
  EXPECT_FALSE(samples.contains("shared_gauge"));
  m.set("shared_gauge", "", 3);
  samples = samples_of(m.render());
  EXPECT_EQ(samples["shared_gauge"], 3);
}
