#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/document.hpp"
#include "core/errc.hpp"
#include "core/quota.hpp"

namespace docflow::core {

/// One invalid field of a request, for errc::invalid_fields.
struct field_error {
  std::string field;
  std::string message;
};

/// A domain outcome other than success, with what a client needs to act on
/// it. `detail` is shown to the client, so it never holds internal paths or
/// messages; empty means the code's own sentence.
struct error {
  errc code = errc::invalid_request;
  std::string detail;
  std::vector<field_error> fields;                  ///< invalid_fields
  std::optional<std::chrono::seconds> retry_after;  ///< when the code's usual wait does not apply
  std::optional<status> document_status;            ///< the document's status, when it explains the refusal
  std::optional<failure> document_error;            ///< processing_failed: why
  std::optional<quota_state> quota;                 ///< quota_exceeded: the usage and the limits

  error() = default;
  error(errc c, std::string d = {}) : code(c), detail(std::move(d)) {}  // NOLINT: an errc is an error
};

/// errc::invalid_fields, naming each field and what is wrong with it.
inline error invalid_fields(std::vector<field_error> fields) {
  error e(errc::invalid_fields);
  e.fields = std::move(fields);
  return e;
}

/// errc::quota_exceeded, with the usage and limits that refused.
inline error quota_exceeded(const quota_state& q) {
  error e(errc::quota_exceeded);
  e.quota = q;
  return e;
}

/// A T, or the error that stopped it.
template <class T>
class [[nodiscard]] result {
public:
  result(T value) : v_(std::in_place_index<0>, std::move(value)) {}    // NOLINT: implicit by design
  result(core::error e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT
  result(errc c) : v_(std::in_place_index<1>, core::error(c)) {}       // NOLINT

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  T&& operator*() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  const core::error& error() const { return std::get<1>(v_); }

private:
  std::variant<T, core::error> v_;
};

/// Success without a value, or the error.
template <>
class [[nodiscard]] result<void> {
public:
  result() = default;
  result(core::error e) : error_(std::move(e)) {}  // NOLINT
  result(errc c) : error_(core::error(c)) {}       // NOLINT

  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return has_value(); }
  const core::error& error() const { return *error_; }

private:
  std::optional<core::error> error_;
};

}  // namespace docflow::core
