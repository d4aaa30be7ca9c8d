#include "obs/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>

namespace docflow::obs {

namespace {
// Shortest text that reads back as the same double (0.005, not 0.0050000000000000001).
std::string number(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : std::string("NaN");
}

std::string join_labels(std::string_view labels, std::string_view extra) {
  std::string out;
  if (labels.empty() && extra.empty()) {
    return out;
  }
  out = "{";
  out += labels;
  if (!labels.empty() && !extra.empty()) {
    out += ',';
  }
  out += extra;
  out += '}';
  return out;
}
}  // namespace

void metrics::describe(std::string name, kind k, std::string help, std::vector<double> buckets) {
  const std::lock_guard lock(mutex_);
  auto& f = families_[std::move(name)];
  f.k = k;
  f.help = std::move(help);
  std::sort(buckets.begin(), buckets.end());
  f.buckets = std::move(buckets);
}

metrics::family& metrics::get(std::string_view name) {
  const auto it = families_.find(name);
  if (it == families_.end()) {
    throw std::logic_error("metric not described: " + std::string(name));
  }
  return it->second;
}

double& metrics::value(std::string_view name, std::string_view labels) {
  auto& values = get(name).values;
  auto it = values.find(labels);
  if (it == values.end()) {
    it = values.emplace(std::string(labels), 0.0).first;
  }
  return it->second;
}

void metrics::add(std::string_view name, std::string_view labels, double v) {
  const std::lock_guard lock(mutex_);
  value(name, labels) += v;
}

void metrics::set(std::string_view name, std::string_view labels, double v) {
  const std::lock_guard lock(mutex_);
  value(name, labels) = v;
}

void metrics::remove(std::string_view name, std::string_view labels) {
  const std::lock_guard lock(mutex_);
  auto& values = get(name).values;
  if (const auto it = values.find(labels); it != values.end()) values.erase(it);
}

void metrics::observe(std::string_view name, std::string_view labels, double v) {
  const std::lock_guard lock(mutex_);
  auto& f = get(name);
  auto it = f.histograms.find(labels);
  if (it == f.histograms.end()) {
    it = f.histograms.emplace(std::string(labels), histogram_data{}).first;
    it->second.counts.assign(f.buckets.size(), 0);
  }
  auto& h = it->second;
  const auto b = std::lower_bound(f.buckets.begin(), f.buckets.end(), v);
  if (b != f.buckets.end()) {
    ++h.counts[static_cast<std::size_t>(b - f.buckets.begin())];
  }
  h.sum += v;
  ++h.count;
}

std::string metrics::render() const {
  const std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, f] : families_) {
    static constexpr const char* type_names[] = {"counter", "gauge", "histogram"};
    out += "# HELP " + name + ' ' + f.help + '\n';
    out += "# TYPE " + name + ' ' + type_names[static_cast<int>(f.k)] + '\n';
    for (const auto& [labels, v] : f.values) {
      out += name + join_labels(labels, "") + ' ' + number(v) + '\n';
    }
    for (const auto& [labels, h] : f.histograms) {
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < f.buckets.size(); ++i) {
        cumulative += h.counts[i];
        out += name + "_bucket" + join_labels(labels, "le=\"" + number(f.buckets[i]) + '"') + ' ' +
               std::to_string(cumulative) + '\n';
      }
      out += name + "_bucket" + join_labels(labels, "le=\"+Inf\"") + ' ' + std::to_string(h.count) + '\n';
      out += name + "_sum" + join_labels(labels, "") + ' ' + number(h.sum) + '\n';
      out += name + "_count" + join_labels(labels, "") + ' ' + std::to_string(h.count) + '\n';
    }
  }
  return out;
}

std::string metrics::label(std::string_view key, std::string_view value) {
  std::string out(key);
  out += "=\"";
  for (const char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

}  // namespace docflow::obs
