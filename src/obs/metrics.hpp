#pragma once

#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace docflow::obs {

/// A Prometheus registry: counters, gauges and histograms keyed by metric
/// name and a pre-rendered label set. Thread-safe; rendering takes a lock.
class metrics {
public:
  enum class kind { counter, gauge, histogram };

  /// Declares a metric; `render` prints HELP and TYPE lines for it. Histogram
  /// bucket bounds are upper limits in the metric's unit (seconds for times).
  void describe(std::string name, kind k, std::string help, std::vector<double> buckets = {});

  void add(std::string_view name, std::string_view labels, double v = 1);
  void set(std::string_view name, std::string_view labels, double v);
  void observe(std::string_view name, std::string_view labels, double v);
  /// Drops a counter's or gauge's series: it is no longer this process's
  /// to report (a gauge of shared state, when the process stops leading).
  void remove(std::string_view name, std::string_view labels);

  /// The text exposition format (version 0.0.4).
  std::string render() const;

  /// Renders `key="value"` with the value escaped for the text format.
  static std::string label(std::string_view key, std::string_view value);

private:
  struct histogram_data {
    std::vector<std::uint64_t> counts;  // one per bucket, not cumulative
    double sum = 0;
    std::uint64_t count = 0;
  };
  struct family {
    kind k = kind::counter;
    std::string help;
    std::vector<double> buckets;
    std::map<std::string, double, std::less<>> values;
    std::map<std::string, histogram_data, std::less<>> histograms;
  };

  family& get(std::string_view name);
  double& value(std::string_view name, std::string_view labels);  // created at 0; caller holds mutex_

  mutable std::mutex mutex_;
  std::map<std::string, family, std::less<>> families_;
};

}  // namespace docflow::obs
