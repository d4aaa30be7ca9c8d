#include "store/failure_record.hpp"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace docflow::store {

std::string failure_record(const core::failure& f) {
  return boost::json::serialize(
      boost::json::object{{"code", f.code}, {"message", f.message}, {"retryable", f.retryable}});
}

core::failure parse_failure_record(std::string_view json) {
  boost::json::error_code ec;
  const auto v = boost::json::parse(json, ec);
  const auto* o = ec ? nullptr : v.if_object();
  if (!o) return {"internal_error", "unreadable error record", true};
  const auto text = [&](const char* key) {
    const auto* m = o->if_contains(key);
    return m && m->is_string() ? std::string(m->as_string()) : std::string();
  };
  const auto* retryable = o->if_contains("retryable");
  return {text("code"), text("message"), retryable && retryable->is_bool() && retryable->as_bool()};
}

}  // namespace docflow::store
