#include "http/router.hpp"

#include <algorithm>
#include <stdexcept>

namespace docflow::http {

namespace {
// "/a/b/" -> {"a", "b", ""}; "/" -> {""}.
std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path.front() != '/') {
    return out;
  }
  path.remove_prefix(1);
  for (;;) {
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) {
      return out;
    }
    path.remove_prefix(slash + 1);
  }
}

bool is_param(std::string_view seg) { return seg.size() > 2 && seg.front() == '{' && seg.back() == '}'; }
}  // namespace

router::router(std::vector<route> routes) : routes_(std::move(routes)) {
  for (const auto& r : routes_) {
    const auto parts = split(r.pattern);
    if (parts.empty()) {
      throw std::invalid_argument("route pattern must start with '/': " + r.pattern);
    }
    segments_.emplace_back(parts.begin(), parts.end());
  }
  // Parameter names do not matter for matching: /a/{id} and /a/{name} collide.
  const auto shape = [this](std::size_t i) {
    auto segments = segments_[i];
    for (auto& seg : segments) {
      if (is_param(seg)) seg = "{}";
    }
    return segments;
  };
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    for (std::size_t j = i + 1; j < routes_.size(); ++j) {
      if (routes_[i].method == routes_[j].method && shape(i) == shape(j)) {
        throw std::invalid_argument("duplicate route: " + routes_[i].method + ' ' + routes_[i].pattern);
      }
    }
  }
}

match_result router::match(std::string_view method, std::string_view path) const {
  match_result result;
  const auto parts = split(path);
  const std::string_view wanted = method == "HEAD" ? std::string_view("GET") : method;
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const auto& pattern = segments_[i];
    if (pattern.size() != parts.size()) {
      continue;
    }
    std::map<std::string, std::string, std::less<>> params;
    bool ok = true;
    for (std::size_t s = 0; s < parts.size() && ok; ++s) {
      if (is_param(pattern[s])) {
        ok = !parts[s].empty();
        params.emplace(pattern[s].substr(1, pattern[s].size() - 2), parts[s]);
      } else {
        ok = pattern[s] == parts[s];
      }
    }
    if (!ok) {
      continue;
    }
    if (routes_[i].method == wanted && !result.found) {
      result.found = &routes_[i];
      result.params = std::move(params);
    }
    result.allowed.push_back(routes_[i].method);
    if (routes_[i].method == "GET") {
      result.allowed.emplace_back("HEAD");
    }
  }
  std::sort(result.allowed.begin(), result.allowed.end());
  result.allowed.erase(std::unique(result.allowed.begin(), result.allowed.end()), result.allowed.end());
  return result;
}

}  // namespace docflow::http
